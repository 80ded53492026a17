"""SPEC G-1, G-2, G-3, G-7, P-5 (Bedrock): OpenAI parameters translated or refused, converse-stream
read with botocore's event-stream parser, async calls on the hub's async client, and errors that
print a status once — against the emulator, which verifies SigV4 with botocore's own signer."""
from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import unquote

import pytest
from provider_kit import BEDROCK_API_KEY, CLAUDE_HAIKU, IAM_SECRET, api_key_target, chat, iam_target

from byok_nb.core.errors import InvalidRequest, ProviderError
from byok_nb.providers.base import StreamChunk
from byok_nb.providers.connection_test import STATUS_SCHEMA, probe_request
from byok_nb.testing import Reply
from byok_nb.testing.eventstream import encode_event, encode_exception, encode_message
from byok_nb.testing.fake_providers import (REQUEST_ID, THINKING_TEMPERATURE, THROTTLED,
                                            TOO_MANY_TOKENS, bedrock_error, throttling_error)
from asyncrun import run_async

SONNET_37 = "anthropic.claude-3-7-sonnet-20250219-v1:0"
AUTHS = pytest.mark.parametrize("make_target, secret", [(iam_target, IAM_SECRET),
                                                       (api_key_target, BEDROCK_API_KEY)],
                                ids=["iam", "api_key"])
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                            "parameters": {"type": "object", "properties": {}}}}


# -- the four ways to call, one signature ------------------------------------------------------------
def run_chat(adapter, request):
    return adapter.chat(request)


def in_loop(adapter, make_coroutine):
    """Run on a fresh event loop, closing the hub's client for that loop at the end (as a
    notebook's or server's lifetime would)."""
    hub = adapter._async_http_client.__self__    # the hub whose per-loop client the call uses

    async def go():
        try:
            return await make_coroutine()
        finally:
            await hub.aclose()
    return run_async(go())


def run_achat(adapter, request):
    return in_loop(adapter, lambda: adapter.achat(request))


def run_stream(adapter, request):
    return list(adapter.stream(request))


def run_astream(adapter, request):
    async def collect():
        return [chunk async for chunk in adapter.astream(request)]
    return in_loop(adapter, collect)


MODES = pytest.mark.parametrize("run", [run_chat, run_achat, run_stream, run_astream],
                                ids=["chat", "achat", "stream", "astream"])


def provider_failure(run, adapter, request) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        run(adapter, request)
    return caught.value


def joined(chunks: list[StreamChunk]) -> str:
    return "".join(chunk.delta for chunk in chunks)


def assembled_tool_calls(chunks: list[StreamChunk]) -> list[dict]:
    """The OpenAI SDK's way of folding tool-call deltas into calls."""
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for delta in chunk.tool_calls or []:
            call = calls.setdefault(delta["index"], {"id": None, "name": "", "arguments": ""})
            call["id"] = delta.get("id") or call["id"]
            call["name"] += delta.get("function", {}).get("name") or ""
            call["arguments"] += delta.get("function", {}).get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


# -- G-7: parameters -----------------------------------------------------------------------------------
@MODES
def test_g7_bedrock_seed_refused(hub, bedrock_fake, run):
    fake = bedrock_fake()
    with pytest.raises(InvalidRequest) as caught:
        run(hub.adapter(iam_target()), chat(CLAUDE_HAIKU, params={"seed": 7}))
    assert "seed" in caught.value.message and "AWS Bedrock" in caught.value.message
    assert caught.value.field == "seed"
    assert fake.requests == []        # refused before any I/O


@pytest.mark.parametrize("name, value", [("frequency_penalty", 1), ("logprobs", True), ("n", 2),
                                         ("user", "u-1")])
def test_g7_bedrock_parameters_it_has_no_field_for_are_refused(hub, bedrock_fake, name, value):
    fake = bedrock_fake()
    with pytest.raises(InvalidRequest, match=f"^{name} is not supported by AWS Bedrock"):
        hub.adapter(iam_target()).chat(chat(CLAUDE_HAIKU, params={name: value}))
    assert fake.requests == []


def test_g7_bedrock_refusals_say_what_to_use_instead(hub, bedrock_fake):
    bedrock_fake()
    with pytest.raises(InvalidRequest, match="reasoning_effort is not supported by AWS Bedrock; pass reasoning="):
        hub.adapter(iam_target()).chat(chat(CLAUDE_HAIKU, params={"reasoning_effort": "low"}))


