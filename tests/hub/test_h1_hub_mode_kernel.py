"""The app's kernel in hub mode (``BYOK_NB_HUB_MODE=1``, as the hub service runs its Voila): the
visitor is only the hub name of the request, there is no first-visitor bootstrap, a new hub user
is auto-joined, a removed one sees one clear message."""
from __future__ import annotations

import pytest

import byok_nb
from byok_nb.hub import members
from byok_nb.ui import AdminApp, launch


@pytest.fixture
def hub_mode(monkeypatch):
    monkeypatch.setenv("BYOK_NB_HUB_MODE", "1")
    # What a non-hub run would take the user from: none of it may count in hub mode.
    monkeypatch.setenv("BYOK_NB_USER", "ana")
    monkeypatch.setenv("JUPYTERHUB_USER", "ana")
    monkeypatch.delenv("HTTP_X_BYOK_HUB_USER", raising=False)
    monkeypatch.delenv("BYOK_NB_ORG", raising=False)


def _text(view) -> str:
    return " ".join(getattr(child, "value", "") for child in view.children)


def test_h2_hub_mode_user_comes_only_from_the_request_header_variable(hub_mode, monkeypatch):
    assert launch.current_user() == ""
    monkeypatch.setenv("HTTP_X_BYOK_HUB_USER", " bo ")
    assert launch.current_user() == "bo"


def test_h2_hub_mode_without_a_hub_user_shows_a_message_not_the_app(hub_mode):
    with byok_nb.open_registry() as registry:
        members.start(registry._backend.engine, "default", "default", ["ana"])
    view = launch.open_admin_app()
    assert not isinstance(view, AdminApp)
    assert "no hub login reached the app" in _text(view)


def test_h1_hub_mode_has_no_first_visitor_bootstrap(hub_mode, monkeypatch):
    monkeypatch.setenv("HTTP_X_BYOK_HUB_USER", "cy")
    view = launch.open_admin_app()         # an empty embedded store: nobody becomes admin
    assert not isinstance(view, AdminApp)
    assert "not found" in _text(view)
    with byok_nb.open_registry() as registry, registry._backend.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM orgs").scalar() == 0


def test_h1_hub_visitor_is_auto_joined_admins_see_management(hub_mode, monkeypatch):
    with byok_nb.open_registry() as registry:
        members.start(registry._backend.engine, "default", "team", ["ana"])
    monkeypatch.setenv("BYOK_NB_HUB_PROJECT", "team")
    monkeypatch.setenv("HTTP_X_BYOK_HUB_USER", "bo")
    bo = launch.open_admin_app()
    assert isinstance(bo, AdminApp) and not bo.session.is_org_admin
    monkeypatch.setenv("HTTP_X_BYOK_HUB_USER", "ana")
    ana = launch.open_admin_app()
    assert isinstance(ana, AdminApp) and ana.session.is_org_admin
    with byok_nb.open_registry() as registry:
        assert {(m.user, m.role, m.project) for m in registry.members("default")} == {
            ("ana", "org_admin", None), ("bo", "contributor", "team")}


def test_h1_removed_hub_visitor_sees_why(hub_mode, monkeypatch):
    with byok_nb.open_registry() as registry:
        members.start(registry._backend.engine, "default", "default", ["ana"])
        members.admit(registry._backend.engine, "default", "default", "bo")
        registry.remove_member("default", "bo")
    monkeypatch.setenv("HTTP_X_BYOK_HUB_USER", "bo")
    view = launch.open_admin_app()
    assert not isinstance(view, AdminApp)
    assert "was removed from org" in _text(view) and "add_member" in _text(view)
