"""``byok-nb gateway`` serves the remote registry API beside /v1: the gateway's root is a service
root for ``byok_nb.connect()``, with the same byok_ tokens."""
from __future__ import annotations

import httpx
import pytest

import byok_nb
from byok_nb.core.domain import Completion

from tests.gateway.gatewaykit import RunningGateway

HI = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def gateway(world):
    gw = RunningGateway(world.acme.registry).start()
    try:
        yield gw
    finally:
        gw.stop()


def test_h3_connect_through_the_gateway_root(world, gateway):
    s = byok_nb.connect(gateway.url, world.member_token)
    assert s.user == "cy" and list(s.list_models("custom")["ref"]) == ["echo"]
    assert type(s.chat("echo", HI)) is Completion
    assert "".join(c.delta for c in s.chat("echo", HI, stream=True))
    with pytest.raises(byok_nb.Forbidden):
        s.audit_log()
    with pytest.raises(byok_nb.InvalidRequest, match="service root"):
        byok_nb.connect(gateway.base_url, world.member_token)          # the /v1 URL
    models = httpx.get(gateway.base_url + "/models", headers={"Authorization": f"Bearer {world.member_token}"})
    assert models.status_code == 200 and "echo" in {m["id"] for m in models.json()["data"]}
