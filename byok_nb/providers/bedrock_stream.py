"""Bedrock's ConverseStream reply: binary event-stream bytes in, OpenAI-shaped stream chunks out.

The framing (prelude, headers, CRCs, size limits) is decoded by botocore's own
``EventStreamBuffer`` and each message is parsed against the service model's event shapes by
botocore's ``EventStreamJSONParser`` — what ``botocore.eventstream.EventStream`` does inside a
client. Here the bytes are *fed* rather than pulled, so the sync and the async paths share one
decoder. An exception event inside the stream (``throttlingException``,
``modelStreamErrorException`` ...) becomes a ``ProviderError`` with Bedrock's message.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..core.errors import ProviderError
from ..core.secrets import scrub
from ..core.stream_scrub import StreamScrubber
from .base import StreamChunk, plausible_token_count
from .transport import clean_error, shorten, shown

LABEL = "Bedrock"
# Bedrock's stopReason -> OpenAI's finish_reason.
FINISH_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
}
# The HTTP status each in-stream exception has when Bedrock raises it before the stream starts
# (the service model's error shapes), so a mid-stream throttle is a 429 like any other.
STREAM_EXCEPTION_STATUS = {
    "throttlingException": 429, "serviceUnavailableException": 503,
    "internalServerException": 500, "validationException": 400,
    "modelStreamErrorException": 424,
}


def finish_reason(stop_reason: Any, *, json_tool_only: bool = False) -> str | None:
    """OpenAI's finish reason for a Bedrock ``stopReason``. The forced JSON tool's ``tool_use``
    is a plain stop: its input is the reply text, not a tool call for the caller."""
    if not isinstance(stop_reason, str):
        return None
    if stop_reason == "tool_use" and json_tool_only:
        return "stop"
    return FINISH_REASONS.get(stop_reason, stop_reason)


class EventDecoder:
    """Bytes of a ``application/vnd.amazon.eventstream`` body -> parsed events (dicts keyed by
    the event type, e.g. ``{"contentBlockDelta": {...}}``), as botocore parses them."""

    def __init__(self, event_shape: Any, secrets: list[str]) -> None:
        from botocore.eventstream import EventStreamBuffer
        from botocore.parsers import EventStreamJSONParser

        self._buffer = EventStreamBuffer()
        self._parser = EventStreamJSONParser()
        self._shape = event_shape
        self._secrets = secrets
        self._fed = 0        # bytes fed, and bytes of whole messages decoded: a difference at
        self._decoded = 0    # the end is a message cut off mid-way

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        """The events completed by ``data``, one at a time: an exception event raises where it
        stands in the stream, after the events before it (one network read may hold them all)."""
        from botocore.eventstream import ParserError

        self._buffer.add_data(data)
        self._fed += len(data)
        while True:
            failure: ProviderError | None = None
            try:
                message = next(self._buffer, None)
            except ParserError as exc:   # bad CRC, oversized headers or payload, bad header type
                failure = self._malformed(type(exc).__name__ + ": " + str(exc))
            if failure is not None:
                raise failure
            if message is None:
                return
            self._decoded += message.prelude.total_length
            event = self._event(message)
            if event:
                yield event

    def _event(self, message: Any) -> dict[str, Any]:
        failure: ProviderError | None = None
        try:
            response = message.to_response_dict()
            parsed = self._parser.parse(response, self._shape)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            failure = self._malformed(f"an event could not be read ({type(exc).__name__})")
        if failure is not None:
            raise failure
        if response["status_code"] != 200:
            raise self._exception(parsed)
        return parsed

    def finish(self) -> None:
        """Raise when the body ended inside a message."""
        if self._decoded != self._fed:
            raise self._malformed(f"the stream ended inside an event "
                                  f"({self._fed - self._decoded} bytes left over)")

    def _exception(self, parsed: dict[str, Any]) -> ProviderError:
        error = parsed.get("Error") if isinstance(parsed.get("Error"), dict) else {}
        code = error.get("Code") if isinstance(error.get("Code"), str) else ""
        message = shown(error.get("Message") if isinstance(error.get("Message"), str) else "",
                        self._secrets)
        status = STREAM_EXCEPTION_STATUS.get(code, 502)
        name = code[:1].upper() + code[1:] if code else "an exception"
        return clean_error(f"{LABEL} stream failed with {shorten(name, 200)}: {message or '(no message)'}",
                           self._secrets, status_code=status, provider_message=message or name,
                           provider=LABEL)

    def _malformed(self, why: str) -> ProviderError:
        return malformed_stream(why, self._secrets)


def malformed_stream(why: str, secrets: list[str]) -> ProviderError:
    """A stream that cannot be read (502; not transient: the reply came, asking again repeats it)."""
    return clean_error(f"{LABEL} sent a malformed event stream: {why}", secrets, status_code=502,
                       provider=LABEL, transient=False)


class StreamTranslator:
    """Parsed ConverseStream events -> :class:`StreamChunk` s in OpenAI's delta shape.

    Text deltas are ``delta``; a ``toolUse`` block is a tool call (its start carries the id and
    name, each input delta a piece of ``arguments``), numbered in order of appearance as OpenAI
    numbers them; the forced JSON tool's input is streamed as text (as :meth:`chat` returns it);
    ``reasoningContent`` text is ``reasoning``. Finish reason and usage come on :meth:`last`.
    Text, reasoning and each tool's input are scrubbed as streams (a key split across two events
    still goes): an ending that could begin a key waits for the next event, or :meth:`last`.
    """

    def __init__(self, *, json_tool: str | None, request_id: str | None, secrets: list[str]) -> None:
        self.json_tool = json_tool
        self.request_id = request_id
        self._secrets = [s for s in secrets if s]
        self._blocks: dict[Any, int | None] = {}   # contentBlockIndex -> tool ordinal (None: JSON tool)
        self._tools = 0
        self.stop_reason: Any = None
        self.stopped = False
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self._text = StreamScrubber(self._secrets)
        self._reasoning = StreamScrubber(self._secrets)
        self._inputs: dict[int, StreamScrubber] = {}   # tool ordinal -> its input's scrubber

    def chunks(self, event: dict[str, Any]) -> list[StreamChunk]:
        if "contentBlockStart" in event:
            return self._start(event["contentBlockStart"])
        if "contentBlockDelta" in event:
            return self._delta(event["contentBlockDelta"])
        if "messageStop" in event:
            self.stopped = True
            self.stop_reason = event["messageStop"].get("stopReason")
        elif "metadata" in event:
            usage = event["metadata"].get("usage") or {}
            inputs, outputs = usage.get("inputTokens"), usage.get("outputTokens")
            if plausible_token_count(inputs) and plausible_token_count(outputs):
                self.input_tokens, self.output_tokens = inputs, outputs
        return []

    def last(self) -> StreamChunk:
        """The closing chunk: what the scrubbers still held, the finish reason and (when Bedrock
        reported it) usage."""
        held_inputs = [{"index": ordinal, "function": {"arguments": rest}}
                       for ordinal, scrubber in self._inputs.items() if (rest := scrubber.flush())]
        return StreamChunk(delta=self._text.flush(), reasoning=self._reasoning.flush(),
                           tool_calls=held_inputs or None,
                           finish_reason=finish_reason(self.stop_reason,
                                                       json_tool_only=self._json_tool_only()),
                           input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                           request_id=self.request_id)

    def _json_tool_only(self) -> bool:
        return self.json_tool is not None and self._tools == 0

    def _start(self, start_event: dict[str, Any]) -> list[StreamChunk]:
        index = start_event.get("contentBlockIndex")
        use = (start_event.get("start") or {}).get("toolUse")
        if not isinstance(use, dict):
            return []
        name = use.get("name") if isinstance(use.get("name"), str) else ""
        if self.json_tool is not None and name == self.json_tool:
            self._blocks[index] = None
            return []
        ordinal = self._tools
        self._tools += 1
        self._blocks[index] = ordinal
        call = {"index": ordinal, "id": self._clean(use.get("toolUseId") or ""), "type": "function",
                "function": {"name": self._clean(name), "arguments": ""}}
        return [self._chunk(tool_calls=[call])]

    def _delta(self, delta_event: dict[str, Any]) -> list[StreamChunk]:
        delta = delta_event.get("delta") or {}
        if isinstance(delta.get("text"), str):
            return self._text_chunk(self._text.feed(delta["text"]))
        if isinstance(delta.get("toolUse"), dict):
            piece = delta["toolUse"].get("input")
            if not isinstance(piece, str):
                piece = json.dumps(piece) if piece is not None else ""
            if not piece:
                return []
            index = delta_event.get("contentBlockIndex")
            if index not in self._blocks:
                raise malformed_stream("tool input for a block that was never started", self._secrets)
            ordinal = self._blocks[index]
            if ordinal is None:   # the forced JSON tool: its input is the reply text
                return self._text_chunk(self._text.feed(piece))
            arguments = self._inputs.setdefault(ordinal, StreamScrubber(self._secrets)).feed(piece)
            return [self._chunk(tool_calls=[{"index": ordinal, "function": {"arguments": arguments}}])] \
                if arguments else []
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str) and reasoning["text"]:
            shown = self._reasoning.feed(reasoning["text"])
            return [self._chunk(reasoning=shown)] if shown else []
        return []   # signatures, redacted reasoning, citations: nothing to show

    def _text_chunk(self, text: str) -> list[StreamChunk]:
        return [self._chunk(delta=text)] if text else []

    def _chunk(self, **fields: Any) -> StreamChunk:
        return StreamChunk(request_id=self.request_id, **fields)

    def _clean(self, text: str) -> str:
        # A reply is provider text too (see transport.scrubbed_result): the call's own secrets go.
        return scrub(text, self._secrets, shapes=False) if self._secrets and text else text