def test_g7_bedrock_n_of_one_is_the_one_answer_it_gives(hub, bedrock_fake):
    fake = bedrock_fake()
    assert hub.adapter(iam_target()).chat(chat(CLAUDE_HAIKU, params={"n": 1})).text == '{"status":"ok"}'
    assert fake.last.json["inferenceConfig"] == {"maxTokens": 64}


def test_g7_bedrock_a_parameter_given_as_none_is_not_given(hub, bedrock_fake):
    fake = bedrock_fake()
    hub.adapter(iam_target()).chat(chat(CLAUDE_HAIKU, params={"seed": None, "temperature": None}))
    assert fake.last.json["inferenceConfig"] == {"maxTokens": 64}


@AUTHS
@MODES
def test_g7_bedrock_sampling_parameters_become_inference_config(hub, bedrock_fake, run, make_target, secret):
    fake = bedrock_fake()
    run(hub.adapter(make_target()), chat(CLAUDE_HAIKU, max_tokens=100,
                                         params={"temperature": 0.2, "top_p": 0.9, "stop": "END"}))
    assert fake.last.json["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.2, "topP": 0.9,
                                                 "stopSequences": ["END"]}


@pytest.mark.parametrize("params, field", [({"temperature": "hot"}, "temperature"),
                                           ({"top_p": True}, "top_p"),
                                           ({"temperature": float("nan")}, "temperature"),
                                           ({"stop": ["ok", 3]}, "stop"),
                                           ({"stop": ""}, "stop")])
def test_g7_bedrock_malformed_parameter_values_are_refused_before_sending(hub, bedrock_fake, params, field):
    fake = bedrock_fake()
    with pytest.raises(InvalidRequest) as caught:
        hub.adapter(iam_target()).chat(chat(CLAUDE_HAIKU, params=params))
    assert caught.value.field == field and fake.requests == []


def test_g7_bedrock_out_of_range_temperature_is_awss_validation_error(hub, bedrock_fake):
    bedrock_fake()
    error = provider_failure(run_chat, hub.adapter(iam_target()), chat(CLAUDE_HAIKU, params={"temperature": 1.5}))
    assert error.status_code == 400
    assert "at 'inferenceConfig.temperature' failed to satisfy constraint" in error.provider_message


def test_g7_bedrock_stop_sequence_ends_the_reply(hub, bedrock_fake):
    bedrock_fake(reply="one two END three")
    adapter = hub.adapter(iam_target())
    result = adapter.chat(chat(CLAUDE_HAIKU, params={"stop": ["END", "zzz"]}))
    assert (result.text, result.finish_reason) == ("one two ", "stop")
    chunks = list(adapter.stream(chat(CLAUDE_HAIKU, params={"stop": ["END"]})))
    assert joined(chunks) == "one two " and chunks[-1].finish_reason == "stop"


@pytest.mark.parametrize("response_format", [
    {"type": "json_schema", "json_schema": {"name": "connection_test", "schema": STATUS_SCHEMA}},
])
def test_g7_bedrock_response_format_is_test_connections_json_mode(hub, bedrock_fake, response_format):
    """The same body Test Connection sends with JSON mode on: the forced-tool trick."""
    fake = bedrock_fake()
    adapter = hub.adapter(iam_target())
    adapter.chat(probe_request(model_id=CLAUDE_HAIKU, max_tokens=64, supports_json_mode=True))
    probe_body = fake.last.json
    result = adapter.chat(chat(CLAUDE_HAIKU, content=probe_body["messages"][0]["content"][0]["text"],
                               params={"response_format": response_format}))
    assert fake.last.json == probe_body
    assert json.loads(result.text) == {"status": "ok"} and result.tool_calls == []
    assert result.finish_reason == "stop"


@MODES
def test_g7_bedrock_response_format_json_object_forces_an_object_tool(hub, bedrock_fake, run):
    fake = bedrock_fake()
    out = run(hub.adapter(iam_target()), chat(CLAUDE_HAIKU, params={"response_format": {"type": "json_object"}}))
    assert fake.last.json["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "response",
                                "description": "Return the response as JSON matching this schema.",
                                "inputSchema": {"json": {"type": "object"}}}}],
        "toolChoice": {"tool": {"name": "response"}}}
    text = joined(out) if isinstance(out, list) else out.text
    assert json.loads(text) == {"status": "ok"}


