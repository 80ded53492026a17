"""M-1: org admins manage custom models; every member uses them; outsiders get nothing."""
from __future__ import annotations

import pytest

import byok_nb
from byok_nb import Forbidden, NotFound

from regkit import FW_KEY, fireworks


def _management_calls(slug: str):
    """Every management call, each against an existing model so only the role can refuse it."""
    return {
        "add_model": lambda s: s.add_model(test=False, **fireworks(display_name="Other", slug="other")),
        "update_model": lambda s: s.update_model(slug, display_name="renamed"),
        "test_connection(slug)": lambda s: s.test_connection(slug),
        "test_connection(draft)": lambda s: s.test_connection(fireworks(slug="probe")),
        "delete_model": lambda s: s.delete_model(slug),
        "reuse_sources": lambda s: s.reuse_sources("fireworks"),
        "audit_log": lambda s: s.audit_log(),
    }


@pytest.fixture
def with_model(acme):
    model = acme.admin.add_model(test=False, **fireworks(slug="shared-llama"))
    return acme, model


@pytest.mark.parametrize("who", ["project_admin", "contributor"])
@pytest.mark.parametrize("call", list(_management_calls("x")))
def test_m1_non_admin_members_cannot_manage(with_model, who, call):
    acme, model = with_model
    session = getattr(acme, who)
    with pytest.raises(Forbidden) as info:
        _management_calls(model.slug)[call](session)
    assert info.value.status_code == 403
    assert "org_admin" in info.value.message
    # Nothing happened: the model is untouched, no "other" model exists.
    after = acme.admin.get_model(model.slug)
    assert after.active and after.display_name == model.display_name
    assert list(acme.admin.list_models(type="custom")["ref"]) == [model.slug]


@pytest.mark.parametrize("call", list(_management_calls("x")))
def test_m1_outsider_cannot_manage(with_model, call):
    acme, model = with_model
    with pytest.raises(Forbidden) as info:
        _management_calls(model.slug)[call](acme.outsider)
    assert info.value.status_code == 403
    assert "not a member" in info.value.message


@pytest.mark.parametrize("who", ["admin", "project_admin", "contributor"])
def test_m1_every_member_can_list_and_view(with_model, who):
    acme, model = with_model
    session = getattr(acme, who)
    frame = session.list_models(type="custom")
    assert list(frame["ref"]) == [model.slug]
    view = session.get_model(model.slug)
    assert view.id == model.id and view.secret_masked == "****" + FW_KEY[-4:]
    assert session.platform_models(), "members see the platform catalogue"
    assert "custom" in set(session.list_models()["type"])


@pytest.mark.parametrize("call", ["list_models", "get_model", "platform_models"])
def test_m1_outsider_is_forbidden_to_use(with_model, call):
    acme, model = with_model
    calls = {
        "list_models": lambda s: s.list_models(),
        "get_model": lambda s: s.get_model(model.slug),
        "platform_models": lambda s: s.platform_models(),
    }
    with pytest.raises(Forbidden) as info:
        calls[call](acme.outsider)
    assert info.value.status_code == 403


def test_m1_admin_manages(with_model):
    acme, model = with_model
    s = acme.admin
    assert s.update_model(model.slug, display_name="Renamed").label == "Renamed"
    assert [m.slug for m in s.reuse_sources("fireworks")] == [model.slug]
    assert set(s.audit_log()["action"]) == {"add", "edit"}
    assert s.delete_model(model.slug).slug == model.slug


def test_m1_orgs_are_isolated(with_model):
    acme, model = with_model
    reg = acme.registry
    reg.create_org("globex")
    reg.add_member("globex", "gus", role="org_admin")
    gus = reg.session(org="globex", user="gus")

    # Another org never sees acme's models ...
    assert gus.list_models(type="custom").empty
    with pytest.raises(NotFound):
        gus.get_model(model.slug)
    assert gus.reuse_sources("fireworks") == []
    assert gus.audit_log().empty
    # ... may use the same slug (M-5) ...
    theirs = gus.add_model(test=False, **fireworks(slug=model.slug, display_name="Globex copy",
                                                    api_key="fw_globex_other_key_1234567"))
    assert theirs.id != model.id and theirs.org == "globex"
    # ... and each org keeps seeing only its own record.
    assert acme.admin.get_model(model.slug).display_name == model.display_name
    assert gus.get_model(model.slug).display_name == "Globex copy"
    assert list(acme.admin.list_models(type="custom")["label"]) == [model.display_name]
    assert list(gus.list_models(type="custom")["label"]) == ["Globex copy"]
    # Deleting in one org leaves the other untouched.
    gus.delete_model(model.slug)
    assert acme.admin.get_model(model.slug).active


def test_m1_admin_of_one_org_is_an_outsider_in_another(with_model):
    acme, _ = with_model
    reg = acme.registry
    reg.create_org("globex")
    reg.add_member("globex", "gus", role="org_admin")
    gus_in_acme = reg.session(org="acme", user="gus")
    ana_in_globex = reg.session(org="globex", user="ana")
    for session in (gus_in_acme, ana_in_globex):
        with pytest.raises(Forbidden):
            session.list_models()
        with pytest.raises(Forbidden):
            session.add_model(test=False, **fireworks(slug="intruder"))


def test_m1_session_for_unknown_org_is_not_found(registry):
    with pytest.raises(NotFound):
        registry.session(org="nope", user="ana")


def test_m1_role_names_are_checked(acme):
    with pytest.raises(byok_nb.InvalidRequest):
        acme.registry.add_member("acme", "eve", role="superuser")
    with pytest.raises(byok_nb.InvalidRequest):
        acme.registry.add_member("acme", "eve", role="contributor")  # needs a project
