"""Direct calls: ``Session.chat`` / ``achat`` on custom slugs and platform ids, parameters reaching
the provider, refusals before any I/O, retries, usage recorded once with the calling user, cost.

Against the loopback fakes of ``conftest.py`` (Fireworks, Together, OpenRouter, an OpenAI-compatible
server), which check what the real vendors check and stream real server-sent events."""
from __future__ import annotations

import asyncio
import gc
import json
from decimal import Decimal

import pytest

from byok_nb.catalog import get_platform_model
from byok_nb.core.domain import Completion
from byok_nb.core.errors import Forbidden, InvalidRequest, NotFound, ProviderError
from byok_nb.services.chat_stream import (
    AsyncChatStream,
    ChatChunk,
    ChatStream,
    ChatUsage,
)
from byok_nb.testing.fake_providers import openai_error, rate_limited

from .conftest import COMPAT_KEY, FIREWORKS_KEY, OPENROUTER_KEY, TOOL
from asyncrun import run_async

BEDROCK_KEY = "ABSKZmFrZS1iZWRyb2NrLWFwaS1rZXk="   # the key the Bedrock fake accepts
REPLY = "The search team owns this ticket."


@pytest.fixture
def chatty(world):
    for fake in (world.fakes.fireworks, world.fakes.openrouter, world.fakes.compat, world.fakes.together):
        fake.reply = REPLY
    return world


def _rows(session):
    return session.usage()


# -- G-1: one line, custom and platform ------------------------------------------------------------
def test_g1_chat_one_line_on_a_custom_model(chatty):
    done = chatty.contributor.chat("ft-llama", "Which team owns this ticket?")
    assert isinstance(done, Completion)
    assert done.text == REPLY and done.model == "ft-llama" and done.attempts == 1
    assert done.request_id and done.request_id.startswith("req_fake_")
    sent = chatty.fakes.fireworks.last
    assert sent.headers["authorization"] == f"Bearer {FIREWORKS_KEY}"
    body = sent.json
    assert body["model"] == "accounts/acme/models/ft-llama"
    assert body["max_tokens"] == 2048   # the model's Max Tokens by default
    assert body["messages"] == [{"role": "user", "content": "Which team owns this ticket?"}]
    expected = Decimal(done.input_tokens) * Decimal("0.0000002") + Decimal(done.output_tokens) * Decimal("0.0000004")
    assert done.cost_usd == expected and done.cost_usd > 0
    assert done.latency_ms is not None and done.latency_ms > 0


def test_g1_chat_one_line_on_a_platform_model_through_openrouter(chatty):
    done = chatty.contributor.chat("openai/gpt-4o", [{"role": "user", "content": "hi"}])
    sent = chatty.fakes.openrouter.last
    assert sent.headers["authorization"] == f"Bearer {OPENROUTER_KEY}"   # the operator's key
    assert sent.json["model"] == "openai/gpt-4o"
    platform = get_platform_model("openai/gpt-4o")
    assert done.text == REPLY
    assert done.cost_usd == (Decimal(done.input_tokens) * platform.input_cost_per_token
                             + Decimal(done.output_tokens) * platform.output_cost_per_token)


def test_g1_params_are_translated_and_reach_the_provider(chatty):
    chatty.fakes.fireworks.reply = '{"team": "search"}'
    schema = {"type": "object", "properties": {"team": {"type": "string"}}, "required": ["team"]}
    done = chatty.contributor.chat(
        "ft-llama", "Route it", temperature=0.2, top_p=0.9, stop=["\n\n"], seed=7, max_tokens=100,
        response_format={"type": "json_schema", "json_schema": {"name": "route", "schema": schema}},
        tools=[TOOL], tool_choice="auto", reasoning={"effort": "low"})
    body = chatty.fakes.fireworks.last.json
    assert (body["temperature"], body["top_p"], body["stop"], body["seed"], body["max_tokens"]) == \
        (0.2, 0.9, ["\n\n"], 7, 100)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == schema
    assert body["tools"] == [TOOL] and body["tool_choice"] == "auto"
    assert "thinking" in body or "reasoning_effort" in body   # Fireworks' reasoning field
    assert done.json == {"team": "search"}


def test_g1_none_means_not_given(chatty):
    chatty.contributor.chat("ft-llama", "hi", temperature=None, seed=None)
    body = chatty.fakes.fireworks.last.json
    assert "temperature" not in body and "seed" not in body