def test_g7_bedrock_response_format_text_is_free_text(hub, bedrock_fake):
    fake = bedrock_fake()
    hub.adapter(iam_target()).chat(chat(CLAUDE_HAIKU, params={"response_format": {"type": "text"}}))
    assert "toolConfig" not in fake.last.json


@pytest.mark.parametrize("response_format", [{"type": "xml"}, "json", {"type": "json_schema"},
                                             {"type": "json_schema", "json_schema": {"schema": []}}])
def test_g7_bedrock_malformed_response_format_is_refused(hub, bedrock_fake, response_format):
    fake = bedrock_fake()
    with pytest.raises(InvalidRequest) as caught:
        hub.adapter(iam_target()).chat(chat(CLAUDE_HAIKU, params={"response_format": response_format}))
    assert caught.value.field == "response_format" and fake.requests == []


def test_g7_bedrock_thinking_with_a_temperature_is_bedrocks_error(hub, bedrock_fake):
    bedrock_fake()
    error = provider_failure(run_chat, hub.adapter(iam_target(SONNET_37)),
                             chat(SONNET_37, max_tokens=4000, reasoning={"max_tokens": 2000},
                                  params={"temperature": 0.5}))
    assert error.status_code == 400 and error.provider_message == THINKING_TEMPERATURE


