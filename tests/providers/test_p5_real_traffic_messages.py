"""SPEC P-5 and G-1, from replayed real traffic: OpenRouter's ``error.metadata.raw`` is part of
the message (scrubbed), a status is printed once, the request id is taken from the reply, and
``<think>`` reasoning inline at the start of an answer (DeepSeek-R1 through the HF router) is
moved to the reasoning when reasoning was asked for."""
from __future__ import annotations

import json

import pytest
from provider_kit import KEYS, chat, target_for

from byok_nb.core.errors import ProviderError
from byok_nb.providers import transport
from byok_nb.providers.inline_reasoning import ThinkSplitter, split_think
from byok_nb.testing import Reply
from byok_nb.testing.fake_providers import openrouter_upstream_error, rate_limited

RAW_TOGETHER = json.dumps({"error": {"message": "Input validation error: `inputs` tokens + "
                                                "`max_new_tokens` must be <= 8193", "type": "invalid_request_error"}})


def failure(hub, target, request=None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        hub.adapter(target).chat(request or chat())
    return caught.value


@pytest.fixture
def router(openai_fake, monkeypatch):
    fake = openai_fake("hf_router", models=["deepseek-ai/DeepSeek-R1"])
    monkeypatch.setenv("BYOK_NB_HF_ROUTER_URL", fake.base_url)
    return fake, target_for("hf_router", endpoint_url="https://api-inference.huggingface.co/models/deepseek-ai/DeepSeek-R1")


# -- OpenRouter's metadata.raw -----------------------------------------------------------------------
def test_p5_openrouter_metadata_raw_is_part_of_the_message(hub, openai_fake):
    fake = openai_fake("openrouter")
    fake.errors.append(openrouter_upstream_error(400, RAW_TOGETHER, "Together"))
    error = failure(hub, target_for("openrouter"))
    assert error.status_code == 400
    assert error.message == ("OpenRouter returned HTTP 400: Provider returned error — Together said: "
                             "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 8193")
    assert "Together said" in error.provider_message


@pytest.mark.parametrize("raw, said", [
    ("upstream connect error or disconnect/reset before headers", "upstream connect error"),
    ({"message": "model is loading"}, "model is loading"),
    ('{"detail": "Not Found"}', "Not Found"),
])
def test_p5_openrouter_metadata_raw_as_text_object_or_other_json(hub, openai_fake, raw, said):
    fake = openai_fake("openrouter")
    fake.errors.append(openrouter_upstream_error(502, raw, "DeepInfra"))
    error = failure(hub, target_for("openrouter"))
    assert f"DeepInfra said: {said}" in error.message
    assert error.transient is True


def test_p5_openrouter_metadata_raw_is_scrubbed(hub, openai_fake):
    fake = openai_fake("openrouter")
    echoed = json.dumps({"error": {"message": f"Invalid key {KEYS['openrouter']} for upstream"}})
    fake.errors.append(openrouter_upstream_error(401, echoed, "Proxy"))
    error = failure(hub, target_for("openrouter"))
    for text in (error.message, error.provider_message, repr(error)):
        assert KEYS["openrouter"] not in text
    assert "[REDACTED]" in error.message


def test_p5_openrouter_moderation_reasons_are_shown(hub, openai_fake):
    fake = openai_fake("openrouter")
    fake.errors.append(Reply(403, {"error": {"message": "Input was flagged", "code": 403, "metadata": {
        "reasons": ["harassment"], "flagged_input": "...", "provider_name": "OpenAI"}}}))
    assert "OpenAI said: flagged for harassment" in failure(hub, target_for("openrouter")).message


# -- a status printed once --------------------------------------------------------------------------
@pytest.mark.parametrize("body, expected", [
    ({"error": {"message": "400 Bad Request: model is required"}}, "HTTP 400: model is required"),
    ({"error": {"message": "HTTP 400: bad stop"}}, "HTTP 400: bad stop"),
    ({"detail": "400"}, "HTTP 400 Bad Request"),
    ("", "HTTP 400 Bad Request"),
    ({"error": {"message": "400 tokens is too many"}}, "HTTP 400: 400 tokens is too many"),
])
def test_p5_a_status_is_never_printed_twice(hub, openai_fake, body, expected):
    fake = openai_fake("openai")
    fake.errors.append(Reply(400, body))
    error = failure(hub, target_for("openai", fake))
    assert error.message == f"OpenAI-compatible endpoint returned {expected}"
    assert "400 400" not in error.message


def test_p5_an_unknown_status_with_no_body_stands_alone():
    assert transport.status_text(529, "") == "HTTP 529"
    assert transport.status_text(529, "529") == "HTTP 529"
    assert transport.status_text(503, "Service Unavailable") == "HTTP 503 Service Unavailable"


def test_g3_retry_after_seconds_and_transience_are_set_where_the_reply_becomes_an_error(hub, openai_fake):
    fake = openai_fake("together")
    fake.errors += [rate_limited("12", profile="together"), Reply(400, {"error": {"message": "bad"}})]
    throttled = failure(hub, target_for("together"))
    assert (throttled.status_code, throttled.retry_after, throttled.transient) == (429, 12.0, True)
    assert "(Retry-After: 12 s)" in throttled.message
    bad = failure(hub, target_for("together"))
    assert (bad.retry_after, bad.transient) == (None, False)


def test_g3_a_redirect_or_malformed_reply_is_not_transient(hub, openai_fake):
    fake = openai_fake("openai", malformed=True)
    assert failure(hub, target_for("openai", fake)).transient is False
    fake = openai_fake("openai", redirect_to="https://elsewhere.example/v1")
    assert failure(hub, target_for("openai", fake)).transient is False


# -- request id --------------------------------------------------------------------------------------
def test_g1_request_id_from_the_header_or_the_body_id(hub, openai_fake):
    fake = openai_fake("fireworks")
    assert hub.adapter(target_for("fireworks")).chat(chat()).request_id == "req_fake_000001"
    fake = openai_fake("openrouter")
    assert hub.adapter(target_for("openrouter")).chat(chat()).request_id == "gen-fake-1"


# -- <think> inline --------------------------------------------------------------------------------------
R1_ANSWER = "<think>\nThe user wants 2+2. That is 4.\n</think>\n\nThe answer is 4."


def test_p1_inline_think_moves_to_reasoning_when_reasoning_was_asked(hub, router):
    fake, target = router
    fake.reply = R1_ANSWER
    result = hub.adapter(target).chat(chat(reasoning={"effort": "medium"}))
    assert result.text == "The answer is 4."
    assert result.reasoning_text == "The user wants 2+2. That is 4."


def test_p1_inline_think_is_left_in_the_text_when_reasoning_was_not_asked(hub, router):
    fake, target = router
    fake.reply = R1_ANSWER
    result = hub.adapter(target).chat(chat())
    assert result.text == R1_ANSWER and result.reasoning_text == ""


def test_p1_a_think_tag_later_in_the_answer_is_the_answers_text(hub, router):
    fake, target = router
    fake.reply = "Use <think>...</think> tags like this."
    result = hub.adapter(target).chat(chat(reasoning={"effort": "low"}))
    assert result.text == "Use <think>...</think> tags like this." and result.reasoning_text == ""


def test_p1_an_unclosed_think_block_is_all_reasoning():
    assert split_think("<think>still thinking when max_tokens ran out") == (
        "still thinking when max_tokens ran out", "")


@pytest.mark.parametrize("text", [R1_ANSWER, "  <think>a</think>b", "<thin", "plain", "<think></think>",
                                  "<think>a</th", "<think>x < y </think> z", "<think>\n\n</think>\n\n"])
def test_p1_streamed_think_splitting_matches_the_whole_answer_for_every_split(text):
    for size in range(1, len(text) + 1):
        splitter, reasoning, answer = ThinkSplitter(), "", ""
        for start in range(0, len(text), size):
            r, a = splitter.feed(text[start:start + size])
            reasoning, answer = reasoning + r, answer + a
        r, a = splitter.close()
        assert (reasoning + r, answer + a) == split_think(text), size


def test_g3_a_missing_operator_key_is_not_transient(hub):
    from byok_nb.providers import Target

    with pytest.raises(ProviderError) as caught:
        hub.adapter(Target("openrouter", "openai/gpt-4o"))
    assert "OPENROUTER_API_KEY" in caught.value.message and caught.value.transient is False
