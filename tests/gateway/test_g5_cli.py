"""``byok-nb gateway`` as a process: it serves the configured registry on the port given, refuses
without a token, and stops cleanly on SIGTERM."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

import byok_nb
from byok_nb.testing.fake_providers import FakeOpenAIProvider

pytestmark = pytest.mark.sqlite_only
KEY = "sk-cli-gateway-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the gateway exited: {proc.stderr.read()}")
        try:
            httpx.get(url + "/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("the gateway did not start")


@pytest.mark.parametrize("workers", [1, 2])
def test_g5_cli_gateway_serves_the_configured_registry_and_stops_cleanly(tmp_path, master_key, workers):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    fake = FakeOpenAIProvider("openai", api_key=KEY).start()
    with byok_nb.open_registry(url, master_key=master_key) as reg:
        reg.create_org("acme")
        reg.add_member("acme", "ana", role="org_admin")
        admin = reg.session("acme", "ana")
        admin.add_model(provider="openai_compatible", base_url=fake.base_url, api_key=KEY,
                        provider_model_id="m", display_name="Echo", slug="echo", max_tokens=64, test=False)
        token = admin.create_api_token("ana", "cli")
    port = _free_port()
    env = dict(os.environ, BYOK_NB_DATABASE_URL=url, BYOK_NB_MASTER_KEY=master_key)
    proc = subprocess.Popen([sys.executable, "-m", "byok_nb.cli", "gateway", "--port", str(port),
                             "--workers", str(workers)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_up(base, proc)
        listed = httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200 and listed.json()["object"] == "list"
        assert httpx.get(base + "/v1/models").status_code == 401
        for _ in range(6):
            answered = httpx.post(base + "/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                                  json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
            assert answered.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)   # at once: the rows may still be queued
        out, err = proc.communicate(timeout=30)
        fake.stop()
    # uvicorn re-raises the signal it caught once it has shut down (lifespan shutdown included).
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert f"127.0.0.1:{port}" in err
    assert master_key not in out + err and token not in out + err and KEY not in out + err
    with byok_nb.open_registry(url, master_key=master_key) as reg:   # the clean stop wrote every row
        usage = reg.session("acme", "ana").usage()
    assert list(usage["user"]) == ["ana"] * 6