# -- G-1: request id and finish reason -----------------------------------------------------------------
@AUTHS
@pytest.mark.parametrize("run", [run_chat, run_achat], ids=["chat", "achat"])
def test_g1_bedrock_result_has_request_id_and_finish_reason(hub, bedrock_fake, run, make_target, secret):
    fake = bedrock_fake(tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}})
    adapter = hub.adapter(make_target())
    result = run(adapter, chat(CLAUDE_HAIKU))
    assert (result.text, result.request_id, result.finish_reason) == ('{"status":"ok"}', REQUEST_ID, "stop")
    assert result.input_tokens > 0 and result.output_tokens > 0
    tools = run(adapter, chat(CLAUDE_HAIKU, tools=[WEATHER], tool_choice="required"))
    assert tools.finish_reason == "tool_calls"
    assert tools.tool_calls == [{"id": "tooluse_fake_1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]
    assert fake.last.headers["authorization"].startswith("Bearer" if make_target is api_key_target else "AWS4")


@AUTHS
def test_g1_bedrock_achat_is_signed_like_chat(hub, bedrock_fake, make_target, secret):
    fake = bedrock_fake()
    adapter = hub.adapter(make_target())
    sync, async_ = adapter.chat(chat(CLAUDE_HAIKU)), run_achat(adapter, chat(CLAUDE_HAIKU))
    first, second = fake.requests[-2:]
    # The path as botocore built and signed it, sent verbatim by the async client too.
    assert first.path == second.path == f"/model/{CLAUDE_HAIKU.replace(':', '%3A')}/converse"
    assert first.json == second.json
    assert (sync.text, sync.input_tokens) == (async_.text, async_.input_tokens)
    assert second.headers["amz-sdk-request"] == "attempt=1; max=1"   # botocore built it


ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0"


@AUTHS
@MODES
def test_g1_bedrock_an_arn_model_id_is_signed_as_sent(hub, bedrock_fake, run, make_target, secret):
    """Its ':' and '/' are escaped in the path, and signed so: every sender must keep them."""
    fake = bedrock_fake(models={ARN: 4096})
    out = run(hub.adapter(make_target(ARN)), chat(ARN))
    assert (joined(out) if isinstance(out, list) else out.text) == '{"status":"ok"}'
    assert "%2Fus.anthropic" in fake.last.path


def test_g1_bedrock_many_async_calls_at_once(hub, bedrock_fake):
    fake = bedrock_fake()
    adapter = hub.adapter(iam_target())

    async def many():
        return await asyncio.gather(*(adapter.achat(chat(CLAUDE_HAIKU, content=f"call {i}")) for i in range(20)))

    results = in_loop(adapter, many)
    assert [r.text for r in results] == ['{"status":"ok"}'] * 20
    assert sorted(r.json["messages"][0]["content"][0]["text"] for r in fake.requests) == \
        sorted(f"call {i}" for i in range(20))


# -- P-5 / G-3: errors ---------------------------------------------------------------------------------
@MODES
@pytest.mark.parametrize("status, error_type, text", [
    (429, "ThrottlingException", THROTTLED),
    (400, "ValidationException", "The provided model identifier is invalid."),
])
def test_p5_bedrock_error_without_error_type_prints_its_status_once(hub, bedrock_fake, run, status,
                                                                    error_type, text):
    """Without x-amzn-ErrorType botocore reports the bare status as the error code: never
    "HTTP 400 400: ..."."""
    fake = bedrock_fake()
    fake.errors.append(bedrock_error(status, error_type, text, typed=False))
    error = provider_failure(run, hub.adapter(iam_target()), chat(CLAUDE_HAIKU))
    assert error.status_code == status
    assert error.message == f"Bedrock returned HTTP {status}: {text}"
    assert error.provider_message == text


@MODES
def test_p5_bedrock_typed_error_names_the_exception(hub, bedrock_fake, run):
    fake = bedrock_fake()
    fake.errors.append(throttling_error())
    error = provider_failure(run, hub.adapter(iam_target()), chat(CLAUDE_HAIKU))
    assert error.status_code == 429
    assert error.message == f"Bedrock returned HTTP 429 ThrottlingException: {THROTTLED}"


@pytest.mark.parametrize("run", [run_chat, run_achat, run_stream], ids=["chat", "achat", "stream"])
def test_p5_bedrock_untyped_5xx_html_page_status_once(hub, bedrock_fake, run):
    fake = bedrock_fake()
    fake.errors.append(Reply(503, "<html><body>Service Unavailable</body></html>",
                             {"Content-Type": "text/html"}))
    error = provider_failure(run, hub.adapter(iam_target()), chat(CLAUDE_HAIKU))
    assert error.status_code == 503
    assert "503 503" not in error.message and error.message.startswith("Bedrock returned HTTP 503: ")


@AUTHS
@MODES
def test_p5_bedrock_bad_credentials_no_secret_in_any_error(hub, bedrock_fake, run, make_target, secret):
    bedrock_fake(credentials={"AKIAFAKEBEDROCK00001": "another/secret/0000000000000000000000"},
                 api_keys=["ABSKb3RoZXIta2V5LTAwMDAwMDAwMDA="])
    error = provider_failure(run, hub.adapter(make_target()), chat(CLAUDE_HAIKU))
    assert error.status_code == 403
    for text in (error.message, error.provider_message, repr(error), str(error.args)):
        assert secret not in text
    assert error.__context__ is None and error.__cause__ is None


@pytest.mark.parametrize("run", [run_chat, run_achat, run_stream, run_astream],
                         ids=["chat", "achat", "stream", "astream"])
def test_p5_bedrock_connection_refused_is_a_502_naming_it(hub, monkeypatch, run):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("BYOK_NB_BEDROCK_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    error = provider_failure(run, hub.adapter(iam_target()), chat(CLAUDE_HAIKU))
    assert error.status_code == 502 and f"127.0.0.1:{port}" in error.message
    assert "timed out" not in error.message      # a refusal, whatever the transport maps it to


# -- G-2: streams ----------------------------------------------------------------------------------------
@AUTHS
@pytest.mark.parametrize("run", [run_stream, run_astream], ids=["stream", "astream"])
def test_g2_bedrock_stream_text_deltas_then_usage_on_the_last_chunk(hub, bedrock_fake, run, make_target, secret):
    fake = bedrock_fake(reply="The quick brown fox jumps.")
    chunks = run(hub.adapter(make_target()), chat(CLAUDE_HAIKU))
    assert unquote(fake.last.path) == f"/model/{CLAUDE_HAIKU}/converse-stream"
    assert joined(chunks) == "The quick brown fox jumps."
    assert len([c for c in chunks if c.delta]) == 5          # word by word, as the fake streams
    last = chunks[-1]
    assert (last.delta, last.finish_reason, last.request_id) == ("", "stop", REQUEST_ID)
    assert last.input_tokens > 0 and last.output_tokens > 0
    assert all(c.input_tokens is None and c.finish_reason is None for c in chunks[:-1])


@pytest.mark.parametrize("run", [run_stream, run_astream], ids=["stream", "astream"])
def test_g2_bedrock_stream_tool_calls_are_openai_deltas(hub, bedrock_fake, run):
    bedrock_fake(tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}})
    chunks = run(hub.adapter(iam_target()), chat(CLAUDE_HAIKU, tools=[WEATHER], tool_choice="required"))
    first = next(c for c in chunks if c.tool_calls)
    assert first.tool_calls == [{"index": 0, "id": "tooluse_fake_1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": ""}}]
    assert assembled_tool_calls(chunks) == [{"id": "tooluse_fake_1", "name": "get_weather",
                                             "arguments": '{"city": "Oslo"}'}]
    assert chunks[-1].finish_reason == "tool_calls" and joined(chunks) == ""