@pytest.mark.parametrize("ref, kwargs, names", [
    ("ft-llama", {"temprature": 0.1}, ["temprature", "did you mean 'temperature'"]),
    ("ft-llama", {"max_completion_tokens": 10}, ["max_completion_tokens", "did you mean 'max_tokens'"]),
    ("ft-llama", {"max_tokens": 4096}, ["max_tokens", "2048"]),
    ("ft-llama", {"max_tokens": 0}, ["max_tokens"]),
    ("plain", {"tools": [TOOL]}, ["tools", "supports_tool_use"]),
    ("plain", {"response_format": {"type": "json_object"}}, ["response_format", "JSON mode"]),
    ("plain", {"reasoning": {"max_tokens": 100}}, ["reasoning", "supports_reasoning"]),
    ("ft-llama", {"reasoning": {"effort": "extreme"}}, ["reasoning"]),
    ("ft-llama", {"max_retries": -1}, ["max_retries"]),
    ("ft-llama", {"timeout": 0}, ["timeout"]),
])
def test_g1_refusals_name_the_parameter_and_call_nothing(chatty, ref, kwargs, names):
    before = len(chatty.fakes.fireworks.requests) + len(chatty.fakes.compat.requests)
    with pytest.raises(InvalidRequest) as info:
        chatty.contributor.chat(ref, "hi", **kwargs)
    for name in names:
        assert name in info.value.message
    assert len(chatty.fakes.fireworks.requests) + len(chatty.fakes.compat.requests) == before
    assert _rows(chatty.admin).empty   # refused before any provider: nothing recorded


def test_g1_images_without_vision_are_refused(chatty):
    image = {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}
    with pytest.raises(InvalidRequest) as info:
        chatty.contributor.chat("tog-effort", [image])
    assert "images" in info.value.message and "supports_vision" in info.value.message
    assert not chatty.fakes.together.requests


def test_g1_unknown_model_is_not_found_and_outsiders_are_forbidden(chatty):
    with pytest.raises(NotFound):
        chatty.contributor.chat("no-such-model", "hi")
    with pytest.raises(Forbidden):
        chatty.outsider.chat("ft-llama", "hi")
    chatty.admin.delete_model("plain")
    with pytest.raises(NotFound) as info:
        chatty.contributor.chat("plain", "hi")
    assert "deleted" in info.value.message


def test_g1_provider_refusal_comes_from_the_adapter(chatty):
    chatty.admin.add_model(provider="bedrock", auth_method="api_key", api_key=BEDROCK_KEY,
                           aws_region="us-east-1", provider_model_id="anthropic.claude-3-haiku-20240307-v1:0",
                           slug="haiku", max_tokens=1024, test=False)
    with pytest.raises(InvalidRequest) as info:
        chatty.contributor.chat("haiku", "hi", seed=1)
    assert "seed" in info.value.message and "Bedrock" in info.value.message


def test_g1_cost_usd_is_none_when_unpriced_and_zero_only_when_free(chatty):
    assert chatty.contributor.chat("plain", "hi").cost_usd is None
    free = chatty.contributor.chat("free-local", "hi")
    assert free.cost_usd == Decimal(0) and free.input_tokens


# -- G-2: streams ----------------------------------------------------------------------------------
def test_g2_stream_to_the_end_has_usage_on_the_last_chunk_only_and_records_once(chatty):
    stream = chatty.contributor.chat("ft-llama", "hi", stream=True)
    assert isinstance(stream, ChatStream)
    chunks = list(stream)
    assert all(isinstance(c, ChatChunk) for c in chunks) and len(chunks) > 3
    assert "".join(c.delta for c in chunks) == REPLY
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1].usage
    assert isinstance(last, ChatUsage) and last.input_tokens > 0 and last.output_tokens > 0
    assert last["input_tokens"] == last.input_tokens
    assert all(c.tool_calls is None for c in chunks)
    assert chatty.fakes.fireworks.last.json["stream_options"] == {"include_usage": True}
    stream.close()
    del stream
    gc.collect()
    rows = _rows(chatty.admin)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row["input_tokens"], row["output_tokens"]) == (last.input_tokens, last.output_tokens)
    assert row["ok"] and not row["usage_unknown"] and row["user"] == "cy"


def test_g2_stream_of_tool_calls_gives_tool_call_deltas(chatty):
    chatty.fakes.fireworks.tool_call = {"name": "route_ticket", "arguments": {"team": "search"}}
    chunks = list(chatty.contributor.chat("ft-llama", "route it", stream=True, tools=[TOOL]))
    deltas = [d for c in chunks if c.tool_calls for d in c.tool_calls]
    assert deltas[0]["function"]["name"] == "route_ticket"
    arguments = "".join(d["function"].get("arguments") or "" for d in deltas)
    assert json.loads(arguments) == {"team": "search"}


def test_g2_closing_early_records_once_with_usage_unknown(chatty):
    stream = chatty.contributor.chat("ft-llama", "hi", stream=True)
    first = next(stream)
    assert first.usage is None
    stream.close()
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    del stream
    gc.collect()
    rows = _rows(chatty.admin)
    assert len(rows) == 1 and bool(rows.iloc[0]["usage_unknown"]) and bool(rows.iloc[0]["ok"])


