"""Generate with a workflow field's model.

``generate(ctx, workflow, field, messages)`` looks up the field's model reference and routes
the call: platform models through OpenRouter with the operator's key, custom models straight to
their provider with the model's decrypted credentials. It applies the model's ``max_tokens``, the
field's structured output (native ``json_schema`` — the model must support JSON mode), its tool
bindings, images (the model must support vision) and its reasoning setting, translated by
:func:`~byok_nb.providers.reasoning.canonical_reasoning`.

The call itself — credentials, retries of transient failures within the registry timeout, the one
usage row (with the calling user), the cost — is :mod:`.calls`', shared with ``chat`` and the
gateway. Every call that reaches the point of calling a provider records exactly one usage row,
whether it succeeds or fails (a provider error, a transport error, an egress refusal,
undecryptable credentials); the error is then re-raised. When the store cannot take the row once
the provider has answered, the completion is still returned and the row goes to the durable local
usage spool (see :mod:`.call_usage`). Calls refused before that — an unknown workflow or
field, a deleted model, bad options — record nothing: no model was called.

>>> s.generate("triage", "classify", "Which team owns this ticket?")            # doctest: +SKIP
Completion(text='search', ...)
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..core.domain import Completion
from ..core.errors import Conflict, InvalidRequest
from ..providers.base import ChatRequest
from ..providers.messages import has_images, normalize_messages
from ..providers.reasoning import canonical_reasoning
from ..providers.retry import RetryPolicy
from ..store import read_tx
from . import workflows
from .access import require_member
from .calls import Call, deleted_model_message, run
from .context import Context

__all__ = ["GENERATE_OPTIONS", "generate"]

GENERATE_OPTIONS = ("images", "tool_choice", "max_tokens")
# structured_output=True (no schema given) asks for any JSON object.
ANY_JSON_OBJECT: dict[str, Any] = {"type": "object"}
JSON_INSTRUCTION = "Respond with a single JSON object and nothing else."


def generate(ctx: Context, workflow: Any, field: str, messages: Any, **options: Any) -> Completion:
    """Call the model of ``field`` in ``workflow`` and return a :class:`Completion`.

    ``messages`` is a prompt string or OpenAI-style message dicts (content a string or parts;
    image parts may be data URLs or bytes). Options: ``images`` (a list of image bytes / data URLs
    added to the last user message), ``tool_choice`` (OpenAI form, with the field's tools) and
    ``max_tokens`` (a lower cap for this call; default the model's Max Tokens).

    Raises ``Conflict`` when the field's model is deleted or unknown, ``InvalidRequest`` when
    the model lacks a capability the field or the messages need, and ``ProviderError`` when the
    provider fails (after recording the failed call).
    """
    require_member(ctx)
    opts = _check_options(options)
    with read_tx(ctx.engine) as conn:
        wf, f = workflows.resolve_field(ctx, conn, workflow, field)
        ref = f.model
        if not ref:
            raise InvalidRequest(f"field '{f.name}' of workflow '{wf.name}' has no model; assign one "
                                 f"with assign_model")
        model = workflows.lookup_model(ctx, ref, conn)
    if model is None or not model.active:
        raise Conflict(deleted_model_message(ref, f.name))
    missing = workflows.missing_capabilities(f, model)
    if missing:
        flags = ", ".join(f"{flag} ({workflows.CAPABILITY_LABELS[flag]}: {why})" for flag, why in missing)
        raise InvalidRequest(f"model '{ref}' cannot serve field '{f.name}' any more: it lacks {flags}; "
                             f"its flags changed after it was assigned — assign another model")
    msgs = normalize_messages(_with_images(messages, opts.get("images")))
    if has_images(msgs) and not model.supports_vision:
        raise InvalidRequest(f"model '{ref}' does not take images (supports_vision is off); remove the "
                             f"images or assign a vision model to field '{f.name}'")
    max_tokens = opts.get("max_tokens", model.max_tokens)
    schema = None
    if f.structured_output is not False:
        schema = f.structured_output if isinstance(f.structured_output, dict) else ANY_JSON_OBJECT
        if f.structured_output is True:
            msgs = [{"role": "system", "content": JSON_INSTRUCTION}, *msgs]
    reasoning = canonical_reasoning(model.supports_reasoning, model.reasoning_parameter, model.max_tokens,
                                    f.reasoning_budget, f.reasoning_effort)
    call = Call(ctx=ctx, model=model, policy=RetryPolicy(), deadline=time.monotonic() + ctx.backend.timeout,
                request=ChatRequest(model="", messages=msgs, max_tokens=max_tokens, json_schema=schema,
                                    json_schema_name=f.name, tools=[dict(t) for t in f.tools],
                                    tool_choice=opts.get("tool_choice"), reasoning=reasoning),
                parse_json=schema is not None,
                names={"project": wf.project, "workflow": wf.name, "field": f.name},
                workflow_field=f.name)
    return run(call)


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(GENERATE_OPTIONS))
    if unknown:
        raise InvalidRequest(f"unknown generate option(s) {', '.join(unknown)}; the options are "
                             f"{', '.join(GENERATE_OPTIONS)}")
    out = {k: v for k, v in options.items() if v is not None}
    if "max_tokens" in out:
        value = out["max_tokens"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequest(f"max_tokens must be an integer >= 1, got {value!r}")
    if "images" in out:
        images = out["images"]
        if isinstance(images, (bytes, bytearray, str, Mapping)):
            out["images"] = [images]
        elif not isinstance(images, (list, tuple)):
            raise InvalidRequest("images is a list of image bytes or data URLs")
    return out


def _with_images(messages: Any, images: list[Any] | None) -> Any:
    """``messages`` with ``images`` appended to the last user message as image parts."""
    if not images:
        return messages
    parts = []
    for image in images:
        if isinstance(image, (bytes, bytearray)):
            parts.append(bytes(image))
        elif isinstance(image, str):
            parts.append({"type": "image_url", "image_url": {"url": image}})
        elif isinstance(image, Mapping):
            parts.append(dict(image))
        else:
            raise InvalidRequest(f"an image is bytes or a data URL, not {type(image).__name__}")
    msgs = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages or [])
    for i in range(len(msgs) - 1, -1, -1):
        m = msgs[i]
        if isinstance(m, Mapping) and m.get("role") == "user":
            content = m.get("content")
            content = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
            msgs[i] = {**m, "content": content + parts}
            return msgs
    return msgs + [{"role": "user", "content": parts}]