def test_g2_bedrock_stream_json_mode_streams_the_json_as_text(hub, bedrock_fake):
    bedrock_fake()
    chunks = list(hub.adapter(iam_target()).stream(chat(CLAUDE_HAIKU, json_schema=STATUS_SCHEMA)))
    assert json.loads(joined(chunks)) == {"status": "ok"}
    assert all(c.tool_calls is None for c in chunks) and chunks[-1].finish_reason == "stop"


def test_g2_bedrock_stream_reasoning_deltas(hub, bedrock_fake):
    bedrock_fake(reasoning_reply="First think, then answer.")
    chunks = list(hub.adapter(iam_target(SONNET_37)).stream(
        chat(SONNET_37, max_tokens=4000, reasoning={"max_tokens": 2000})))
    assert "".join(c.reasoning for c in chunks) == "First think, then answer."
    assert joined(chunks) == '{"status":"ok"}'


@pytest.mark.parametrize("run", [run_stream, run_astream], ids=["stream", "astream"])
@pytest.mark.parametrize("exception, payload, status", [
    ("throttlingException", {"message": TOO_MANY_TOKENS}, 429),
    ("modelStreamErrorException", {"message": "Model stream failed: upstream closed",
                                   "originalStatusCode": 500, "originalMessage": "boom"}, 424),
    ("internalServerException", {"message": "The server encountered an internal error."}, 500),
])
def test_g2_bedrock_exception_inside_the_stream_is_a_provider_error(hub, bedrock_fake, run, exception,
                                                                    payload, status):
    fake = bedrock_fake(reply="one two three four")
    fake.stream_exception, fake.stream_exception_after = (exception, payload), 3
    with pytest.raises(ProviderError) as caught:
        run(hub.adapter(iam_target()), chat(CLAUDE_HAIKU))
    assert caught.value.status_code == status
    assert caught.value.provider_message == payload["message"]
    assert payload["message"] in caught.value.message and caught.value.__context__ is None


@pytest.mark.parametrize("run", [run_stream, run_astream], ids=["stream", "astream"])
def test_g2_bedrock_stream_keeps_the_chunks_before_an_exception(hub, bedrock_fake, run):
    fake = bedrock_fake(reply="one two three four")
    fake.stream_exception, fake.stream_exception_after = ("throttlingException", {"message": TOO_MANY_TOKENS}), 3
    adapter, seen = hub.adapter(iam_target()), []
    if run is run_stream:
        with pytest.raises(ProviderError):
            for chunk in adapter.stream(chat(CLAUDE_HAIKU)):
                seen.append(chunk.delta)
    else:
        async def collect():
            async for chunk in adapter.astream(chat(CLAUDE_HAIKU)):
                seen.append(chunk.delta)
        with pytest.raises(ProviderError):
            in_loop(adapter, collect)
    assert seen == ["one ", "two "]     # messageStart, two deltas, then the exception


def test_g2_bedrock_stream_is_lazy_but_checks_parameters_at_once(hub, bedrock_fake):
    fake = bedrock_fake()
    adapter = hub.adapter(iam_target())
    with pytest.raises(InvalidRequest):
        adapter.stream(chat(CLAUDE_HAIKU, params={"seed": 1}))
    chunks = adapter.stream(chat(CLAUDE_HAIKU))
    assert fake.requests == []
    next(chunks)
    assert len(fake.requests) == 1
    chunks.close()


def wait_for(condition, seconds=10.0):
    """Poll until ``condition()`` (a server thread notices a closed socket on its next write)."""
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)
    return condition()