def test_g2_garbage_collection_records_once(chatty):
    stream = chatty.contributor.chat("ft-llama", "hi", stream=True)
    next(stream)
    del stream
    gc.collect()
    rows = _rows(chatty.admin)
    assert len(rows) == 1 and bool(rows.iloc[0]["usage_unknown"])


def test_g2_stream_failing_mid_way_records_once_as_failed(chatty):
    chatty.fakes.fireworks.stream_error = (500, "upstream broke mid-stream")
    chatty.fakes.fireworks.stream_error_after = 3
    stream = chatty.contributor.chat("ft-llama", "hi", stream=True)
    with pytest.raises(ProviderError):
        for _ in stream:
            pass
    del stream
    gc.collect()
    rows = _rows(chatty.admin)
    assert len(rows) == 1 and not bool(rows.iloc[0]["ok"])


def test_g2_async_stream_to_the_end_and_closed_early(chatty):
    async def main():
        stream = await chatty.contributor.achat("ft-llama", "hi", stream=True)
        assert isinstance(stream, AsyncChatStream)
        chunks = [c async for c in stream]
        early = await chatty.contributor.achat("ft-llama", "hi", stream=True)
        await early.__anext__()
        await early.aclose()
        await early.aclose()
        return chunks

    chunks = run_async(main())
    assert "".join(c.delta for c in chunks) == REPLY
    assert chunks[-1].usage is not None and all(c.usage is None for c in chunks[:-1])
    gc.collect()
    rows = _rows(chatty.admin)
    assert len(rows) == 2
    assert list(rows["usage_unknown"]) == [False, True]


# -- async -----------------------------------------------------------------------------------------
def test_g1_achat_gathers_50_calls(chatty):
    async def main():
        return await asyncio.gather(*(chatty.contributor.achat("ft-llama", f"question {i}") for i in range(50)))

    done = run_async(main())
    assert len(done) == 50 and all(d.text == REPLY for d in done)
    rows = _rows(chatty.admin)
    assert len(rows) == 50 and set(rows["user"]) == {"cy"} and rows["ok"].all()
    assert sorted(m["messages"][0]["content"] for m in (r.json for r in chatty.fakes.fireworks.requests)) == \
        sorted(f"question {i}" for i in range(50))


# -- G-3: retries ----------------------------------------------------------------------------------
def test_g3_429_with_retry_after_is_retried_then_succeeds(chatty):
    chatty.fakes.fireworks.errors = [rate_limited("0")]
    done = chatty.contributor.chat("ft-llama", "hi")
    assert done.text == REPLY and done.attempts == 2
    assert len(chatty.fakes.fireworks.requests) == 2
    rows = _rows(chatty.admin)
    assert len(rows) == 1 and rows.iloc[0]["attempts"] == 2 and bool(rows.iloc[0]["ok"])


def test_g3_async_429_is_retried_too(chatty):
    chatty.fakes.fireworks.errors = [rate_limited("0")]
    done = run_async(chatty.contributor.achat("ft-llama", "hi"))
    assert done.attempts == 2 and _rows(chatty.admin).iloc[0]["attempts"] == 2


def test_g3_a_400_is_never_retried(chatty):
    chatty.fakes.fireworks.errors = [openai_error(400, "Invalid value for 'messages'.")]
    with pytest.raises(ProviderError) as info:
        chatty.contributor.chat("ft-llama", "hi", max_retries=5)
    assert info.value.status_code == 400 and "Invalid value" in info.value.message
    assert len(chatty.fakes.fireworks.requests) == 1
    rows = _rows(chatty.admin)
    assert len(rows) == 1 and rows.iloc[0]["attempts"] == 1 and not bool(rows.iloc[0]["ok"])


def test_g3_retries_stop_at_max_retries(chatty):
    chatty.fakes.fireworks.errors = [rate_limited("0"), rate_limited("0"), rate_limited("0")]
    with pytest.raises(ProviderError) as info:
        chatty.contributor.chat("ft-llama", "hi", max_retries=1)
    assert info.value.status_code == 429
    assert len(chatty.fakes.fireworks.requests) == 2
    assert _rows(chatty.admin).iloc[0]["attempts"] == 2


def test_g3_stream_opening_is_retried(chatty):
    chatty.fakes.fireworks.errors = [rate_limited("0")]
    stream = chatty.contributor.chat("ft-llama", "hi", stream=True)
    assert "".join(c.delta for c in stream) == REPLY and stream.attempts == 2
    assert _rows(chatty.admin).iloc[0]["attempts"] == 2


