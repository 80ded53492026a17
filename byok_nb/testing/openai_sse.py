"""Server-sent events as OpenAI-shaped vendors send them, for the fake providers.

A completion becomes ``chat.completion.chunk`` events: a first chunk with the role, the text in
small pieces (or the tool call as a name delta then argument deltas, as OpenAI streams it), a
chunk with the ``finish_reason``, and — when ``stream_options.include_usage`` asked for it, or
always on Together and OpenRouter — a usage chunk with ``choices: []``; then ``data: [DONE]``.
OpenRouter opens with ``: OPENROUTER PROCESSING`` comments (its keep-alive).

Errors mid-stream, in each vendor's form:
* OpenAI (and the vendors relaying its shape): ``data: {"error": {"message", "type", "code"}}``;
* OpenRouter: a chunk with ``error: {"code", "message", "metadata"}`` and ``finish_reason:
  "error"`` in its choice;
* TGI: ``event: error`` with ``data: {"error": "...", "error_type": "..."}``.
"""
from __future__ import annotations

import json
from typing import Any

PIECE_CHARS = 4          # characters of text per chunk: several chunks even for short replies


def sse(payload: Any, event: str | None = None) -> bytes:
    """One event: ``data: <json>`` (a string payload is sent as is), then a blank line."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


DONE = b"data: [DONE]\n\n"
OPENROUTER_COMMENT = b": OPENROUTER PROCESSING\n\n"


def completion_events(completion: dict[str, Any], *, include_usage: bool) -> list[bytes]:
    """The events for a finished ``chat.completion`` (without ``[DONE]``)."""
    base = {"id": completion["id"], "object": "chat.completion.chunk",
            "created": completion["created"], "model": completion["model"]}
    choice = completion["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    events = [chunk({"role": "assistant", "content": ""})]
    for key in ("reasoning_content", "reasoning"):
        text = message.get(key)
        for start in range(0, len(text or ""), PIECE_CHARS):
            events.append(chunk({key: text[start:start + PIECE_CHARS]}))
    content = message.get("content") or ""
    for start in range(0, len(content), PIECE_CHARS):
        events.append(chunk({"content": content[start:start + PIECE_CHARS]}))
    for index, call in enumerate(message.get("tool_calls") or []):
        events.append(chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                             "function": {"name": call["function"]["name"], "arguments": ""}}]}))
        arguments = call["function"]["arguments"]
        for start in range(0, len(arguments), PIECE_CHARS):
            events.append(chunk({"tool_calls": [{"index": index, "function": {
                "arguments": arguments[start:start + PIECE_CHARS]}}]}))
    events.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        events.append(sse({**base, "choices": [], "usage": completion["usage"]}))
    return events


def error_event(profile: str, status: int, message: str, *, metadata: dict[str, Any] | None = None,
                completion_id: str = "chatcmpl-fake-error") -> bytes:
    """A failure reported inside a stream, in ``profile``'s form (see module doc)."""
    if profile == "hf_tgi":
        return sse({"error": message, "error_type": "generation"}, event="error")
    if profile == "openrouter":
        error: dict[str, Any] = {"code": status, "message": message}
        if metadata is not None:
            error["metadata"] = metadata
        return sse({"id": completion_id, "object": "chat.completion.chunk", "error": error,
                    "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]})
    return sse({"error": {"message": message, "type": "server_error", "param": None, "code": None}})