def test_g2_bedrock_closing_a_stream_early_closes_the_reply(hub, bedrock_fake):
    fake = bedrock_fake(reply=" ".join(["word"] * 400))
    fake.stream_delay = 0.01
    chunks = hub.adapter(iam_target()).stream(chat(CLAUDE_HAIKU))
    assert next(chunks).delta == "word "
    chunks.close()
    assert wait_for(lambda: fake.streams_cut == 1)


def test_g2_bedrock_aclosing_a_stream_early_closes_the_reply(hub, bedrock_fake):
    fake = bedrock_fake(reply=" ".join(["word"] * 400))
    fake.stream_delay = 0.01
    adapter = hub.adapter(iam_target())

    async def first_then_close():
        chunks = adapter.astream(chat(CLAUDE_HAIKU))
        first = await chunks.__anext__()
        await chunks.aclose()
        return first

    assert in_loop(adapter, first_then_close).delta == "word "
    assert wait_for(lambda: fake.streams_cut == 1)


@pytest.mark.parametrize("run", [run_stream, run_astream], ids=["stream", "astream"])
@pytest.mark.parametrize("body, why", [
    (encode_event("messageStart", {"role": "assistant"}) + encode_event("contentBlockDelta", {
        "contentBlockIndex": 0, "delta": {"text": "cut"}})[:-7], "ended inside an event"),
    (encode_event("messageStart", {"role": "assistant"}), "no messageStop"),
    (bytearray(encode_event("messageStart", {"role": "assistant"})) + b"\x00" * 16, "Mismatch"),
])
def test_g2_bedrock_broken_event_streams_are_errors(hub, bedrock_fake, run, body, why):
    fake = bedrock_fake()
    fake.add_route("POST", f"/model/{CLAUDE_HAIKU.replace(':', '%3A')}/converse-stream",
                   lambda r: Reply(200, bytes(body), {"Content-Type": "application/vnd.amazon.eventstream"}))
    error = provider_failure(run, hub.adapter(iam_target()), chat(CLAUDE_HAIKU))
    assert error.status_code == 502 and why in error.message


def test_g2_bedrock_stream_answered_with_json_is_an_error(hub, bedrock_fake):
    fake = bedrock_fake()
    fake.add_route("POST", f"/model/{CLAUDE_HAIKU.replace(':', '%3A')}/converse-stream",
                   lambda r: Reply(200, {"output": {}}))
    error = provider_failure(run_stream, hub.adapter(iam_target()), chat(CLAUDE_HAIKU))
    assert error.status_code == 502 and "application/json" in error.message


# -- the fake's event stream is what botocore reads ------------------------------------------------------
def test_fake_event_stream_bytes_are_read_by_botocores_parser():
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hé"}})
                    + encode_exception("throttlingException", {"message": TOO_MANY_TOKENS})
                    + encode_message({":message-type": "event", ":event-type": "messageStop"}, b"{}"))
    delta, exception, stop = list(buffer)
    assert delta.headers[":event-type"] == "contentBlockDelta"
    assert json.loads(delta.payload)["delta"] == {"text": "hé"}
    assert exception.to_response_dict()["status_code"] == 400
    assert exception.headers[":exception-type"] == "throttlingException"
    assert stop.payload == b"{}"


def test_fake_bedrock_stream_is_signed_and_checked_like_converse(bedrock_fake):
    """A converse-stream request with a wrong signature gets converse's 403."""
    import httpx
    fake = bedrock_fake()
    url = f"{fake.url}/model/{CLAUDE_HAIKU.replace(':', '%3A')}/converse-stream"
    reply = httpx.post(url, json={"messages": []}, headers={
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAFAKEBEDROCK00001/20260101/us-east-1/bedrock/"
                         "aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
        "X-Amz-Date": "20260101T000000Z"})
    assert reply.status_code == 403
    assert reply.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
    assert fake.errors == [] and bedrock_error(429, "ThrottlingException", "x", typed=False).headers.get(
        "x-amzn-ErrorType") is None


