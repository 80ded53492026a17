"""The async whole-reply call goes straight to the hub's aiohttp session (async_http.DirectSender)
rather than through httpx's request objects; every outcome — the answer, a provider's error, an
egress refusal, a redirect, a header HTTP cannot carry, a URL httpx cannot parse — is exactly
what the httpx path gives, and it is the direct path that ran."""
from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest
from provider_kit import KEYS, chat, target_for

from byok_nb.providers import ProviderHub, Target
from byok_nb.providers import http_streams
from byok_nb.testing.fake_providers import Reply
from asyncrun import run_async


def _outcome(hub: ProviderHub, target: Target) -> tuple[Any, ...]:
    async def go():
        try:
            result = await hub.adapter(target).achat(chat())
            # (the fake numbers its request ids: each path's first call has the first one)
            return ("ok", result.text, result.input_tokens, result.output_tokens, result.request_id[:9])
        except Exception as exc:  # noqa: BLE001 — the outcome is what is compared
            return (type(exc).__name__, getattr(exc, "status_code", None), getattr(exc, "message", str(exc)))
        finally:
            await hub.aclose()
    return run_async(go())


def _both(monkeypatch, make_hub, target: Target) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    sent_through_httpx: list[str] = []
    real_send = httpx.AsyncClient.send

    async def counting_send(self, request, **kw):
        sent_through_httpx.append(str(request.url))
        return await real_send(self, request, **kw)

    monkeypatch.setattr(httpx.AsyncClient, "send", counting_send)
    with make_hub() as hub:
        direct = _outcome(hub, target)
    assert sent_through_httpx == []                  # the direct path ran, not httpx
    with monkeypatch.context() as patch:
        patch.setattr(http_streams, "direct_sender", lambda client: None)
        with make_hub() as hub:
            through_httpx = _outcome(hub, target)
    return direct, through_httpx


def _hub(**kw: Any):
    return lambda: ProviderHub(timeout=3.0, **kw)


def test_f7_direct_answer_and_provider_error_equal_the_httpx_path(monkeypatch, openai_fake):
    fake = openai_fake("openai")
    direct, through_httpx = _both(monkeypatch, _hub(), target_for("openai", fake))
    assert direct == through_httpx and direct[0] == "ok"
    wrong = target_for("openai", fake, api_key="sk-wrong-" + "0" * 32)
    direct, through_httpx = _both(monkeypatch, _hub(), wrong)
    assert direct == through_httpx and direct[0] == "ProviderError" and direct[1] == 401
    assert "sk-wrong-" not in direct[2]


def test_f7_direct_path_refuses_metadata_and_public_mode_loopback_as_httpx_does(monkeypatch, openai_fake):
    metadata = Target("openai_compatible", "m", base_url="http://169.254.169.254/v1")
    direct, through_httpx = _both(monkeypatch, _hub(), metadata)
    assert direct == through_httpx and direct[0] == "EgressRefused"
    fake = openai_fake("openai", api_key=None)
    direct, through_httpx = _both(monkeypatch, _hub(egress="public"), target_for("openai", fake, api_key=None))
    assert direct == through_httpx and direct[0] == "EgressRefused" and "loopback" in direct[2]
    assert fake.requests == []


def test_f7_direct_path_never_follows_a_redirect(monkeypatch, openai_fake):
    elsewhere = openai_fake("openai", api_key=None)
    fake = openai_fake("together", redirect_to=elsewhere.base_url + "/chat/completions")
    direct, through_httpx = _both(monkeypatch, _hub(), target_for("together", fake))
    assert direct == through_httpx and direct[1] == 502 and "never follows redirects" in direct[2]
    assert elsewhere.requests == []


@pytest.mark.parametrize("target", [
    Target("openai_compatible", "m", base_url="http://127.0.0.1:9/v1", api_key=None),
    Target("openai_compatible", "m", base_url="http://exa mple.com:80/v1"),
], ids=["unreachable", "unparseable-url"])
def test_f7_direct_path_fails_as_httpx_does_on_a_bad_address(monkeypatch, target):
    direct, through_httpx = _both(monkeypatch, _hub(), target)
    assert direct == through_httpx and direct[0] != "ok"


