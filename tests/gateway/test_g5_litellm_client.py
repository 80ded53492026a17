"""A real LiteLLM client against the gateway: ``litellm.completion(model="openai/<ref>",
api_base=<gateway>/v1, api_key=<byok_ token>)``, plain and streamed, run from LiteLLM's own
venv (pinned, prepared by ``make litellm-env``; see litellmkit.py), against ``byok-nb gateway``
started as a user starts it, over a registry whose model is served by a loopback fake provider.

One LiteLLM process makes the module's calls (a plain one, a streamed one, one with a wrong
token), because importing LiteLLM takes seconds; each test checks one of them: the answer LiteLLM
hands back, that the provider saw the provider's key (never the caller's token), and that the call
was recorded in usage for the token's user.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import byok_nb
from byok_nb.testing.fake_providers import FakeOpenAIProvider
from byok_nb.testing.voila import free_port, sandbox_env

from . import litellmkit

pytestmark = pytest.mark.slow

PROVIDER_KEY = "sk-compat-gateway-key-000123"
ANSWER = "Paris is the capital of France."
SLUG = "compat-chat"
CLIENT = Path(__file__).with_name("litellm_client.py")


@pytest.fixture(scope="module")
def litellm_python() -> Path:
    if not litellmkit.is_ready():
        why = (f"no prepared LiteLLM virtualenv at {litellmkit.venv_path()}: `make test` prepares it "
               f"(python tests/gateway/litellmkit.py, which downloads LiteLLM {litellmkit.VERSION})")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return litellmkit.python()


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAIProvider("openai", api_key=PROVIDER_KEY, reply=ANSWER) as server:
        yield server


@pytest.fixture(scope="module")
def world(tmp_path_factory, fake):
    """A SQLite registry with org "acme", member "cy" and one OpenAI-compatible model on the fake;
    a token for cy; the gateway serving it on a free loopback port."""
    tmp_path = tmp_path_factory.mktemp("litellm_gateway")
    key = byok_nb.generate_master_key()
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    home = tmp_path / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as env:      # module scope: the autouse env fixture is per test
        env.setenv("BYOK_NB_HOME", str(home))
        reg = byok_nb.open_registry(url, master_key=key)
    reg.create_org("acme")
    reg.create_project("acme", "search")
    reg.add_member("acme", "ana", role="org_admin")
    reg.add_member("acme", "cy", role="contributor", project="search")
    admin = reg.session(org="acme", user="ana")
    admin.add_model(provider="openai_compatible", base_url=fake.base_url, api_key=PROVIDER_KEY,
                    provider_model_id="compat-model", display_name="Compat chat", slug=SLUG,
                    max_tokens=256, input_cost_per_token="0.000001",
                    output_cost_per_token="0.000002", test=False)
    token = admin.create_api_token("cy", "litellm-test")
    port = free_port()
    log = open(tmp_path / "gateway.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "byok_nb.cli", "gateway", "--host", "127.0.0.1",
                             "--port", str(port)],
                            env=sandbox_env(home, BYOK_NB_DATABASE_URL=url, BYOK_NB_MASTER_KEY=key),
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(proc, base, token, log)
        yield {"base": base, "token": token, "admin": admin}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        reg.close()


def _wait_until_serving(proc, base: str, token: str, log) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"the gateway exited {proc.returncode}:\n{log.read()[-3000:]}")
        request = urllib.request.Request(f"{base}/v1/models", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    log.seek(0)
    raise AssertionError(f"the gateway did not answer within 60 s:\n{log.read()[-3000:]}")


@pytest.fixture(scope="module")
def calls(litellm_python, world, fake):
    """LiteLLM's results of: a plain call, a streamed call, a call with a token the gateway never
    made; and the fake's request log after each."""
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    plan = [{"api_base": world["base"] + "/v1", "api_key": token, "model": f"openai/{SLUG}",
             "messages": messages, "stream": stream}
            for token, stream in ((world["token"], False), (world["token"], True),
                                  ("byok_" + "x" * 43, False))]
    done = subprocess.run([str(litellm_python), str(CLIENT), json.dumps(plan)], capture_output=True,
                          text=True, timeout=300, env=litellmkit.env())
    assert done.returncode == 0, done.stderr[-3000:]
    plain, streamed, refused = json.loads(done.stdout.strip().splitlines()[-1])
    return {"plain": plain, "streamed": streamed, "refused": refused, "provider_requests": list(fake.requests)}


def _recorded_rows(admin, expected: int):
    """Usage rows of the model once ``expected`` are there: the gateway may hand writes to a
    writer, so a row can land a moment after the answer went out (a wait, not a timing check)."""
    deadline = time.monotonic() + 20
    while True:
        rows = admin.usage()
        rows = rows[rows["model"] == SLUG]
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows.reset_index(drop=True)
        time.sleep(0.2)


def test_g5_litellm_calls_reach_the_provider_with_its_key_never_the_token(calls, world):
    sent = calls["provider_requests"]
    assert len(sent) == 2, [r.json for r in sent]   # the refused call never reached it
    for request in sent:
        assert request.headers.get("authorization") == f"Bearer {PROVIDER_KEY}"
        assert request.json["model"] == "compat-model"
    assert world["token"] not in json.dumps([r.headers for r in sent] + [r.json for r in sent])
    assert [bool(r.json.get("stream")) for r in sent] == [False, True]   # streamed end to end


def test_g5_litellm_completion_through_the_gateway_answers_and_records_usage(calls, world):
    out = calls["plain"]
    assert "error" not in out, out
    assert out["version"] == litellmkit.VERSION
    assert out["text"] == ANSWER
    assert out["finish_reason"] == "stop"
    assert out["usage"]["prompt_tokens"] > 0 and out["usage"]["completion_tokens"] > 0
    rows = _recorded_rows(world["admin"], 2)
    assert len(rows) == 2, rows
    assert list(rows["user"]) == ["cy", "cy"]
    assert int(rows.loc[0, "input_tokens"]) == out["usage"]["prompt_tokens"]
    assert int(rows.loc[0, "output_tokens"]) == out["usage"]["completion_tokens"]


def test_g5_litellm_streamed_completion_through_the_gateway_answers_and_records_usage(calls, world):
    out = calls["streamed"]
    assert "error" not in out, out
    assert out["text"] == ANSWER
    assert out["chunks"] >= 1
    assert out["usage"] and out["usage"]["completion_tokens"] > 0
    rows = _recorded_rows(world["admin"], 2)
    assert len(rows) == 2, rows
    assert int(rows.loc[1, "input_tokens"]) == out["usage"]["prompt_tokens"]
    assert int(rows.loc[1, "output_tokens"]) == out["usage"]["completion_tokens"]


def test_g5_litellm_with_a_token_the_gateway_never_made_gets_its_401(calls, world):
    out = calls["refused"]
    assert out.get("status") == 401, out
    assert out["error"] == "AuthenticationError"
    assert len(_recorded_rows(world["admin"], 2)) == 2     # nothing recorded for it