# -- G-3: what the retry layer reads -------------------------------------------------------------------
@MODES
@pytest.mark.parametrize("reply, status, transient, retry_after", [
    (throttling_error(typed=False, retry_after="3"), 429, True, 3.0),
    (throttling_error(), 429, True, None),
    (bedrock_error(503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
     503, True, None),
    (bedrock_error(500, "InternalServerException", "The server encountered an internal error."), 500, True, None),
    (bedrock_error(400, "ValidationException", "The provided model identifier is invalid."), 400, False, None),
    (bedrock_error(424, "ModelErrorException", "The model returned an error."), 424, False, None),
])
def test_g3_bedrock_errors_say_whether_to_retry(hub, bedrock_fake, run, reply, status, transient, retry_after):
    fake = bedrock_fake()
    fake.errors.append(reply)
    error = provider_failure(run, hub.adapter(iam_target()), chat(CLAUDE_HAIKU))
    assert (error.status_code, error.transient, error.retry_after) == (status, transient, retry_after)


@pytest.mark.parametrize("run", [run_chat, run_achat, run_stream, run_astream],
                         ids=["chat", "achat", "stream", "astream"])
def test_g3_bedrock_connection_refused_is_transient(hub, monkeypatch, run):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("BYOK_NB_BEDROCK_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    error = provider_failure(run, hub.adapter(iam_target()), chat(CLAUDE_HAIKU))
    assert error.status_code == 502 and error.transient is True


@pytest.mark.parametrize("exception, transient", [("throttlingException", True),
                                                  ("serviceUnavailableException", True),
                                                  ("validationException", False),
                                                  ("modelStreamErrorException", False)])
def test_g3_bedrock_in_stream_exceptions_are_transient_by_their_status(hub, bedrock_fake, exception, transient):
    fake = bedrock_fake()
    fake.stream_exception = (exception, {"message": "x"})
    error = provider_failure(run_stream, hub.adapter(iam_target()), chat(CLAUDE_HAIKU))
    assert error.transient is transient


def test_g3_bedrock_a_malformed_stream_is_not_worth_retrying(hub, bedrock_fake):
    fake = bedrock_fake()
    fake.add_route("POST", f"/model/{CLAUDE_HAIKU.replace(':', '%3A')}/converse-stream",
                   lambda r: Reply(200, b"\x00" * 40, {"Content-Type": "application/vnd.amazon.eventstream"}))
    error = provider_failure(run_stream, hub.adapter(iam_target()), chat(CLAUDE_HAIKU))
    assert (error.status_code, error.transient) == (502, False)


@pytest.mark.parametrize("make_target, secret", [(api_key_target, BEDROCK_API_KEY), (iam_target, IAM_SECRET)],
                         ids=["api_key", "iam"])
@MODES
def test_p2_bedrock_secrets_never_reach_debug_logs(hub, bedrock_fake, caplog, run, make_target, secret):
    """botocore logs the request it signs (headers included) also when byok_nb sends it."""
    import logging
    bedrock_fake()
    caplog.set_level(logging.DEBUG)
    run(hub.adapter(make_target()), chat(CLAUDE_HAIKU))
    assert "Sending http request" in caplog.text and "authorization" in caplog.text.lower()
    assert all(secret not in record.getMessage() for record in caplog.records)
    assert secret not in caplog.text


@MODES
def test_p6_bedrock_streams_and_async_calls_keep_the_egress_guard(bedrock_fake, run):
    from byok_nb.providers import EgressRefused, ProviderHub
    fake = bedrock_fake()
    with ProviderHub(timeout=2, egress="public") as public_hub, pytest.raises(EgressRefused):
        run(public_hub.adapter(iam_target()), chat(CLAUDE_HAIKU))
    assert fake.requests == []


def test_g2_bedrock_events_before_an_exception_in_the_same_read_come_first():
    """One network read may carry several events and the exception after them."""
    import botocore.session

    from byok_nb.providers.bedrock_stream import EventDecoder
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    shape = model.operation_model("ConverseStream").output_shape.members["stream"]
    data = (encode_event("messageStart", {"role": "assistant"})
            + encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}})
            + encode_exception("throttlingException", {"message": TOO_MANY_TOKENS})
            + encode_event("messageStop", {"stopReason": "end_turn"}))
    seen = []
    with pytest.raises(ProviderError) as caught:
        for event in EventDecoder(shape, []).feed(data):
            seen.append(event)
    assert seen == [{"messageStart": {"role": "assistant"}},
                    {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Hi"}}}]
    assert caught.value.status_code == 429 and caught.value.provider_message == TOO_MANY_TOKENS
