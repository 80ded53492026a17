"""byok_nb.server.admin_app: the acting user, the first-run bootstrap, the Voila command (E-1, E-2, E-4)."""
from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

import byok_nb
from byok_nb.server import admin_app as app
from byok_nb.ui import launch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_identity(monkeypatch):
    for name in ("BYOK_NB_USER", "JUPYTERHUB_USER", "BYOK_NB_ORG"):
        monkeypatch.delenv(name, raising=False)


def test_e2_user_from_byok_nb_user_then_jupyterhub_then_os(clean_identity, monkeypatch):
    import getpass

    assert launch.current_user() == getpass.getuser()
    monkeypatch.setenv("JUPYTERHUB_USER", "hub-ana")
    assert launch.current_user() == "hub-ana"
    monkeypatch.setenv("BYOK_NB_USER", "ana")
    assert launch.current_user() == "ana"


def test_e2_first_run_makes_the_user_org_admin_of_the_default_org(clean_identity, monkeypatch, tmp_path):
    monkeypatch.setenv("BYOK_NB_USER", "ana")
    s = launch.app_session()                       # embedded default in the test's BYOK_NB_HOME
    assert (s.org, s.user, s.is_org_admin) == ("default", "ana", True)
    assert (Path(byok_nb.registry.byok_home()) / "registry.db").exists()
    # The second user of an org that already has members is not made admin.
    monkeypatch.setenv("BYOK_NB_USER", "bo")
    other = launch.app_session()
    assert other.user == "bo" and not other.is_org_admin
    with pytest.raises(byok_nb.Forbidden):
        other.list_models()
    # ana is still admin on a later run, and nothing is created twice.
    monkeypatch.setenv("BYOK_NB_USER", "ana")
    assert launch.app_session().is_org_admin


def test_e2_org_from_byok_nb_org(clean_identity, monkeypatch, registry):
    monkeypatch.setenv("BYOK_NB_ORG", "research")
    s = launch.app_session(registry, user="cy")
    assert (s.org, s.is_org_admin) == ("research", True)


def test_e2_bootstrap_is_idempotent(registry):
    assert launch.bootstrap(registry, "acme", "ana") is True
    assert launch.bootstrap(registry, "acme", "ana") is False
    assert launch.bootstrap(registry, "acme", "bo") is False
    assert registry.session(org="acme", user="ana").is_org_admin


def test_e1_voila_command_is_loopback_without_tracebacks_or_sources():
    cmd = app.voila_command("admin_app.ipynb", 9999)
    assert cmd[1:3] == ["-m", "voila"]
    for flag in ("--Voila.ip=127.0.0.1", "--port=9999", "--show_tracebacks=False", "--strip_sources=True",
                 "--no-browser", "--Voila.port_retries=0"):
        assert flag in cmd
    # Voila would open the URL without the token: serve opens the browser itself.
    assert "--no-browser" in app.voila_command("x.ipynb", 1, token=False)
    # F-5: preheated kernels by default (see docs/benchmarks.md), off on request.
    assert "--preheat_kernel=True" in cmd
    assert not any("preheat" in arg for arg in app.voila_command("x.ipynb", 1, preheat=False))


def test_serve_command_turns_token_authentication_on_without_putting_the_token_in_argv():
    cmd = app.voila_command("admin_app.ipynb", 9999)
    assert "--token" in cmd                                    # Voila.auto_token
    assert not any(arg.startswith(("--token=", "--Voila.token", "--IdentityProvider.token")) for arg in cmd)
    assert "--token" not in app.voila_command("admin_app.ipynb", 9999, token=False)
    # The token travels in the environment, which other local users cannot read.
    env = app.voila_env({"PATH": "/bin", "JUPYTER_TOKEN": "stale", "JUPYTER_TOKEN_FILE": "/tmp/empty"}, "t0k3n")
    assert env == {"PATH": "/bin", "JUPYTER_TOKEN": "t0k3n"}
    assert "JUPYTER_TOKEN" not in app.voila_env({"JUPYTER_TOKEN": "x"}, None)
    assert app.app_url("127.0.0.1", 8866, "t0k3n") == "http://127.0.0.1:8866/?token=t0k3n"
    assert app.app_url("::1", 8866, None) == "http://[::1]:8866/"
    first, second = app.new_session_token(), app.new_session_token()
    assert first != second and len(first) == 48 and int(first, 16) >= 0


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org", ""])
def test_serve_refuses_to_turn_the_token_off_on_a_host_that_is_not_loopback(host):
    with pytest.raises(byok_nb.InvalidRequest, match="loopback"):
        app.voila_command("admin_app.ipynb", 9999, host=host, token=False)
    assert "--token" in app.voila_command("admin_app.ipynb", 9999, host=host)   # with a token it serves


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_serve_may_turn_the_token_off_on_loopback_and_checks_the_host_header(host):
    cmd = app.voila_command("admin_app.ipynb", 9999, host=host, token=False)
    assert "--token" not in cmd
    assert "--Voila.tornado_settings=allow_remote_access=" in cmd     # DNS rebinding: Host is checked


