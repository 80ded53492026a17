"""configure() on a real traitlets Config, as jupyterhub_config.py hands it over."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from traitlets.config import Config

import byok_nb.hub
from byok_nb import InvalidRequest
from byok_nb.hub import configure

ACCESS = "access:services!service=byok"


def _role(c: Config, name: str) -> dict:
    [role] = [r for r in c.JupyterHub.load_roles if r["name"] == name]
    return role


def _service(c: Config, name: str = "byok") -> dict:
    [service] = [s for s in c.JupyterHub.services if s["name"] == name]
    return service


def test_h1_adds_the_managed_service_with_its_oauth_client(monkeypatch):
    c = Config()
    configure(c, admins=["ana"], org="acme", port=12345, project="research")
    service = _service(c)
    assert service["url"] == "http://127.0.0.1:12345"
    assert service["command"] == [sys.executable, "-m", "byok_nb.hub.service"]
    assert service["oauth_no_confirm"] is True
    assert service["oauth_client_id"] == "service-byok"
    env = service["environment"]
    assert env["BYOK_NB_HUB_MODE"] == "1"
    assert (env["BYOK_NB_HUB_ORG"], env["BYOK_NB_HUB_PROJECT"], env["BYOK_NB_HUB_ADMINS"]) == ("acme", "research", "ana")
    assert env["BYOK_NB_HUB_CULL_IDLE"] == "600"


def test_h1_service_environment_takes_the_store_settings_from_the_hubs_environment(monkeypatch):
    monkeypatch.setenv("BYOK_NB_DATABASE_URL", "postgresql+psycopg://u:pw@db/reg")
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", "mk-secret")
    monkeypatch.setenv("BYOK_NB_HOME", "/srv/byok")
    monkeypatch.setenv("BYOK_NB_EGRESS", "public")
    # Identity settings of the embedded app must not reach the service: in hub mode the hub says who.
    monkeypatch.setenv("BYOK_NB_USER", "mallory")
    monkeypatch.setenv("BYOK_NB_ORG", "other")
    monkeypatch.setenv("UNRELATED", "x")
    c = Config()
    configure(c)
    env = _service(c)["environment"]
    assert env["BYOK_NB_DATABASE_URL"] == "postgresql+psycopg://u:pw@db/reg"
    assert env["BYOK_NB_MASTER_KEY"] == "mk-secret"
    assert env["BYOK_NB_HOME"] == "/srv/byok"
    assert env["BYOK_NB_EGRESS"] == "public"
    assert not {"BYOK_NB_USER", "BYOK_NB_ORG", "UNRELATED"} & set(env)


def test_h4_single_user_servers_get_the_service_url_and_no_store_credential(monkeypatch):
    monkeypatch.setenv("BYOK_NB_DATABASE_URL", "postgresql+psycopg://u:pw@db/reg")
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", "mk-secret")
    c = Config()
    c.Spawner.environment = {"KEEP": "me"}
    configure(c, port=10101)
    assert c.Spawner.environment == {"KEEP": "me", "BYOK_NB_SERVICE_URL": "http://127.0.0.1:10101/services/byok/"}
    assert "mk-secret" not in repr(c.Spawner) and "pw@db" not in repr(c.Spawner)


def test_h1_service_url_follows_base_url_and_overrides():
    c = Config()
    c.JupyterHub.base_url = "/jhub/"
    configure(c, port=10102, url="http://hub:10102", bind="0.0.0.0",
              service_url="http://proxy-public/jhub/services/byok/")
    assert _service(c)["url"] == "http://hub:10102"
    assert _service(c)["environment"]["BYOK_NB_HUB_BIND"] == "0.0.0.0"
    assert c.Spawner.environment["BYOK_NB_SERVICE_URL"] == "http://proxy-public/jhub/services/byok/"
    c2 = Config()
    c2.JupyterHub.base_url = "/jhub"
    configure(c2)
    assert c2.Spawner.environment["BYOK_NB_SERVICE_URL"] == "http://127.0.0.1:10101/jhub/services/byok/"


def test_h1_a_spawner_subclass_that_sets_its_own_environment_gets_the_url_too():
    # Zero to JupyterHub writes singleuser.extraEnv to c.KubeSpawner.environment, which replaces
    # c.Spawner.environment for KubeSpawner.
    c = Config()
    c.KubeSpawner.environment = {"A": "1"}
    configure(c)
    assert c.KubeSpawner.environment == {"A": "1", "BYOK_NB_SERVICE_URL": "http://127.0.0.1:10101/services/byok/"}
    assert c.Spawner.environment["BYOK_NB_SERVICE_URL"]


def test_h1_user_and_server_roles_keep_their_defaults_and_gain_access():
    c = Config()
    configure(c)
    assert _role(c, "user")["scopes"] == ["self", ACCESS]
    assert _role(c, "server")["scopes"] == ["users:activity!user", "access:servers!server", ACCESS]
    # The service's own token needs nothing: it asks the hub about a caller with the caller's token.
    assert [r["name"] for r in c.JupyterHub.load_roles] == ["user", "server"]


def test_h1_roles_already_configured_are_merged_not_replaced():
    c = Config()
    c.JupyterHub.load_roles = [
        {"name": "user", "scopes": ["self", "read:groups"], "users": []},
        {"name": "teacher", "scopes": ["admin:users"], "users": ["t"]},
    ]
    c.JupyterHub.extra_user_scopes = {"access:services!service=grader"}
    c.KubeSpawner.server_token_scopes = ["users:activity!user"]
    configure(c)
    assert _role(c, "user")["scopes"] == ["self", "read:groups", "access:services!service=grader", ACCESS]
    assert _role(c, "teacher") == {"name": "teacher", "scopes": ["admin:users"], "users": ["t"]}
    assert c.KubeSpawner.server_token_scopes == ["users:activity!user", ACCESS]


def test_h1_pending_appends_in_the_config_are_kept():
    # jupyterhub_config.py often says c.JupyterHub.services.append(...) before calling us.
    c = Config()
    c.JupyterHub.services.append({"name": "other", "url": "http://127.0.0.1:9"})
    c.JupyterHub.load_roles.append({"name": "server", "scopes": ["users:activity!user", "read:users:name!user"]})
    c.Spawner.environment.update({"B": "2"})
    configure(c)
    assert [s["name"] for s in c.JupyterHub.services] == ["other", "byok"]
    assert _role(c, "server")["scopes"] == ["users:activity!user", "read:users:name!user", ACCESS]
    assert c.Spawner.environment["B"] == "2"


def test_h1_calling_twice_changes_nothing():
    once, twice = Config(), Config()
    configure(once, admins=["ana", "ana"])
    configure(twice, admins=["ana"])
    configure(twice, admins=["ana"])
    assert once == twice
    assert _service(once)["environment"]["BYOK_NB_HUB_ADMINS"] == "ana"


def test_h1_admins_later_dropped_are_no_longer_passed():
    c = Config()
    configure(c, admins=["ana", "cy"])
    configure(c, admins=["ana"])
    assert _service(c)["environment"]["BYOK_NB_HUB_ADMINS"] == "ana"
    configure(c)
    assert _service(c)["environment"]["BYOK_NB_HUB_ADMINS"] == ""


def test_h1_name_command_and_extra_environment():
    c = Config()
    configure(c, name="keys", command=["/opt/venv/bin/python", "-m", "byok_nb.hub.service"],
              environment={"HTTPS_PROXY": "http://proxy:3128"}, cull_idle_seconds=0)
    service = _service(c, "keys")
    assert service["command"][0] == "/opt/venv/bin/python"
    assert service["oauth_client_id"] == "service-keys"
    assert service["environment"]["HTTPS_PROXY"] == "http://proxy:3128"
    assert service["environment"]["BYOK_NB_HUB_CULL_IDLE"] == "0"
    assert "access:services!service=keys" in _role(c, "user")["scopes"]
    assert c.Spawner.environment["BYOK_NB_SERVICE_URL"] == "http://127.0.0.1:10101/services/keys/"


@pytest.mark.parametrize("kwargs, field", [
    ({"admins": "ana"}, "admins"),
    ({"admins": ["a,b"]}, "admins"),
    ({"admins": [""]}, "admins"),
    ({"org": ""}, "org"),
    ({"project": "  "}, "project"),
    ({"port": 0}, "port"),
    ({"port": "10101"}, "port"),
    ({"cull_idle_seconds": -1}, "cull_idle_seconds"),
    ({"command": []}, "api_token"),
])
def test_h1_bad_options_are_refused_by_name(kwargs, field):
    c = Config()
    with pytest.raises(InvalidRequest) as info:
        configure(c, **kwargs)
    assert info.value.field == field
    assert "services" not in c.JupyterHub     # nothing half-written


def test_h1_import_is_light_and_needs_no_jupyterhub():
    code = ("import sys; sys.modules['jupyterhub'] = None\n"   # None in sys.modules: import fails
            "import byok_nb.hub\n"
            "heavy = [m for m in ('jupyterhub', 'sqlalchemy', 'tornado', 'voila', 'uvicorn', 'httpx', 'aiohttp')\n"
            "         if sys.modules.get(m) is not None]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert byok_nb.hub.configure is configure


def test_h1_external_service_gets_no_command_and_the_shared_token():
    c = Config()
    configure(c, url="http://byok:10101", command=[], api_token="shared-token")
    service = _service(c)
    assert "command" not in service
    assert service["api_token"] == "shared-token"
    assert service["url"] == "http://byok:10101"


def test_h1_an_existing_entry_for_the_service_keeps_its_other_keys():
    # Zero to JupyterHub's hub.services.byok becomes such an entry (with a chart-managed token).
    c = Config()
    c.JupyterHub.services = [{"name": "byok", "api_token": "from-the-chart", "info": {"team": "ml"},
                              "environment": {"HTTPS_PROXY": "http://proxy:3128"}}]
    configure(c)
    service = _service(c)
    assert service["api_token"] == "from-the-chart"
    assert service["info"] == {"team": "ml"}
    assert service["environment"]["HTTPS_PROXY"] == "http://proxy:3128"
    assert service["environment"]["BYOK_NB_HUB_MODE"] == "1"
    assert service["command"][1:] == ["-m", "byok_nb.hub.service"]


def _doc_blocks(lang: str) -> list[str]:
    text = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


def test_h1_the_deploy_guides_config_files_run_as_written(monkeypatch):
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", "from-the-hub-env")
    # The single-machine jupyterhub_config.py.
    [single] = [b for b in _doc_blocks("python") if "get_config()" in b]
    c = Config()
    exec(compile(single, "deploy.md", "exec"), {"get_config": lambda: c})   # noqa: S102 - the guide's own text
    assert _service(c)["environment"]["BYOK_NB_HUB_ADMINS"] == "ana"
    assert _service(c)["environment"]["BYOK_NB_MASTER_KEY"] == "from-the-hub-env"
    assert ACCESS in _role(c, "user")["scopes"]
    # Zero to JupyterHub's hub.extraConfig, run after the chart set singleuser.extraEnv.
    [values] = _doc_blocks("yaml")
    extra = re.search(r"    byok: \|\n((?:      .*\n)+)", values).group(1)
    c = Config()
    c.KubeSpawner.environment = {"FROM_CHART": "1"}
    exec(compile(textwrap.dedent(extra), "deploy.md", "exec"), {"c": c})   # noqa: S102
    assert _service(c)["url"] == "http://hub:10101"
    assert _service(c)["environment"]["BYOK_NB_HUB_BIND"] == "0.0.0.0"
    assert c.KubeSpawner.environment == {"FROM_CHART": "1",
                                         "BYOK_NB_SERVICE_URL": "http://hub:10101/services/byok/"}
