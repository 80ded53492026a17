"""SPEC G-2 with P-5's rule that no answer hands a key over: a streamed answer is scrubbed as a
stream, so a key the provider echoes split across two or three chunks never reaches the caller,
while ordinary text is handed over as it comes (only an ending that could begin a key waits)."""
from __future__ import annotations

import json

import pytest
from provider_kit import KEYS, chat, target_for

from byok_nb.core.secrets import REDACTED
from byok_nb.core.stream_scrub import StreamScrubber
from byok_nb.providers.bedrock_stream import StreamTranslator as BedrockTranslator
from byok_nb.providers.openai_stream import StreamTranslator as OpenAITranslator
from byok_nb.providers.sse import Event
from byok_nb.testing.openai_sse import PIECE_CHARS

KEY = "sk-proj-Pl4nted0Secret0Key0123456789"
BEFORE, AFTER = "Your header was Bearer ", " and that is all."
TEXT = BEFORE + KEY + AFTER
START = len(BEFORE)


def scrubbed(pieces: list[str], secrets=(KEY,)) -> list[str]:
    scrubber = StreamScrubber(secrets)
    return [scrubber.feed(piece) for piece in pieces] + [scrubber.flush()]


def two_way_splits():
    return [[TEXT[:cut], TEXT[cut:]] for cut in range(1, len(TEXT))]


def three_way_splits():
    # Every pair of cuts that falls inside the key or at its edges (the rest is ordinary text).
    cuts = range(START - 1, START + len(KEY) + 2)
    return [[TEXT[:a], TEXT[a:b], TEXT[b:]] for a in cuts for b in cuts if a < b]


# -- the scrubber ----------------------------------------------------------------------------------
@pytest.mark.parametrize("splits", [two_way_splits(), three_way_splits()], ids=["two", "three"])
def test_g2_a_key_split_across_chunks_at_every_offset_never_comes_out(splits):
    assert len(splits) > len(KEY)
    for pieces in splits:
        out = "".join(scrubbed(pieces))
        assert KEY.lower() not in out.lower(), pieces
        assert out == BEFORE + REDACTED + AFTER, pieces


def test_g2_a_key_split_in_another_letter_case_never_comes_out():
    upper = TEXT.upper()
    for cut in range(1, len(upper)):
        out = "".join(scrubbed([upper[:cut], upper[cut:]]))
        assert KEY.lower() not in out.lower()


def test_g2_ordinary_text_is_handed_over_at_once():
    pieces = ["Hello", " there,", " how are", " you today?"]
    scrubber = StreamScrubber([KEY])
    assert [scrubber.feed(piece) for piece in pieces] == pieces
    assert scrubber.flush() == ""


def test_g2_only_an_ending_that_could_begin_a_key_waits_and_no_longer_than_needed():
    scrubber = StreamScrubber([KEY])
    assert scrubber.feed("ask") == "a"                 # "sk" could begin the key
    assert scrubber.holding == "sk"
    assert scrubber.feed("ed twice. ") == "sked twice. "  # proven harmless by the next chunk
    assert scrubber.feed("key: sk-pr") == "key: "
    assert scrubber.feed("oj-Pl4nted0") == ""          # still the key's beginning
    assert scrubber.feed("Secret0Key0123456789 ok") == REDACTED + " ok"
    assert scrubber.feed("trailing s") == "trailing "
    assert scrubber.flush() == "s"                     # the end: what was held is not a key


def test_g2_without_secrets_nothing_is_held():
    scrubber = StreamScrubber([])
    assert scrubber.feed("sk-") == "sk-" and scrubber.flush() == ""


def test_g2_the_scrubber_can_fail_without_the_carry_over():
    """The per-chunk scrub this replaces lets a split key through: the test above can fail."""
    from byok_nb.core.secrets import scrub

    cut = START + 6
    out = scrub(TEXT[:cut], [KEY], shapes=False) + scrub(TEXT[cut:], [KEY], shapes=False)
    assert out != BEFORE + REDACTED + AFTER


