"""The remote API's edges: who may call what, what never leaves the service (a provider key, an
internal error's detail, a file of the service's machine), and how connect() finds its service."""
from __future__ import annotations

import logging
import secrets

import httpx
import pytest

import byok_nb
from byok_nb.remote.client import RemoteSession, connect
from byok_nb.testing.fake_providers import FakeOpenAIProvider

from .conftest import PLANTED_KEY
from .remotekit import RunningApi

HI = [{"role": "user", "content": "Say hi"}]


def post(world, path: str, token: str | None, body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(world.api.url + path, json=body, headers=headers)


def test_h3_planted_provider_key_is_in_no_response_of_any_call(world):
    # LiteLLM's proxy echoes a key it refuses in its 401 body (a real reply): the worst case.
    echoed = "ECHO" + secrets.token_hex(16)
    with FakeOpenAIProvider("litellm", api_key="sk-the-right-one-000000") as echoing:
        admin, member = world.admin(), world.member()
        admin.add_model(provider="openai_compatible", base_url=echoing.base_url, api_key=echoed,
                        provider_model_id="m", display_name="Wrong key", slug="wrong-key", test=False)
        calls = [
            lambda: member.list_models(), lambda: member.model_rows(), lambda: member.get_model("echo"),
            lambda: member.chat("echo", HI), lambda: list(member.chat("echo", HI, stream=True)),
            lambda: member.usage(), lambda: member.cost_report(), lambda: admin.audit_log(),
            lambda: admin.api_tokens(), lambda: admin.get_model("wrong-key"),
            lambda: admin.reuse_sources("openai_compatible"), lambda: admin.test_connection("echo"),
            lambda: admin.test_connection("wrong-key"), lambda: admin.probe_capabilities("wrong-key"),
            lambda: admin.update_model("echo", api_key=PLANTED_KEY),
            lambda: member.chat("wrong-key", HI, max_retries=0),
            lambda: list(member.chat("wrong-key", HI, stream=True, max_retries=0)),
            lambda: admin.add_model(provider="openai_compatible", base_url=echoing.base_url, api_key=echoed,
                                    provider_model_id="m", display_name="Refused"),
        ]
        failures = 0
        for call in calls:
            try:
                call()
            except byok_nb.RegistryError as exc:
                failures += 1
                assert echoed not in str(exc) and PLANTED_KEY not in str(exc)
    assert failures >= 3                      # the wrong-key calls really failed at the provider
    sent = b"".join(world.api.sent).decode("utf-8", "replace")
    assert "****" + PLANTED_KEY[-4:] in sent  # the masked view did travel
    for key in (PLANTED_KEY, echoed):
        assert key not in sent and key[:12] not in sent and key[-12:] not in sent


def test_h3_revoked_token_and_removed_member_are_refused_at_once(world):
    s = world.member()
    assert len(s.list_models("custom")) == 1
    world.acme.admin.revoke_api_token("cy-notebook")
    with pytest.raises(byok_nb.Unauthorized) as revoked:
        s.list_models("custom")
    assert revoked.value.status_code == 401 and "revoked" in revoked.value.message
    fresh = world.acme.admin.create_api_token("cy", "cy-again")
    again = connect(world.api.url, fresh)
    assert again.user == "cy"
    world.acme.registry.remove_member("acme", "cy")
    with pytest.raises(byok_nb.Unauthorized) as removed:
        again.chat("echo", HI)
    assert "no longer a member" in removed.value.message


def test_h3_bad_or_missing_token_is_unauthorized(world):
    with pytest.raises(byok_nb.Unauthorized) as unknown:
        connect(world.api.url, "byok_" + "x" * 43)
    assert unknown.value.status_code == 401
    answer = post(world, "api/session/list_models", None, {})
    assert answer.status_code == 401 and answer.json()["error"]["class"] == "Unauthorized"


@pytest.mark.parametrize("name", ["_call_target", "__init__", "create_org", "add_member", "session",
                                  "rotate_master_key", "remove_member", "close", "org", "is_org_admin"])
def test_h3_only_public_session_methods_are_served(world, name):
    answer = post(world, f"api/session/{name}", world.admin_token, {"args": [], "kwargs": {}})
    assert answer.status_code == 404 and answer.json()["error"]["class"] == "NotFound"


def test_h3_seeding_never_reads_a_path_on_the_service_machine(world, tmp_path):
    secret_file = tmp_path / "service-only.csv"
    secret_file.write_text("workflow,field,model\ntriage,summary,echo\n")
    answer = post(world, "api/session/seed_assignments_csv", world.admin_token, {"args": [str(secret_file)]})
    assert answer.status_code == 422 and answer.json()["error"]["class"] == "InvalidRequest"
    assert "uploaded" in answer.json()["error"]["message"]


def test_h3_malformed_requests_are_invalid_requests(world):
    for body in ([], {"args": {}}, {"args": [], "kwargs": [], "x": 1}, {"args": [{"$model": "Registry", "data": {}}]}):
        answer = post(world, "api/session/list_models", world.member_token, body)
        assert answer.status_code == 422, body
    wrong = post(world, "api/session/list_models", world.member_token, {"kwargs": {"colour": "blue"}})
    assert wrong.status_code == 422 and "colour" in wrong.json()["error"]["message"]
    assert httpx.get(world.api.url + "api/session/list_models",
                     headers={"Authorization": f"Bearer {world.member_token}"}).status_code == 405


def test_h3_internal_failure_is_a_generic_500_logged_scrubbed(acme, caplog, db_path):
    leaked = "sk-proj-" + secrets.token_hex(20)

    def broken(engine, token):
        raise RuntimeError(f"boom while holding {leaked}")

    api = RunningApi(acme.registry, authenticate=broken).start()
    caplog.set_level(logging.ERROR, logger="byok_nb.remote")
    try:
        with pytest.raises(byok_nb.RegistryError) as caught:
            connect(api.url, "byok_whatever")
    finally:
        api.stop()
    assert type(caught.value) is byok_nb.RegistryError and caught.value.status_code == 500
    assert "boom" not in caught.value.message and leaked not in b"".join(api.sent).decode()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "RuntimeError" in logged and leaked not in logged


def test_h3_connect_defaults_from_the_hub_environment(world, monkeypatch):
    monkeypatch.setenv("BYOK_NB_SERVICE_URL", world.api.url.rstrip("/"))    # without the slash too
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", world.member_token)
    monkeypatch.setenv("BYOK_NB_API_TOKEN", world.admin_token)
    s = byok_nb.connect()
    assert isinstance(s, RemoteSession) and s.user == "cy"     # the hub's token comes first
    assert s.url == world.api.url
    for token in (world.member_token, world.admin_token):
        assert token not in repr(s) and token[5:15] not in repr(s)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN")
    assert byok_nb.connect().user == "ana"


def test_h3_connect_says_what_to_set_and_refuses_the_v1_url(world, monkeypatch):
    monkeypatch.delenv("BYOK_NB_SERVICE_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    monkeypatch.delenv("BYOK_NB_API_TOKEN", raising=False)
    with pytest.raises(byok_nb.InvalidRequest, match="BYOK_NB_SERVICE_URL"):
        byok_nb.connect()
    with pytest.raises(byok_nb.InvalidRequest, match="JUPYTERHUB_API_TOKEN or BYOK_NB_API_TOKEN"):
        byok_nb.connect(world.api.url)
    with pytest.raises(byok_nb.InvalidRequest) as v1:
        byok_nb.connect("http://127.0.0.1:8081/services/byok/v1", world.member_token)
    assert "service root" in v1.value.message and "'http://127.0.0.1:8081/services/byok/'" in v1.value.message
    with pytest.raises(byok_nb.InvalidRequest):
        byok_nb.connect("ftp://example.org/", world.member_token)


def test_h3_unreachable_service_is_a_clear_503(world):
    with socket_closed_port() as port:
        with pytest.raises(byok_nb.StoreUnavailable) as caught:
            byok_nb.connect(f"http://127.0.0.1:{port}/services/byok/", world.member_token)
    error = caught.value
    assert error.status_code == 503 and "could not be reached" in error.message
    assert error.__context__ is None and error.__cause__ is None       # no httpx error (and headers) kept
    s = world.member()
    world.api.stop()
    with pytest.raises(byok_nb.StoreUnavailable):
        s.list_models()


class socket_closed_port:
    """A loopback port nothing listens on (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        return self.port

    def __exit__(self, *exc: object) -> None:
        pass
