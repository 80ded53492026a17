"""OpenAI chat parameters for the OpenAI-shaped vendors (their columns of the table in
docs/providers.md): which pass as they are, which are translated, which are refused.

* ``temperature``, ``top_p``, ``stop``, ``seed``, ``frequency_penalty``, ``presence_penalty``
  pass as they are — except ``top_p`` 1 on a TGI endpoint, which is left out: TGI refuses
  ``top_p >= 1`` while 1 means "no nucleus filtering", which is what leaving it out asks for.
* ``response_format`` is translated the way Test Connection's JSON mode is (:func:`native_response_format`): ``json_schema`` gets a safe ``name`` and ``strict``; on a TGI endpoint both
  ``json_schema`` and ``json_object`` become TGI's ``{"type": "json", "value": schema}``, and a
  combination with ``tools`` (which TGI refuses) is refused here. ``{"type": "text"}`` is the
  default and is left out.
* ``n`` 1 is the default and is left out; everything else is refused before any I/O with an
  ``InvalidRequest`` naming the parameter and the provider: a parameter dropped silently would
  change what the caller asked for, and one we pass blindly would be answered in a shape this
  layer does not read (``n`` > 1, ``logprobs``).

The typed fields of :class:`ChatRequest` (``max_tokens``, ``tools``, ``tool_choice``,
``reasoning``, ``json_schema``) are not parameters here; ``json_schema`` wins over a
``response_format`` parameter, as on Bedrock. A parameter given as ``None`` counts as not given
(the OpenAI SDK's way of leaving one out).
"""
from __future__ import annotations

import math
import re
from typing import Any

from ..core.errors import InvalidRequest
from .base import ChatRequest

PASSED_NUMBERS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
PASSED = frozenset({*PASSED_NUMBERS, "stop", "seed"})
HANDLED = frozenset({*PASSED, "response_format", "n"})
# Where a caller's habit is a typed field of the request, the refusal says so.
USE_INSTEAD = {
    "reasoning_effort": "pass reasoning={'effort': ...} instead",
    "max_completion_tokens": "pass max_tokens instead",
    "stream": "call stream() instead",
    "stream_options": "streamed calls always ask for usage",
}
ANY_OBJECT: dict[str, Any] = {"type": "object"}
_SCHEMA_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def schema_name(name: str | None) -> str:
    """A ``json_schema.name`` the providers accept: ``[A-Za-z0-9_-]{1,64}``."""
    cleaned = _SCHEMA_NAME_UNSAFE.sub("_", name or "")[:64]
    return cleaned or "response"


def native_response_format(json_form: str, schema: dict[str, Any], name: str | None) -> dict[str, Any]:
    """The ``response_format`` for native structured output in a vendor's form: ``tgi``
    (``{"type": "json", "value": schema}``) or OpenAI's ``json_schema``."""
    if json_form == "tgi":
        return {"type": "json", "value": schema}
    return {"type": "json_schema",
            "json_schema": {"name": schema_name(name), "schema": schema, "strict": True}}


def unsupported(name: str, label: str, hint: str | None = None) -> InvalidRequest:
    tail = f"; {hint}" if hint else ""
    return InvalidRequest(f"{name} is not supported by {label}{tail}", field=name)


def translate_params(label: str, json_form: str, request: ChatRequest) -> dict[str, Any]:
    """The body fields for ``request.params`` on the vendor named ``label`` whose native JSON
    takes ``json_form``; ``InvalidRequest`` for a parameter it does not take or a value of the
    wrong type (before any I/O)."""
    params = {name: value for name, value in (request.params or {}).items() if value is not None}
    for name in sorted(params):
        if name not in HANDLED:
            raise unsupported(name, label, USE_INSTEAD.get(name))
    tgi = json_form == "tgi"
    fields: dict[str, Any] = {}
    for name in PASSED_NUMBERS:
        if name in params:
            fields[name] = _number(name, params[name])
    if tgi and fields.get("top_p") == 1:
        del fields["top_p"]
    if "stop" in params:
        fields["stop"] = _stop(params["stop"])
    if "seed" in params:
        seed = params["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidRequest(f"seed must be a whole number, not {seed!r}", field="seed")
        fields["seed"] = seed
    if "n" in params and params["n"] != 1:
        raise unsupported("n", label, "only one choice per call (n=1) is read")
    if "response_format" in params and request.json_schema is None:
        kind, schema, name, strict = json_request(params["response_format"])
        if kind != "text":
            if tgi and request.tools:
                raise InvalidRequest(f"response_format cannot be combined with tools on "
                                     f"{label} (TGI refuses grammar and tools together)",
                                     field="response_format")
            if kind == "json_object" and not tgi:
                fmt = {"type": "json_object"}   # every OpenAI-shaped vendor takes it as it is
            else:
                fmt = native_response_format(json_form, schema, name)
            if strict is not None and "json_schema" in fmt:
                fmt["json_schema"]["strict"] = strict
            fields["response_format"] = fmt
    return fields


def json_request(fmt: Any) -> tuple[str, dict[str, Any], str | None, bool | None]:
    """(kind, schema, name, strict) of a ``response_format`` parameter; a ``json_object`` asks
    for any object; ``InvalidRequest`` for another shape."""
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return kind, {}, None, None
    if kind == "json_object":
        return kind, dict(ANY_OBJECT), None, None
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema", {}) if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format json_schema needs a json_schema object whose "
                                 "schema is a JSON Schema object", field="response_format")
        name = spec.get("name") if isinstance(spec.get("name"), str) else None  # type: ignore[union-attr]
        strict = spec.get("strict") if isinstance(spec.get("strict"), bool) else None  # type: ignore[union-attr]
        return kind, schema or dict(ANY_OBJECT), name, strict
    raise InvalidRequest("response_format must be {'type': 'text'}, {'type': 'json_object'} or "
                         "{'type': 'json_schema', 'json_schema': {...}}", field="response_format")


def _number(name: str, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest(f"{name} must be a number, not {value!r}", field=name)
    return value


def _stop(stop: Any) -> list[str]:
    sequences = [stop] if isinstance(stop, str) else stop
    if not isinstance(sequences, list) or not sequences \
            or not all(isinstance(s, str) and s for s in sequences):
        raise InvalidRequest("stop must be a non-empty string or a list of them", field="stop")
    return list(sequences)
