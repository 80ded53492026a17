"""The OpenAI chat-completions wire shapes the gateway speaks: reading a request body into the
shared call's arguments, and writing a completion, a stream chunk and a model list back.

Plain dicts and ``json``: no framework, so a request costs what its parsing costs. Nothing here
calls a provider or the store.
"""
from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from ..core.errors import InvalidRequest

__all__ = ["ChatCall", "chunk_payload", "completion_payload", "dumps", "model_list_payload",
           "parse_chat_request", "usage_payload"]

# Body fields that are the request's frame rather than a chat parameter.
_FRAME = frozenset({"model", "messages", "stream", "stream_options"})
# Accepted and deliberately not acted on: they change nothing about the answer we return.
_IGNORED = frozenset({"user", "store", "metadata", "service_tier"})


# One encoder for every answer: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


class ChatCall:
    """A parsed ``POST /v1/chat/completions`` body."""

    __slots__ = ("include_usage", "messages", "model", "params", "stream")

    def __init__(self, model: str, messages: list[Any], stream: bool, include_usage: bool,
                 params: dict[str, Any]) -> None:
        self.model = model
        self.messages = messages
        self.stream = stream
        self.include_usage = include_usage
        self.params = params


def parse_chat_request(raw: bytes) -> ChatCall:
    """The body as a :class:`ChatCall`; InvalidRequest (400) naming what is wrong."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required: a model's ref from GET /v1/models", field="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is required: a non-empty list of messages", field="messages")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false", field="stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidRequest("'stream_options' must be an object", field="stream_options")
        include_usage = options.get("include_usage") is True
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("only n=1 is supported", field="n")
    params: dict[str, Any] = {}
    for key, value in body.items():
        if key in _FRAME or key in _IGNORED or key == "n" or value is None:
            continue
        if key == "max_completion_tokens":   # OpenAI's newer name for max_tokens
            key = "max_tokens"
        elif key == "reasoning_effort":      # OpenAI's flat form of the canonical reasoning setting
            key, value = "reasoning", {"effort": value}
        params[key] = value
    return ChatCall(model, messages, stream, include_usage, params)


# Completion ids: unique per process by a counter, across processes (workers, restarts) by a random
# prefix drawn once — a uuid4 per reply would read the OS's random source on every request.
_ID_PREFIX = f"chatcmpl-{uuid.uuid4().hex[:16]}"
_ID_COUNTER = itertools.count(1)


def completion_id(request_id: str | None = None) -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def usage_payload(input_tokens: Any, output_tokens: Any) -> dict[str, int] | None:
    if input_tokens is None and output_tokens is None:
        return None
    prompt, completion = int(input_tokens or 0), int(output_tokens or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chunk_usage(usage: Any) -> dict[str, int] | None:
    """A chunk's ``.usage`` (an object or a mapping, with our names or OpenAI's) in OpenAI's shape."""
    if usage is None:
        return None
    prompt = _get(usage, "input_tokens", _get(usage, "prompt_tokens"))
    completion = _get(usage, "output_tokens", _get(usage, "completion_tokens"))
    return usage_payload(prompt, completion)


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(calls or ()):
        call = dict(call)
        call.setdefault("type", "function")
        call.setdefault("id", f"call_{i}")
        out.append(call)
    return out


def completion_payload(completion: Any, model: str, created: int | None = None) -> dict[str, Any]:
    """A :class:`~byok_nb.core.domain.Completion` as an OpenAI ``chat.completion`` object."""
    tool_calls = _tool_calls(getattr(completion, "tool_calls", None))
    message: dict[str, Any] = {"role": "assistant", "content": completion.text if completion.text or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    reasoning = getattr(completion, "reasoning", None)
    if reasoning:
        message["reasoning_content"] = reasoning   # the field DeepSeek and vLLM use
    finish = getattr(completion, "finish_reason", None) or ("tool_calls" if tool_calls else "stop")
    payload: dict[str, Any] = {
        "id": completion_id(), "object": "chat.completion", "created": created or int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
    }
    usage = usage_payload(completion.input_tokens, completion.output_tokens)
    if usage is not None:
        payload["usage"] = usage
    return payload


def chunk_payload(chunk: Any, *, cid: str, model: str, created: int, first: bool) -> dict[str, Any] | None:
    """One stream chunk as an OpenAI ``chat.completion.chunk`` (None when it carries nothing to
    show: a usage-only chunk, whose usage goes in the final usage chunk)."""
    delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
    text = _get(chunk, "delta") or ""
    if text:
        delta["content"] = text
    reasoning = _get(chunk, "reasoning") or ""
    if reasoning:
        delta["reasoning_content"] = reasoning
    calls = _get(chunk, "tool_calls")
    if calls:
        delta["tool_calls"] = [dict(c) for c in calls]
    finish = _get(chunk, "finish_reason")
    if not first and not text and not reasoning and not calls and finish is None:
        return None
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}


def final_chunk(*, cid: str, model: str, created: int, finish: str) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": finish, "logprobs": None}]}


def usage_chunk(usage: dict[str, int] | None, *, cid: str, model: str, created: int) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage`` is set: no choices, the totals."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage}


def model_list_payload(rows: list[dict[str, Any]], created: int) -> dict[str, Any]:
    """``GET /v1/models``: each usable model as an OpenAI model object (``id`` = its ref)."""
    data = [{"id": r["ref"], "object": "model", "created": created, "owned_by": r["provider"],
             "name": r.get("label"), "type": r.get("type"), "max_tokens": r.get("max_tokens"),
             "capabilities": {"json_mode": bool(r.get("supports_json_mode")),
                              "vision": bool(r.get("supports_vision")),
                              "tool_use": bool(r.get("supports_tool_use")),
                              "reasoning": bool(r.get("supports_reasoning"))}}
            for r in rows if r.get("active", True)]
    return {"object": "list", "data": data}
