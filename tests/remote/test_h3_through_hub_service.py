"""``byok_nb.connect()`` through the hub service (``/services/byok/api/``) with users' hub API
tokens, against a loopback stand-in for JupyterHub's REST API: a member uses, an org admin
registers a model from their own notebook, a removed user is refused."""
from __future__ import annotations

import secrets
import socket
import threading
import time

import pytest
import uvicorn

import byok_nb
from byok_nb.core.domain import Completion
from byok_nb.hub import members
from byok_nb.hub.service import HubService
from byok_nb.hub.settings import HubSettings

from tests.hub.fake_hub import FakeHub
from tests.hub.svckit import CLIENT_ID, PREFIX, service_env

from .conftest import PLANTED_KEY

HI = [{"role": "user", "content": "Say hi"}]


class HubServiceWithRemote:
    """The hub service (no Voila) on a free loopback port, with a fake hub."""

    def __init__(self, registry) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]
        self.root = f"http://127.0.0.1:{port}{PREFIX}"
        self.hub = FakeHub(service_token=secrets.token_hex(16), client_id=CLIENT_ID,
                           redirect_uri=f"{self.root}oauth_callback").__enter__()
        self.app = HubService(HubSettings.from_env(service_env(port, self.hub)), registry)
        self.server = uvicorn.Server(uvicorn.Config(self.app, loop="uvloop", http="httptools", lifespan="on",
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the hub service did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
        self.hub.__exit__()


@pytest.fixture
def service(registry, db_path):
    members.start(registry._backend.engine, "default", "default", ["ana"])
    running = HubServiceWithRemote(registry)
    try:
        yield running
    finally:
        running.stop()


def test_h3_connect_with_hub_tokens_through_the_hub_service(service, registry, fake, monkeypatch):
    ana_token, bo_token = service.hub.issue_token("ana"), service.hub.issue_token("bo")
    ana = byok_nb.connect(service.root, ana_token)
    assert (ana.user, ana.org, ana.is_org_admin) == ("ana", "default", True)
    # An org admin registers a model from their own notebook: Test Connection runs in the service.
    added = ana.add_model(provider="openai_compatible", base_url=fake.base_url, api_key=PLANTED_KEY,
                          provider_model_id="ft-v4", display_name="Fine-tune v4", max_tokens=256)
    assert added.slug == "fine-tune-v4" and added.created_by == "ana"
    # A single-user server's environment: the service URL and the user's own hub token, no key.
    monkeypatch.setenv("BYOK_NB_SERVICE_URL", service.root)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", bo_token)
    bo = byok_nb.connect()
    assert (bo.user, bo.is_org_admin) == ("bo", False)              # auto-joined as a contributor
    assert type(bo.chat("fine-tune-v4", HI)) is Completion
    assert "".join(c.delta for c in bo.chat("fine-tune-v4", HI, stream=True))
    assert set(bo.usage()["user"]) == {"bo"}
    for refused in (lambda: bo.add_model(provider="openai_compatible", base_url=fake.base_url, api_key="sk-x-1234",
                                         provider_model_id="m", display_name="Nope", test=False),
                    lambda: bo.update_model("fine-tune-v4", display_name="Mine"),
                    lambda: bo.delete_model("fine-tune-v4"), lambda: bo.test_connection("fine-tune-v4")):
        with pytest.raises(byok_nb.Forbidden) as caught:
            refused()
        assert caught.value.status_code == 403
    registry.remove_member("default", "bo")
    with pytest.raises(byok_nb.Unauthorized):
        bo.list_models()
    with pytest.raises(byok_nb.Unauthorized):
        byok_nb.connect(service.root, "not-a-hub-token")
