"""SPEC G-1/G-2 (OpenAI-shaped vendors): the four ways to call — chat, achat, stream, astream —
against fakes that stream real server-sent events; usage on the last chunk, tool call deltas,
errors before and during a stream, closing early, and the async client's egress policy (P-6)."""
from __future__ import annotations

import json
import time

import pytest
from provider_kit import KEYS, chat, target_for

from byok_nb.core.errors import InvalidRequest, ProviderError
from byok_nb.providers import ProviderHub
from byok_nb.providers.egress import EgressRefused
from byok_nb.providers.sse import SSEDecoder
from byok_nb.testing import FakeOpenAIProvider, Reply
from byok_nb.testing.fake_providers import openrouter_upstream_error, rate_limited
from asyncrun import run_async

PROFILES = ["fireworks", "together", "openai", "hf_tgi", "hf_router", "openrouter", "vllm"]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture
def served(hub, openai_fake, start_fake, monkeypatch):
    """``served(profile, **fake_options) -> (fake, adapter)``; ``vllm`` is a keyless local server
    reached as an OpenAI-compatible endpoint."""
    def make(profile: str, **options):
        if profile == "vllm":
            fake = start_fake(FakeOpenAIProvider("vllm", api_key=None, **options))
            return fake, hub.adapter(target_for("openai", fake, api_key=None))
        fake = openai_fake(profile, **options)
        if profile == "hf_router":
            monkeypatch.setenv("BYOK_NB_HF_ROUTER_URL", fake.base_url)
            target = target_for(profile, endpoint_url="https://api-inference.huggingface.co/models/org/m-1")
        else:
            target = target_for(profile, fake)
        return fake, hub.adapter(target)
    return make


# -- the four ways to call ----------------------------------------------------------------------------
def run_chat(hub, adapter, request):
    return adapter.chat(request)


def run_achat(hub, adapter, request):
    async def go():
        try:
            return await adapter.achat(request)
        finally:
            await hub.aclose()
    return run_async(go())


def run_stream(hub, adapter, request):
    return list(adapter.stream(request))


def run_astream(hub, adapter, request):
    async def go():
        try:
            return [chunk async for chunk in adapter.astream(request)]
        finally:
            await hub.aclose()
    return run_async(go())


ALL_MODES = pytest.mark.parametrize("run", [run_chat, run_achat, run_stream, run_astream],
                                    ids=["chat", "achat", "stream", "astream"])
STREAMS = pytest.mark.parametrize("run", [run_stream, run_astream], ids=["stream", "astream"])


def joined(chunks) -> str:
    return "".join(chunk.delta for chunk in chunks)


# -- streams ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
@STREAMS
def test_g2_stream_yields_the_text_in_chunks_and_usage_on_the_last_only(hub, served, profile, run):
    fake, adapter = served(profile, reply="The quick brown fox jumps")
    chunks = run(hub, adapter, chat())
    assert joined(chunks) == "The quick brown fox jumps"
    assert len(chunks) > 3                                    # really streamed, not one piece
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert last.input_tokens is not None and last.output_tokens == len("The quick brown fox jumps") // 4
    assert all(c.input_tokens is None and c.finish_reason is None for c in chunks[:-1])
    sent = fake.last.json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert fake.last.headers["accept"] == "text/event-stream"


@STREAMS
def test_g2_stream_request_id_comes_from_the_header_or_the_first_events_id(hub, served, run):
    fake, adapter = served("together")
    assert run(hub, adapter, chat())[-1].request_id.startswith("req_fake_")
    fake, adapter = served("openrouter")
    assert run(hub, adapter, chat())[-1].request_id.startswith("gen-fake-")


