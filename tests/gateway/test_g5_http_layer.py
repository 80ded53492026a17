"""The gateway's HTTP layer with a stand-in for the shared call (same signature as
byok_nb.services.chat.achat): OpenAI shapes through the official SDK, streaming, the error
mapping, auth checked on every request, and usage rows handed to the batching writer."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import openai
import pytest
from sqlalchemy import select

from byok_nb.core.domain import Completion
from byok_nb.core.errors import Forbidden, InvalidRequest, NotFound, ProviderError
from byok_nb.providers.retry import deadline_exceeded
from byok_nb.store import read_tx, schema

from .gatewaykit import get, post
from asyncrun import run_async

pytestmark = pytest.mark.sqlite_only

PLANTED = "sk-GATEWAYCANARY0123456789abcdefXYZ"   # a provider key that must never leave


class FakeCall:
    """Answers by model name; records one row per call through ``record`` as the real one does."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.yielded = 0

    async def __call__(self, ctx, model, messages, *, stream=False, max_retries=2, timeout=None,
                       record=None, **params):
        self.calls.append({"user": ctx.user, "org": ctx.org, "model": model, "messages": messages,
                           "stream": stream, "params": params})
        if model == "bad-param":
            raise InvalidRequest("seed is not supported by AWS Bedrock", field="seed")
        if model == "nope":
            raise NotFound("model 'nope' does not exist in org 'acme'")
        if model == "forbidden":
            raise Forbidden("not allowed")
        if model == "rate-limited":
            raise ProviderError("rate limited", status_code=429, retry_after=7.0, provider="together",
                                provider_message="Rate limit reached")
        if model == "provider-401":
            raise ProviderError(f"HTTP 401: Incorrect API key provided: {PLANTED}", status_code=401,
                                provider="openai", provider_message=f"Incorrect API key provided: {PLANTED}")
        if model == "provider-500":
            raise ProviderError("HTTP 500: boom", status_code=500, provider="fireworks", provider_message="boom")
        if model == "slow":
            raise deadline_exceeded()
        row = {"model": model, "model_type": "custom", "provider": "openai_compatible",
               "input_cost_per_token": None, "output_cost_per_token": None, "ok": True,
               "latency_ms": 1.0, "input_tokens": 5, "output_tokens": 2}
        if not stream:
            record(ctx, row)
            return Completion(text="hello there", input_tokens=5, output_tokens=2, latency_ms=1.0, model=model)

        async def chunks():
            try:
                if model == "long":
                    for i in range(1000):
                        self.yielded = i + 1
                        yield SimpleNamespace(delta=f"{i} ", tool_calls=None, usage=None, finish_reason=None)
                        await asyncio.sleep(0.01)
                for word in ("hel", "lo"):
                    yield SimpleNamespace(delta=word, tool_calls=None, usage=None, finish_reason=None)
                yield SimpleNamespace(delta="", tool_calls=None, finish_reason="stop",
                                      usage=SimpleNamespace(input_tokens=5, output_tokens=2))
            finally:
                record(ctx, row)
        return chunks()


def logged_users(registry) -> list[tuple[str, str]]:
    """(model, user) of every usage row, oldest first."""
    log = schema.usage_log
    with read_tx(registry._backend.engine) as conn:
        return [tuple(r) for r in conn.execute(select(log.c.model, log.c.user_name).order_by(log.c.ts_us))]


@pytest.fixture
def fake_call():
    return FakeCall()


@pytest.fixture
def gw(acme, tokens, start_gateway, fake_call):
    acme.admin.add_model(provider="openai_compatible", base_url="http://127.0.0.1:9/v1", api_key=PLANTED,
                         provider_model_id="m", display_name="Echo", slug="echo", max_tokens=256, test=False)
    return start_gateway(acme.registry, chat=fake_call)


def test_g5_openai_sdk_sync_chat_and_model_list(gw, tokens, fake_call, acme):
    client = openai.OpenAI(base_url=gw.base_url, api_key=tokens.member, max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert "echo" in ids
    echo = next(m for m in client.models.list() if m.id == "echo")
    assert echo.owned_by == "openai_compatible"
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}],
                                           temperature=0.2, max_completion_tokens=9, seed=3)
    assert reply.choices[0].message.content == "hello there"
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (5, 2, 7)
    assert fake_call.calls[-1]["user"] == "cy"
    assert fake_call.calls[-1]["params"] == {"temperature": 0.2, "max_tokens": 9, "seed": 3}
    gw.app.writer.close()   # flush
    assert logged_users(acme.registry) == [("echo", "cy")]


def test_g5_openai_sdk_streaming_with_usage(gw, tokens, acme):
    client = openai.OpenAI(base_url=gw.base_url, api_key=tokens.member, max_retries=0)
    stream = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 7
    # Without include_usage no usage chunk is sent.
    plain = list(client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}],
                                                stream=True))
    assert all(c.choices for c in plain) and all(c.usage is None for c in plain)
    gw.app.writer.close()
    assert logged_users(acme.registry) == [("echo", "cy")] * 2