# -- G-4: usage by user ----------------------------------------------------------------------------
def test_g4_usage_has_the_user_and_cost_report_by_user(chatty):
    chatty.contributor.chat("ft-llama", "hi")
    chatty.contributor.chat("ft-llama", "hi again")
    chatty.admin.chat("ft-llama", "hello")
    chatty.admin.chat("plain", "hello")
    rows = _rows(chatty.admin)
    assert list(rows["user"]) == ["cy", "cy", "ana", "ana"]
    assert rows["workflow"].isna().all() and rows["field"].isna().all() and rows["project"].isna().all()
    report = chatty.admin.cost_report(by="user").set_index("user")
    assert report.loc["cy", "calls"] == 2 and report.loc["ana", "calls"] == 2
    assert report.loc["ana", "untracked_calls"] == 1
    cy = rows[rows["user"] == "cy"]
    assert report.loc["cy", "cost_usd"] == pytest.approx(cy["cost_usd"].sum())
    both = chatty.admin.cost_report(by=["user", "model"])
    assert len(both) == 3


def test_g4_generate_records_its_user_too(chatty):
    from byok_nb import LLMField

    chatty.admin.create_workflow("triage", "search", fields=[LLMField("answer", model="ft-llama")])
    chatty.contributor.generate("triage", "answer", "hi")
    row = _rows(chatty.admin).iloc[0]
    assert (row["user"], row["workflow"], row["field"], row["attempts"]) == ("cy", "triage", "answer", 1)


def test_g1_no_key_in_completion_stream_or_errors(chatty):
    done = chatty.contributor.chat("plain", "hi")
    text = repr(done) + str(done.model_dump()) + done._repr_html_()
    stream = chatty.contributor.chat("plain", "hi", stream=True)
    text += repr(stream) + repr(list(stream))
    chatty.fakes.compat.errors = [openai_error(401, f"Incorrect API key provided: {COMPAT_KEY}")]
    with pytest.raises(ProviderError) as info:
        chatty.contributor.chat("plain", "hi")
    text += str(info.value) + repr(info.value)
    assert COMPAT_KEY not in text


def test_g3_retry_after_past_the_deadline_is_not_waited_for(chatty):
    chatty.fakes.fireworks.errors = [rate_limited("7")]   # longer than the whole call may take
    with pytest.raises(ProviderError) as info:
        chatty.contributor.chat("ft-llama", "hi", timeout=2)
    assert info.value.status_code == 429 and info.value.retry_after == 7
    assert len(chatty.fakes.fireworks.requests) == 1
    assert _rows(chatty.admin).iloc[0]["attempts"] == 1


def test_g3_async_deadline_bounds_a_slow_attempt(chatty):
    chatty.fakes.fireworks.delay = 3
    with pytest.raises(ProviderError) as info:
        run_async(chatty.contributor.achat("ft-llama", "hi", timeout=0.5))
    assert info.value.status_code == 504 and "deadline" in info.value.message
    row = _rows(chatty.admin).iloc[0]
    assert not bool(row["ok"]) and row["attempts"] == 1


def test_g1_bedrock_model_chats_and_streams(chatty):
    chatty.admin.add_model(provider="bedrock", auth_method="api_key", api_key=BEDROCK_KEY,
                           aws_region="us-east-1", provider_model_id="anthropic.claude-3-haiku-20240307-v1:0",
                           slug="haiku", max_tokens=1024, input_cost_per_token="0.00000025",
                           output_cost_per_token="0.00000125", test=False)
    done = chatty.contributor.chat("haiku", "hi", temperature=0.1, stop=["END"])
    assert done.text and done.cost_usd is not None and done.cost_usd > 0
    config = chatty.fakes.bedrock.last.json["inferenceConfig"]
    assert config["temperature"] == 0.1 and config["stopSequences"] == ["END"] and config["maxTokens"] == 1024
    chunks = list(chatty.contributor.chat("haiku", "hi", stream=True))
    assert "".join(c.delta for c in chunks) == done.text and chunks[-1].usage is not None
    rows = _rows(chatty.admin)
    assert len(rows) == 2 and not rows["usage_unknown"].any()


def test_g1_inline_think_moves_to_reasoning_when_the_model_reasons(chatty):
    chatty.fakes.fireworks.reply = "<think>Tickets about search go to search.</think>The search team."
    done = chatty.contributor.chat("ft-llama", "who?")
    assert (done.text, done.reasoning) == ("The search team.", "Tickets about search go to search.")
    chunks = list(chatty.contributor.chat("ft-llama", "who?", stream=True))
    assert "".join(c.delta for c in chunks) == "The search team."
    assert "".join(c.reasoning for c in chunks).strip() == "Tickets about search go to search."
    chatty.fakes.compat.reply = "<think>not reasoning: the model has no such flag</think>ok"
    assert chatty.contributor.chat("plain", "who?").text.startswith("<think>")