@STREAMS
def test_g2_stream_tool_call_deltas_rebuild_the_call(hub, served, run):
    fake, adapter = served("openai", tool_call={"name": "get_weather", "arguments": {"city": "Paris"}})
    chunks = run(hub, adapter, chat(tools=[WEATHER]))
    deltas = [d for c in chunks for d in (c.tool_calls or [])]
    assert deltas[0] == {"index": 0, "id": "call_fake_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}
    arguments = "".join(d["function"].get("arguments", "") for d in deltas)
    assert json.loads(arguments) == {"city": "Paris"}
    assert len(deltas) > 2 and chunks[-1].finish_reason == "tool_calls"


@STREAMS
def test_g2_stream_reasoning_deltas_are_kept_apart_from_the_text(hub, served, run):
    fake, adapter = served("fireworks", reasoning_reply="First, think.", reply="42")
    chunks = run(hub, adapter, chat(max_tokens=4096, reasoning={"effort": "low"}))
    assert "".join(c.reasoning for c in chunks) == "First, think."
    assert joined(chunks) == "42"


@STREAMS
def test_g2_stream_moves_inline_think_to_reasoning_when_reasoning_was_asked(hub, served, run):
    fake, adapter = served("hf_router", reply="<think>\nLet me add.\n</think>\n\nFour.")
    chunks = run(hub, adapter, chat(reasoning={"effort": "low"}))
    assert "".join(c.reasoning for c in chunks) == "Let me add."
    assert joined(chunks) == "Four."
    plain = run(hub, adapter, chat())
    assert joined(plain) == "<think>\nLet me add.\n</think>\n\nFour."   # not asked: left as it is


@STREAMS
def test_g2_stream_an_http_error_before_the_stream_is_the_providers_error(hub, served, run):
    fake, adapter = served("together", api_key=KEYS["together"])
    fake.errors.append(rate_limited("3"))
    with pytest.raises(ProviderError) as caught:
        run(hub, adapter, chat())
    error = caught.value
    assert error.status_code == 429 and error.retry_after == 3.0 and error.transient is True
    assert "Rate limit reached" in error.message


@pytest.mark.parametrize("profile, status, expect", [
    ("openai", 502, "The server had an error while streaming"),
    ("openrouter", 502, "The server had an error while streaming"),
    ("hf_tgi", 502, "The server had an error while streaming"),
])
@STREAMS
def test_g2_stream_an_error_mid_stream_is_a_provider_error_after_the_text_so_far(hub, served, run,
                                                                                profile, status, expect):
    fake, adapter = served(profile, reply="abcdefghijklmnop")
    fake.stream_error = (status, "The server had an error while streaming")
    fake.stream_error_after = 3
    seen = []

    async def collect_async():
        try:
            async for chunk in adapter.astream(chat()):
                seen.append(chunk)
        finally:
            await hub.aclose()

    with pytest.raises(ProviderError) as caught:
        if run is run_stream:
            for chunk in adapter.stream(chat()):
                seen.append(chunk)
        else:
            run_async(collect_async())
    assert expect in caught.value.message
    assert caught.value.status_code == status
    assert joined(seen) == "abcdefgh"              # two pieces came before the failure
    assert caught.value.transient is False         # part of an answer was given: not retried


def test_g2_stream_openrouter_mid_stream_error_carries_the_upstreams_words(hub, served):
    fake, adapter = served("openrouter")
    fake.stream_error = (502, "Provider returned error")
    fake.stream_error_metadata = {"raw": '{"error":{"message":"CUDA out of memory"}}', "provider_name": "Novita"}
    with pytest.raises(ProviderError) as caught:
        list(adapter.stream(chat()))
    assert "Provider returned error" in caught.value.message
    assert "Novita said: CUDA out of memory" in caught.value.message


def test_g2_stream_closing_early_closes_the_response(hub, served):
    fake, adapter = served("openai", reply="x" * 4000)
    fake.stream_delay = 0.002
    stream = adapter.stream(chat())
    first = next(stream)
    assert first.delta
    stream.close()
    deadline = time.monotonic() + 10
    while fake.streams_cut == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.streams_cut == 1                   # the server saw the client go away


def test_g2_astream_aclose_closes_the_response(hub, served):
    fake, adapter = served("openai", reply="x" * 4000)
    fake.stream_delay = 0.002

    async def go():
        stream = adapter.astream(chat())
        try:
            assert (await stream.__anext__()).delta
            await stream.aclose()
        finally:
            await hub.aclose()
    run_async(go())
    deadline = time.monotonic() + 10
    while fake.streams_cut == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.streams_cut == 1


def test_g2_stream_a_200_json_error_from_openrouter_is_raised(hub, served):
    fake, adapter = served("openrouter")
    upstream = openrouter_upstream_error(503, "upstream overloaded")
    fake.errors.append(Reply(200, upstream.body))          # OpenRouter's "error in a 200 body"
    with pytest.raises(ProviderError) as caught:
        list(adapter.stream(chat()))
    assert "Together said: upstream overloaded" in caught.value.message


# -- async whole replies -----------------------------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_g1_achat_answers_like_chat(hub, served, profile):
    fake, adapter = served(profile, reply="hello async")
    sync = run_chat(hub, adapter, chat(params={"temperature": 0.2}))
    result = run_achat(hub, adapter, chat(params={"temperature": 0.2}))
    assert result.text == sync.text == "hello async"
    assert (result.input_tokens, result.output_tokens) == (sync.input_tokens, sync.output_tokens)
    assert result.finish_reason == "stop"
    assert fake.requests[-1].json == fake.requests[-2].json


@ALL_MODES
def test_g1_every_mode_refuses_an_unsupported_parameter_before_sending(hub, served, run):
    fake, adapter = served("openrouter")
    with pytest.raises(InvalidRequest):
        run(hub, adapter, chat(params={"logprobs": True}))
    assert fake.requests == []


@ALL_MODES
def test_g1_every_mode_gives_429_with_retry_after_as_an_http_date(hub, served, run):
    fake, adapter = served("fireworks")
    fake.errors.append(rate_limited("Wed, 21 Oct 2099 07:28:00 GMT"))
    with pytest.raises(ProviderError) as caught:
        run(hub, adapter, chat())
    assert caught.value.status_code == 429 and caught.value.retry_after > 3600
    assert "GMT s)" not in caught.value.message


@ALL_MODES
def test_g1_no_mode_puts_the_key_in_an_error(hub, served, run):
    fake, adapter = served("openai")
    # a proxy that echoes the key it got
    fake.errors.append(openrouter_upstream_error(400, f"bad key {KEYS['openai']}", "Proxy"))
    with pytest.raises(ProviderError) as caught:
        run(hub, adapter, chat())
    text = f"{caught.value.message} {caught.value.provider_message} {caught.value!r}"
    assert KEYS["openai"] not in text and "[REDACTED]" in text


@STREAMS
def test_g2_a_secret_echoed_inside_a_stream_error_is_scrubbed(hub, served, run):
    fake, adapter = served("openai")
    fake.stream_error = (500, f"upstream rejected Bearer {KEYS['openai']}")
    fake.stream_error_after = 1
    with pytest.raises(ProviderError) as caught:
        run(hub, adapter, chat())
    assert KEYS["openai"] not in caught.value.message + caught.value.provider_message


@ALL_MODES
def test_g1_a_connection_refused_is_transient_in_every_mode(hub, run):
    adapter = hub.adapter(target_for("openai", base_url="http://127.0.0.1:9/v1"))
    with pytest.raises(ProviderError) as caught:
        run(hub, adapter, chat())
    assert caught.value.status_code == 502 and caught.value.transient is True
    assert "127.0.0.1:9" in caught.value.message and "refused the connection" in caught.value.message


@pytest.mark.parametrize("run", [run_chat, run_achat], ids=["chat", "achat"])
def test_g1_an_unresolvable_host_is_worded_the_same_sync_and_async(hub, run):
    adapter = hub.adapter(target_for("openai", base_url="http://no-such-host.invalid/v1"))
    with pytest.raises(ProviderError) as caught:
        run(hub, adapter, chat())
    assert "could not be resolved" in caught.value.message


# -- the async client's egress policy ------------------------------------------------------------------
@pytest.mark.parametrize("run", [run_achat, run_astream], ids=["achat", "astream"])
def test_p6_async_client_refuses_loopback_under_public_egress(served, run):
    with ProviderHub(timeout=3.0, egress="public") as public:
        fake, _ = served("openai")
        adapter = public.adapter(target_for("openai", fake))
        with pytest.raises(EgressRefused) as caught:
            run(public, adapter, chat())
    assert "127.0.0.1" in caught.value.message and caught.value.transient is False
    assert fake.requests == []


@pytest.mark.parametrize("host", ["169.254.169.254", "metadata.google.internal", "localhost"])
def test_p6_async_client_refuses_metadata_addresses_and_names(host):
    with ProviderHub(timeout=3.0, egress="public" if host == "localhost" else None) as public:
        adapter = public.adapter(target_for("openai", base_url=f"http://{host}:8080/v1"))
        with pytest.raises(EgressRefused):
            run_achat(public, adapter, chat())


def test_g1_one_async_client_per_event_loop(hub):
    async def twice():
        first, second = hub.async_http_client(), hub.async_http_client()
        await hub.aclose()
        return first, second
    a1, a2 = run_async(twice())
    b1, _ = run_async(twice())
    assert a1 is a2 and b1 is not a1


# -- the event-stream decoder ----------------------------------------------------------------------------
def test_g2_sse_decoder_handles_any_split_crlf_comments_and_multiline_data():
    raw = (b": OPENROUTER PROCESSING\r\n\r\ndata: {\"a\": \"\xe2\x80\xa8\"}\r\n\r\n"
           b"event: error\ndata: x\ndata: y\n\ndata: [DONE]\n\n")
    for size in (1, 2, 3, 7, len(raw)):
        decoder = SSEDecoder()
        events = []
        for start in range(0, len(raw), size):
            events += list(decoder.feed(raw[start:start + size]))
        events += list(decoder.close())
        assert [(e.event, e.data) for e in events] == [
            ("message", '{"a": "\u2028"}'), ("error", "x\ny"), ("message", "[DONE]")]