def test_g5_streams_end_with_done(gw, tokens):
    import httpx

    with httpx.stream("POST", gw.base_url + "/chat/completions",
                      headers={"Authorization": f"Bearer {tokens.member}"},
                      json={"model": "echo", "messages": [{"role": "user", "content": "x"}], "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_g5_openai_sdk_async_gather(gw, tokens):
    async def main():
        client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=tokens.admin, max_retries=0)
        replies = await asyncio.gather(*[client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": str(i)}]) for i in range(8)])
        stream = await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "s"}],
                                                      stream=True)
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        await client.close()
        return replies, "".join(parts)

    replies, streamed = run_async(main())
    assert [r.choices[0].message.content for r in replies] == ["hello there"] * 8
    assert streamed == "hello"


@pytest.mark.parametrize("model,status,code,sdk_error", [
    ("bad-param", 400, "invalid_request", openai.BadRequestError),
    ("nope", 404, "model_not_found", openai.NotFoundError),
    ("forbidden", 403, "forbidden", openai.PermissionDeniedError),
    ("rate-limited", 429, "rate_limit_exceeded", openai.RateLimitError),
    ("provider-401", 502, "upstream_error", openai.InternalServerError),
    ("provider-500", 502, "upstream_error", openai.InternalServerError),
    ("slow", 504, "timeout", openai.InternalServerError),
])
def test_g5_error_mapping(gw, tokens, model, status, code, sdk_error):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    for stream in (False, True):
        r = post(gw, "/v1/chat/completions", tokens.member, dict(body, stream=stream))
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert error["code"] == code and error["message"]
        assert set(error) >= {"message", "type", "code"}
        assert PLANTED not in r.text and PLANTED[:12] not in r.text
        assert all(PLANTED not in v for v in r.headers.values())
    if model == "rate-limited":
        assert r.headers["retry-after"] == "7"
    if model.startswith("provider-"):
        assert error["upstream"]["status"] == int(model[-3:])
    client = openai.OpenAI(base_url=gw.base_url, api_key=tokens.member, max_retries=0)
    with pytest.raises(sdk_error) as caught:
        client.chat.completions.create(**body)
    assert caught.value.status_code == status


def test_g5_bad_bodies_are_400(gw, tokens):
    for body in ([], {"messages": [{"role": "user", "content": "x"}]}, {"model": "echo"},
                 {"model": "echo", "messages": [], }, {"model": "echo", "messages": [{"role": "user"}], "n": 2},
                 {"model": "echo", "messages": [{"role": "user"}], "stream": "yes"}):
        r = post(gw, "/v1/chat/completions", tokens.member, body)
        assert r.status_code == 400, body
        assert r.json()["error"]["type"] == "invalid_request_error"
    import httpx

    r = httpx.post(gw.base_url + "/chat/completions", content=b"{not json",
                   headers={"Authorization": f"Bearer {tokens.member}"})
    assert r.status_code == 400
    assert get(gw, "/v1/nothing", tokens.member).status_code == 404


def test_g5_missing_unknown_token_is_401(gw, tokens, fake_call):
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    for token in (None, "byok_" + "x" * 43, "sk-not-ours", tokens.member + "x"):
        for r in (post(gw, "/v1/chat/completions", token, body), get(gw, "/v1/models", token)):
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "invalid_api_key"
    assert fake_call.calls == []
    client = openai.OpenAI(base_url=gw.base_url, api_key="byok_" + "y" * 43, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_g5_revoked_token_and_removed_member_are_refused_at_once(gw, tokens, acme, fake_call):
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    assert post(gw, "/v1/chat/completions", tokens.member, body).status_code == 200
    assert post(gw, "/v1/chat/completions", tokens.admin, body).status_code == 200
    acme.admin.revoke_api_token("ana-ci")
    r = post(gw, "/v1/chat/completions", tokens.admin, body)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    acme.registry.remove_member("acme", "cy")
    r = post(gw, "/v1/chat/completions", tokens.member, body)
    assert r.status_code == 401 and "no longer a member" in r.json()["error"]["message"]
    assert get(gw, "/v1/models", tokens.member).status_code == 401
    assert len(fake_call.calls) == 2


def test_g5_client_going_away_mid_stream_closes_the_call_and_records_it(gw, tokens, acme, fake_call):
    import httpx

    with httpx.stream("POST", gw.base_url + "/chat/completions",
                      headers={"Authorization": f"Bearer {tokens.member}"},
                      json={"model": "long", "messages": [{"role": "user", "content": "x"}], "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                break   # one chunk, then hang up
    deadline = time.monotonic() + 10
    while not logged_users(acme.registry) and time.monotonic() < deadline:
        gw.app.writer.close()   # flush whatever was recorded so far
        time.sleep(0.05)
    assert logged_users(acme.registry) == [("long", "cy")]
    assert fake_call.yielded < 1000   # the provider stream was closed, not read to its end


def test_g5_oversized_body_is_413_and_health_needs_no_token(gw, tokens):
    import httpx

    from byok_nb.core.asgi_body import MAX_BODY

    r = httpx.post(gw.base_url + "/chat/completions", content=b"x" * (MAX_BODY + 1),
                   headers={"Authorization": f"Bearer {tokens.member}"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert get(gw, "/health", None).json() == {"status": "ok"}