def test_cli_serve_no_token_on_a_public_host_is_refused_before_anything_starts(monkeypatch, capsys):
    from byok_nb import cli

    def no_process(*args, **kwargs):
        raise AssertionError("Voila must not be started")

    monkeypatch.setattr(app.subprocess, "Popen", no_process)
    assert cli.main(["serve", "--no-token", "--host", "0.0.0.0", "--port", "9"]) == 2
    err = capsys.readouterr().err
    assert "0.0.0.0" in err and "loopback" in err


def test_f5_wait_for_visitor_returns_at_once_outside_a_preheated_kernel(monkeypatch):
    import sys
    import time

    monkeypatch.delenv("VOILA_PREHEAT", raising=False)
    monkeypatch.delitem(sys.modules, "voila.utils", raising=False)
    started = time.perf_counter()
    launch.wait_for_visitor()
    assert time.perf_counter() - started < 0.1
    assert "voila.utils" not in sys.modules     # Voila's heavy imports stay out of plain kernels


def test_e1_packaged_admin_app_matches_the_repository_copy():
    """A pip install serves byok_nb/notebooks/admin_app.ipynb: it must be notebooks/'s copy."""
    repo, packaged = ROOT / "notebooks" / app.APP_NOTEBOOK, ROOT / "byok_nb" / "notebooks" / app.APP_NOTEBOOK
    assert filecmp.cmp(repo, packaged, shallow=False), "copy notebooks/admin_app.ipynb into byok_nb/notebooks/"
    assert app.app_notebook() == repo


def test_e1_serve_refuses_a_missing_notebook(tmp_path, capsys):
    assert app.serve(port=1, notebook=str(tmp_path / "nope.ipynb")) == 2
    assert "no such notebook" in capsys.readouterr().err


def test_e4_binder_uses_a_throwaway_master_key():
    start = (ROOT / "binder" / "start").read_text()
    assert "BYOK_NB_MASTER_KEY" in start and "generate_master_key" in start
    assert "mktemp" in start and 'exec "$@"' in start
    assert "pip install" in (ROOT / "binder" / "postBuild").read_text()


def test_e1_demo_environment_registers_demo_models_and_cleans_up():
    with app.demo_environment() as env:
        home = Path(env["BYOK_NB_HOME"])
        s = launch.app_session()
        custom = s.list_models(type="custom")
        assert len(custom) == len(app.DEMO_MODELS)
        slug = custom.ref.iloc[0]
        assert s.test_connection(slug).ok           # the loopback fake accepts the demo key
    assert not home.exists()


def test_serve_refuses_a_port_in_use_so_the_printed_url_is_never_another_servers(tmp_path, capsys, monkeypatch):
    import socket

    def no_process(*args, **kwargs):
        raise AssertionError("Voila must not be started")

    monkeypatch.setattr(app.subprocess, "Popen", no_process)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert app.serve(port=taken.getsockname()[1]) == 2
    captured = capsys.readouterr()
    assert "already in use" in captured.err and "token=" not in captured.out


def test_serve_open_uses_a_private_redirect_file_so_the_token_is_not_on_the_browsers_command_line(monkeypatch):
    import stat

    opened = []
    monkeypatch.setattr(app.webbrowser, "open", lambda target: opened.append(target))
    url = app.app_url("127.0.0.1", 8866, "f00d" * 12)
    path = Path(app._open_in_browser(url))
    try:
        assert opened == [path.as_uri()] and "token" not in opened[0]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert url in path.read_text()
    finally:
        path.unlink()


def test_demo_stays_open_unless_asked_and_serve_is_protected_by_default(monkeypatch):
    import inspect

    assert inspect.signature(app.serve).parameters["token"].default is True
    calls = []
    monkeypatch.setattr(app, "serve", lambda **kwargs: calls.append(kwargs) or 0)
    assert app.demo(port=1) == 0 and app.demo(port=1, token=True) == 0
    assert [c["token"] for c in calls] == [False, True]


def test_u7_app_for_an_org_that_does_not_exist_shows_one_clear_message(clean_identity, monkeypatch):
    """BYOK_NB_ORG naming an org that does not exist (while another does) is a message in the app,
    not a failed notebook cell."""
    from byok_nb.ui.launch import open_admin_app
    from byok_nb.ui import AdminApp

    monkeypatch.setenv("BYOK_NB_USER", "ana")
    assert open_admin_app().__class__ is AdminApp            # first run: 'default' is created
    monkeypatch.setenv("BYOK_NB_ORG", "research")
    view = open_admin_app()
    assert not isinstance(view, AdminApp)
    text = " ".join(getattr(child, "value", "") for child in view.children)
    assert "research" in text and "not found" in text and "role=\"alert\"" in text
    assert "Signed in as ana" in text
