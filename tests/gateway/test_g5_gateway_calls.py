"""The gateway end to end: the official OpenAI SDK (sync, async, streaming) through the gateway
and the shared call to loopback fake providers, usage recorded with the token's user, the error
mapping on real provider failures, and no provider key in any response, header or log line."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import time

import httpx
import openai
import pytest
from sqlalchemy import select

import byok_nb
from byok_nb.services import api_tokens
from byok_nb.store import read_tx, schema
from byok_nb.testing.fake_providers import FakeOpenAIProvider, rate_limited

from .gatewaykit import post
from asyncrun import run_async

# Distinctive provider keys: the gateway holds them, no caller may ever see one.
GOOD_KEY = "sk-gwgood-" + secrets.token_hex(12)
ECHOED_KEY = "GWLEAK" + secrets.token_hex(16)   # not key-shaped: only scrubbing by value finds it
HI = [{"role": "user", "content": "Say hi"}]


def usage_rows(registry) -> list[dict]:
    log = schema.usage_log
    with read_tx(registry._backend.engine) as conn:
        return [dict(r._mapping) for r in conn.execute(select(log).order_by(log.c.ts_us))]


@pytest.fixture
def fakes():
    good = FakeOpenAIProvider("openai", api_key=GOOD_KEY).start()
    # LiteLLM's proxy echoes a key it refuses in its 401 body (a real reply).
    echoing = FakeOpenAIProvider("litellm", api_key="sk-the-right-one-000000").start()
    yield good, echoing
    good.stop()
    echoing.stop()


@pytest.fixture
def world(acme, tokens, fakes):
    good, echoing = fakes
    admin = acme.admin
    admin.add_model(provider="openai_compatible", base_url=good.base_url, api_key=GOOD_KEY,
                    provider_model_id="echo-model", display_name="Echo", slug="echo", max_tokens=256,
                    supports_json_mode=True, input_cost_per_token="0.000001",
                    output_cost_per_token="0.000002", test=False)
    admin.add_model(provider="openai_compatible", base_url=echoing.base_url, api_key=ECHOED_KEY,
                    provider_model_id="m", display_name="Wrong key", slug="wrong-key", max_tokens=256,
                    test=False)
    return acme


@pytest.fixture
def gw(world, start_gateway):
    return start_gateway(world.registry)


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("byok_nb", "uvicorn", "uvicorn.error", "httpx", "httpcore", "aiohttp"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    return caplog


def _no_key_in(*texts: str) -> None:
    for text in texts:
        for key in (GOOD_KEY, ECHOED_KEY):
            assert key not in text and key[:12] not in text and key[-12:] not in text


def test_g5_openai_sdk_sync_reaches_the_provider_with_the_stored_key(gw, tokens, world, fakes):
    good, _ = fakes
    client = openai.OpenAI(base_url=gw.base_url, api_key=tokens.member, max_retries=0)
    assert {"echo", "wrong-key"} <= {m.id for m in client.models.list()}
    reply = client.chat.completions.create(model="echo", messages=HI, temperature=0.3, seed=7)
    assert reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    sent = good.last
    assert sent.headers["authorization"] == f"Bearer {GOOD_KEY}"   # the gateway's key, not the token
    assert sent.json["temperature"] == 0.3 and sent.json["seed"] == 7
    gw.app.writer.close()
    rows = usage_rows(world.registry)
    assert [(r["model"], r["user_name"], r["ok"]) for r in rows] == [("echo", "cy", True)]
    assert rows[0]["input_tokens"] == reply.usage.prompt_tokens


def test_g5_openai_sdk_streaming_and_async(gw, tokens, world):
    client = openai.OpenAI(base_url=gw.base_url, api_key=tokens.member, max_retries=0)
    chunks = list(client.chat.completions.create(model="echo", messages=HI, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    direct = world.contributor.chat("echo", HI)
    assert text == direct.text

    async def many():
        aclient = openai.AsyncOpenAI(base_url=gw.base_url, api_key=tokens.member, max_retries=0)
        try:
            replies = await asyncio.gather(*[aclient.chat.completions.create(model="echo", messages=HI)
                                             for _ in range(10)])
            stream = await aclient.chat.completions.create(model="echo", messages=HI, stream=True)
            streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        finally:
            await aclient.close()
        return replies, streamed

    replies, streamed = run_async(many())
    assert {r.choices[0].message.content for r in replies} == {direct.text}
    assert streamed == direct.text
    gw.app.writer.close()
    rows = usage_rows(world.registry)
    assert len(rows) == 1 + 1 + 10 + 1   # stream, direct chat, gather, async stream: one row each
    assert {r["user_name"] for r in rows} == {"cy"}


def test_g5_provider_401_is_502_and_no_key_leaves(gw, tokens, world, logs):
    r = post(gw, "/v1/chat/completions", tokens.member, {"model": "wrong-key", "messages": HI})
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["code"] == "upstream_error" and error["upstream"]["status"] == 401
    assert "Invalid proxy server token" in error["message"]   # the provider's own words, scrubbed
    with httpx.stream("POST", gw.base_url + "/chat/completions",
                      headers={"Authorization": f"Bearer {tokens.member}"},
                      json={"model": "wrong-key", "messages": HI, "stream": True}) as s:
        streamed = s.read().decode()
        assert s.status_code == 502
    client = openai.OpenAI(base_url=gw.base_url, api_key=tokens.member, max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="wrong-key", messages=HI)
    assert caught.value.status_code == 502
    gw.app.writer.close()
    _no_key_in(r.text, str(dict(r.headers)), streamed, str(caught.value), logs.text,
               "\n".join(str(row) for row in usage_rows(world.registry)))


def test_g5_provider_rate_limit_after_retries_is_429(gw, tokens, fakes):
    good, _ = fakes
    good.errors = [rate_limited("0")] * 3   # the first call and both retries
    r = post(gw, "/v1/chat/completions", tokens.member, {"model": "echo", "messages": HI})
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    good.errors = [rate_limited("0")]   # one 429, then an answer: retried inside the call
    assert post(gw, "/v1/chat/completions", tokens.member, {"model": "echo", "messages": HI}).status_code == 200


def test_g5_unknown_model_and_bad_parameter(gw, tokens):
    client = openai.OpenAI(base_url=gw.base_url, api_key=tokens.member, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=HI)
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="echo", messages=HI, logit_bias={"1": 2})
    assert "logit_bias" in bad.value.body["message"]


def test_g5_deadline_is_504(world, tokens, fakes, start_gateway, registry_url, master_key):
    good, _ = fakes
    good.delay = 3
    with byok_nb.open_registry(registry_url, master_key=master_key, timeout=0.5) as quick:
        gw = start_gateway(quick)
        started = time.monotonic()
        r = post(gw, "/v1/chat/completions", tokens.member, {"model": "echo", "messages": HI}, timeout=30)
        assert r.status_code == 504, r.text
        assert r.json()["error"]["code"] == "timeout"
        assert time.monotonic() - started < 3
        gw.stop()


def test_g5_model_list_is_what_the_user_may_use_and_retrieve_works(gw, tokens, world):
    client = openai.OpenAI(base_url=gw.base_url, api_key=tokens.member, max_retries=0)
    listed = {m.id: m for m in client.models.list()}
    refs = set(world.contributor.list_models()["ref"])
    assert set(listed) == refs   # platform ids and the org's active custom slugs
    platform = next(ref for ref in refs if "/" in ref)
    assert client.models.retrieve(platform).id == platform   # an id with a slash in it
    assert client.models.retrieve("echo").owned_by == "openai_compatible"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    world.admin.delete_model("wrong-key")
    assert "wrong-key" not in {m.id for m in client.models.list()}
    r = httpx.post(gw.base_url + "/models", headers={"Authorization": f"Bearer {tokens.member}"})
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_g5_provider_failing_mid_stream_ends_the_stream_with_an_error_event(gw, tokens, world, fakes, logs):
    good, _ = fakes
    good.stream_error = (500, f"upstream worker crashed (key {GOOD_KEY})")   # a provider quoting a key
    good.stream_error_after = 2
    with httpx.stream("POST", gw.base_url + "/chat/completions",
                      headers={"Authorization": f"Bearer {tokens.member}"},
                      json={"model": "echo", "messages": HI, "stream": True}) as r:
        assert r.status_code == 200   # the status line went out with the first chunk
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] != "data: [DONE]"
    error = json.loads(events[-1][len("data: "):])["error"]
    assert error["code"] == "upstream_error" and "crashed" in error["message"]
    client = openai.OpenAI(base_url=gw.base_url, api_key=tokens.member, max_retries=0)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="echo", messages=HI, stream=True):
            pass
    gw.app.writer.close()
    rows = usage_rows(world.registry)
    assert [r["ok"] for r in rows] == [False, False]   # the failed streams are recorded
    _no_key_in("\n".join(events), logs.text, "\n".join(str(row) for row in rows))


def test_g5_revoked_token_expired_token_and_removed_member_refused_on_the_next_request(gw, tokens, world,
                                                                                      monkeypatch):
    client = openai.OpenAI(base_url=gw.base_url, api_key=tokens.member, max_retries=0)
    day_token = world.admin.create_api_token("ana", "one-day", expires_in_days=1)
    day_client = openai.OpenAI(base_url=gw.base_url, api_key=day_token, max_retries=0)
    assert day_client.models.list().data
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    monkeypatch.setattr(api_tokens, "_now", lambda: later)   # the gateway runs in this process
    with pytest.raises(openai.AuthenticationError) as expired:
        day_client.models.list()
    assert "expired" in expired.value.body["message"]
    monkeypatch.undo()
    admin_client = openai.OpenAI(base_url=gw.base_url, api_key=tokens.admin, max_retries=0)
    assert client.chat.completions.create(model="echo", messages=HI).choices
    assert admin_client.chat.completions.create(model="echo", messages=HI).choices
    world.admin.revoke_api_token("ana-ci")
    with pytest.raises(openai.AuthenticationError):
        admin_client.chat.completions.create(model="echo", messages=HI)
    world.registry.remove_member("acme", "cy", project="search")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="echo", messages=HI)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