# -- the OpenAI-shaped stream ----------------------------------------------------------------------
def openai_events(pieces: list[str], field: str = "content") -> list[Event]:
    events = [Event(json.dumps({"id": "c1", "choices": [{"index": 0, "delta": {field: piece}}]}))
              for piece in pieces]
    events.append(Event(json.dumps({"id": "c1", "choices": [{"index": 0, "delta": {},
                                                             "finish_reason": "stop"}]})))
    return events + [Event("[DONE]")]


def run_openai(pieces: list[str], field: str = "content"):
    translator = OpenAITranslator(label="OpenAI", secrets=[KEY], request_id=None, split_think=False)
    chunks = [c for event in openai_events(pieces, field) for c in translator.chunks(event)]
    return chunks + [translator.finish()]


@pytest.mark.parametrize("field, attr", [("content", "delta"), ("reasoning_content", "reasoning")])
def test_g2_openai_stream_text_and_reasoning_split_keys_never_come_out(field, attr):
    for pieces in two_way_splits() + three_way_splits():
        out = "".join(getattr(c, attr) for c in run_openai(pieces, field))
        assert out == BEFORE + REDACTED + AFTER, pieces


def test_g2_openai_stream_tool_arguments_split_keys_never_come_out():
    arguments = json.dumps({"note": TEXT})
    for cut in range(1, len(arguments)):
        translator = OpenAITranslator(label="OpenAI", secrets=[KEY], request_id=None, split_think=False)
        deltas = [{"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                   "function": {"name": "save", "arguments": arguments[:cut]}}]},
                  {"tool_calls": [{"index": 0, "function": {"arguments": arguments[cut:]}}]}]
        events = [Event(json.dumps({"choices": [{"index": 0, "delta": d}]})) for d in deltas]
        events += [Event(json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}))]
        chunks = [c for e in events for c in translator.chunks(e)] + [translator.finish()]
        out = "".join(call["function"].get("arguments", "") for c in chunks for call in c.tool_calls or [])
        assert json.loads(out) == {"note": BEFORE + REDACTED + AFTER}


def test_g2_openai_stream_through_a_provider_at_every_chunk_offset(hub, openai_fake):
    """End to end: the fake streams its reply in pieces of a few characters; the key's start is
    moved through every position of a piece, so it is cut at every offset."""
    fake = openai_fake("openai", api_key=KEYS["openai"])
    adapter = hub.adapter(target_for("openai", fake))
    key = KEYS["openai"]
    for shift in range(PIECE_CHARS):
        fake.reply = "x" * shift + "echo: " + key + " done"
        out = "".join(chunk.delta for chunk in adapter.stream(chat()))
        assert key not in out
        assert out == "x" * shift + "echo: " + REDACTED + " done"


# -- Bedrock's ConverseStream ----------------------------------------------------------------------
def run_bedrock(pieces: list[str], kind: str = "text"):
    translator = BedrockTranslator(json_tool=None, request_id=None, secrets=[KEY])
    chunks = []
    if kind == "tool":
        chunks += translator.chunks({"contentBlockStart": {"contentBlockIndex": 0, "start": {
            "toolUse": {"toolUseId": "t1", "name": "save"}}}})
    for piece in pieces:
        delta = {"text": piece} if kind == "text" else \
            {"reasoningContent": {"text": piece}} if kind == "reasoning" else {"toolUse": {"input": piece}}
        chunks += translator.chunks({"contentBlockDelta": {"contentBlockIndex": 0, "delta": delta}})
    translator.chunks({"messageStop": {"stopReason": "end_turn"}})
    return chunks + [translator.last()]


@pytest.mark.parametrize("kind", ["text", "reasoning", "tool"])
def test_g2_bedrock_stream_split_keys_never_come_out(kind):
    for pieces in two_way_splits() + three_way_splits():
        chunks = run_bedrock(pieces, kind)
        if kind == "tool":
            out = "".join(call["function"].get("arguments", "") for c in chunks for call in c.tool_calls or [])
        else:
            out = "".join(c.reasoning if kind == "reasoning" else c.delta for c in chunks)
        assert out == BEFORE + REDACTED + AFTER, pieces
