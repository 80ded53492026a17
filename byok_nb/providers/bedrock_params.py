"""OpenAI chat parameters -> Bedrock converse fields (the Bedrock column of the
parameter table in docs/providers.md).

* ``temperature``, ``top_p``, ``stop`` -> ``inferenceConfig`` ``temperature``, ``topP``,
  ``stopSequences`` (``max_tokens`` is the request's own field -> ``maxTokens``);
* ``response_format`` ``json_object`` / ``json_schema`` -> the forced-tool trick Test Connection's
  JSON mode uses on Bedrock (a tool whose ``inputSchema`` is the schema; its input is the reply);
* ``n=1`` is the one answer converse gives (left out); ``seed``, other ``n`` and every other
  parameter -> ``InvalidRequest`` naming it, before any I/O: converse has no field for them, and
  dropping one silently would change what the caller asked for.

A parameter given as ``None`` counts as not given (the OpenAI SDK's way of leaving one out).
"""
from __future__ import annotations

import math
from typing import Any

from ..core.errors import InvalidRequest
from .base import ChatRequest
from .openai_params import USE_INSTEAD

PROVIDER_NAME = "AWS Bedrock"
_NUMBERS = {"temperature": "temperature", "top_p": "topP"}
# Parameters handled here; everything else in ChatRequest.params is refused.
HANDLED = frozenset({*_NUMBERS, "stop", "response_format", "n"})
DEFAULT_SCHEMA_NAME = "response"
_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def unsupported(name: str, hint: str | None = None) -> InvalidRequest:
    tail = f"; {hint}" if hint else ""
    return InvalidRequest(f"{name} is not supported by {PROVIDER_NAME}{tail}", field=name)


def given_params(request: ChatRequest) -> dict[str, Any]:
    """The request's extra parameters that were given (not None); refuses unknown ones."""
    params = {name: value for name, value in (request.params or {}).items() if value is not None}
    for name in sorted(params):
        if name not in HANDLED:
            raise unsupported(name, USE_INSTEAD.get(name))   # the same hints as the other providers
    if "n" in params and params["n"] != 1:
        raise unsupported("n", "only one choice per call (n=1) is read")
    return params


def inference_config(request: ChatRequest) -> dict[str, Any]:
    """``inferenceConfig`` for the request: ``maxTokens`` plus the sampling parameters given."""
    params = given_params(request)
    config: dict[str, Any] = {"maxTokens": request.max_tokens}
    for name, field in _NUMBERS.items():
        if name in params:
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidRequest(f"{name} must be a number, not {value!r}", field=name)
            config[field] = value
    if "stop" in params:
        stop = params["stop"]
        sequences = [stop] if isinstance(stop, str) else stop
        if not isinstance(sequences, list) or not all(isinstance(s, str) and s for s in sequences):
            raise InvalidRequest("stop must be a non-empty string or a list of them", field="stop")
        if sequences:
            config["stopSequences"] = list(sequences)
    return config


def json_output(request: ChatRequest) -> tuple[dict[str, Any] | None, str]:
    """(schema, name) of the JSON the caller asked for, or (None, name) for free text.

    ``request.json_schema`` (the typed field Test Connection and generation set) wins over a
    ``response_format`` parameter; ``json_object`` asks for any JSON object.
    """
    if request.json_schema is not None:
        return request.json_schema, request.json_schema_name
    fmt = given_params(request).get("response_format")
    if fmt is None:
        return None, request.json_schema_name
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None, request.json_schema_name
    if kind == "json_object":
        return dict(_ANY_OBJECT), DEFAULT_SCHEMA_NAME
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema", _ANY_OBJECT) if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format json_schema needs a json_schema object whose "
                                 "schema is a JSON Schema object", field="response_format")
        name = spec.get("name") if isinstance(spec.get("name"), str) else None  # type: ignore[union-attr]
        return schema or dict(_ANY_OBJECT), name or DEFAULT_SCHEMA_NAME
    raise InvalidRequest("response_format must be {'type': 'text'}, {'type': 'json_object'} or "
                         "{'type': 'json_schema', 'json_schema': {...}}", field="response_format")