def test_f7_direct_path_refuses_a_key_http_cannot_carry_without_showing_it(monkeypatch, openai_fake):
    from pydantic import SecretStr

    fake = openai_fake("openai")
    key = KEYS["openai"] + "é"
    target = Target("openai_compatible", "m-1", base_url=fake.base_url, api_key=SecretStr(key))
    direct, through_httpx = _both(monkeypatch, _hub(), target)
    assert direct == through_httpx and direct[0] == "InvalidRequest"
    assert KEYS["openai"] not in direct[2] and fake.requests == []


def _completion_body(text: str) -> bytes:
    return json.dumps({"id": "chatcmpl-fixed", "object": "chat.completion", "model": "m-1",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}).encode()


@pytest.mark.parametrize("framing", ["content-length", "gzip", "chunked"])
def test_f7_direct_path_reads_whole_gzip_and_chunked_replies_as_httpx_does(monkeypatch, openai_fake, framing):
    # A reply with a Content-Length and no encoding is read in one go; the others chunk by chunk
    # through the bounded decoder. Each must give what the httpx path gives.
    fake = openai_fake("openai")
    body = _completion_body(f"sent with {framing}")

    def reply(request):
        headers = {"Content-Type": "application/json", "x-request-id": "req-framing-0001"}
        if framing == "gzip":
            return Reply(200, gzip.compress(body), {**headers, "Content-Encoding": "gzip"})
        if framing == "chunked":
            return Reply(200, None, headers, chunks=[body[:20], body[20:]])
        return Reply(200, body, headers)

    fake.add_route("POST", fake.chat_path, reply)
    direct, through_httpx = _both(monkeypatch, _hub(), target_for("openai", fake))
    assert direct == through_httpx == ("ok", f"sent with {framing}", 3, 2, "req-frami")


def test_f7_a_cookie_a_provider_sets_is_never_sent_on_a_later_call(monkeypatch, openai_fake):
    # One hub's client serves every model; a cookie one endpoint sets must not ride along on the
    # next call (maybe another model's, with another key) — on the direct, httpx and sync paths.
    fake = openai_fake("openai")
    body = _completion_body("here is a cookie")
    fake.add_route("POST", fake.chat_path, lambda request: Reply(
        200, body, {"Content-Type": "application/json", "Set-Cookie": "session=provider-set-0001; Path=/"}))

    async def twice(hub):
        adapter = hub.adapter(target_for("openai", fake))
        try:
            await adapter.achat(chat())
            await adapter.achat(chat())
        finally:
            await hub.aclose()

    with ProviderHub(timeout=3.0) as hub:
        run_async(twice(hub))                                   # direct (aiohttp)
    with monkeypatch.context() as patch:
        patch.setattr(http_streams, "direct_sender", lambda client: None)
        with ProviderHub(timeout=3.0) as hub:
            run_async(twice(hub))                               # httpx on the aiohttp transport
    with ProviderHub(timeout=3.0) as hub:
        adapter = hub.adapter(target_for("openai", fake))
        adapter.chat(chat())
        adapter.chat(chat())                                    # sync httpx
    assert len(fake.requests) == 6
    assert [r.headers.get("cookie") for r in fake.requests] == [None] * 6


def test_f7_reply_headers_read_in_place_as_httpx_headers_are():
    from multidict import CIMultiDict, CIMultiDictProxy

    from byok_nb.providers.async_http import ReplyHeaders

    raw = [(b"Content-Encoding", b"gzip, br"), (b"Content-Encoding", b"zstd"),
           (b"X-Request-Id", b"req-0001"), (b"Set-Cookie", b"session=secret-value-0001")]

    class Response:   # the two attributes of an aiohttp reply that ReplyHeaders reads
        raw_headers = tuple(raw)
        headers = CIMultiDictProxy(CIMultiDict((k.decode(), v.decode()) for k, v in raw))

    mine, theirs = ReplyHeaders(Response()), httpx.Headers(list(raw))
    for name in ("content-encoding", "X-REQUEST-ID", "retry-after"):
        assert mine.get(name) == theirs.get(name)
        assert mine.get_list(name, split_commas=True) == theirs.get_list(name, split_commas=True)
        assert (name in mine) == (name in theirs)
    assert mine["x-request-id"] == "req-0001"
    with pytest.raises(KeyError):
        mine["retry-after"]
    assert dict(mine.items()) == dict(theirs.items())          # anything else: httpx.Headers' answer
    assert "secret-value" not in repr(mine) and "set-cookie" in repr(mine)
