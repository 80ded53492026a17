"""Calling a registered model directly: ``chat(ctx, model, messages, **params)`` with a custom
model's slug or a platform model's id and the OpenAI chat parameters.

This module checks what was asked (parameter names and values, the model's limits and capability
flags) and builds a :class:`~byok_nb.services.calls.Call`; running it — retries, recording,
pricing — is :mod:`.calls`' (shared with ``generate`` and the gateway), streaming is
:mod:`.chat_stream`'s.

>>> s.chat("ft-llama", "Which team owns this ticket?", temperature=0).text    # doctest: +SKIP
'search'
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from ..core.domain import Completion
from ..core.errors import InvalidRequest, NotFound
from ..core.suggest import did_you_mean
from ..providers.base import ChatRequest
from ..providers.messages import has_images, normalize_messages
from ..providers.reasoning import canonical_reasoning
from ..providers.retry import RetryPolicy
from . import workflows
from .access import require_member
from .call_cache import resolve
from .call_usage import Recorder, record_usage
from .calls import Call, arun, run
from .chat_stream import AsyncChatStream, ChatStream, aopen_stream, open_stream
from .context import Context
from .workflows import ModelInfo

__all__ = ["CHAT_PARAMS", "AsyncChatStream", "ChatStream", "achat", "chat", "prepare_chat"]

# The OpenAI chat parameters a call takes (which providers pass, translate or refuse each one is
# the table in docs/providers.md; the adapters follow it).
CHAT_PARAMS = ("temperature", "top_p", "max_tokens", "stop", "seed", "response_format", "tools",
               "tool_choice", "reasoning")
# What other tools call them.
PARAM_ALIASES = {
    "max_completion_tokens": "max_tokens", "max_output_tokens": "max_tokens", "max_new_tokens": "max_tokens",
    "functions": "tools", "function_call": "tool_choice", "reasoning_effort": "reasoning",
    "thinking": "reasoning", "json_schema": "response_format", "stop_sequences": "stop",
    "temp": "temperature",
}
# Parameters the adapters translate per provider (ChatRequest.params).
_PROVIDER_PARAMS = ("temperature", "top_p", "stop", "seed", "response_format")
_JSON_FORMATS = ("json_object", "json_schema")
_EFFORTS = ("low", "medium", "high")
MAX_RETRIES = 10


# -- public entry points ---------------------------------------------------------------------------
def chat(ctx: Context, model: str, messages: Any, *, stream: bool = False, max_retries: int = 2,
         timeout: float | None = None, record: Recorder | None = None,
         **params: Any) -> "Completion | ChatStream":
    """Call ``model`` (a custom slug or a platform id) with ``messages`` (a prompt string or
    OpenAI-style message dicts) and the OpenAI chat ``params``; a :class:`Completion`, or with
    ``stream=True`` a :class:`ChatStream` of chunks (opened before it is returned, so a refusal
    is raised here). See :func:`prepare_chat` for the checks."""
    call = prepare_chat(ctx, model, messages, max_retries=max_retries, timeout=timeout, record=record,
                        params=params, stream=stream)
    return open_stream(call) if stream else run(call)


async def achat(ctx: Context, model: str, messages: Any, *, stream: bool = False, max_retries: int = 2,
                timeout: float | None = None, record: Recorder | None = None,
                **params: Any) -> "Completion | AsyncChatStream":
    """:func:`chat` on the provider hub's async client: a :class:`Completion`, or with
    ``stream=True`` an :class:`AsyncChatStream` (an async iterator of chunks)."""
    # With a server's view, what the checks read comes from memory, or from a thread: never
    # from the store on the event loop (call_cache.resolve).
    call = await resolve(lambda: prepare_chat(ctx, model, messages, max_retries=max_retries, timeout=timeout,
                                              record=record, params=params, stream=stream))
    return await aopen_stream(call) if stream else await arun(call)


# -- checking a direct call ------------------------------------------------------------------------
def prepare_chat(ctx: Context, ref: str, messages: Any, *, max_retries: int, timeout: float | None,
                 record: Recorder | None, params: Mapping[str, Any], stream: bool = False) -> Call:
    """The :class:`Call` for a direct call, or the refusal: ``InvalidRequest`` for an unknown
    parameter (with the likely one it meant), a bad value, ``max_tokens`` above the model's limit,
    or a capability the model's flags say it lacks (images without vision, tools without tool
    use, JSON output without JSON mode, reasoning without reasoning); ``NotFound`` for a
    reference that names no model of the org (or a deleted one). Any member may call."""
    require_member(ctx)
    if not isinstance(stream, bool):
        raise InvalidRequest(f"stream must be True or False, not {stream!r}")
    policy = RetryPolicy(max_retries=_check_retries(max_retries))
    seconds = _check_timeout(timeout, ctx.backend.timeout)
    given = _check_names(params)
    info = workflows.lookup_model(ctx, ref) if isinstance(ref, str) else None
    if info is None or not info.active:
        state = "is deleted" if info is not None else "is neither a platform model id nor a custom model slug"
        hint = did_you_mean(ref, workflows.model_refs(ctx)) if info is None else ""
        raise NotFound(f"model {ref!r} {state} in org {ctx.org!r}{hint}")
    msgs = normalize_messages(messages)
    if has_images(msgs) and not info.supports_vision:
        raise InvalidRequest(f"model '{info.ref}' does not take images (supports_vision is off)")
    request = _request(info, msgs, given)
    return Call(ctx=ctx, model=info, request=request, policy=policy,
                deadline=time.monotonic() + seconds, record=record or record_usage,
                parse_json=_asks_json(given.get("response_format")))


def _check_names(params: Mapping[str, Any]) -> dict[str, Any]:
    """The given parameters, None meaning not given (the OpenAI SDK's way of leaving one out)."""
    for name in params:
        if name not in CHAT_PARAMS:
            raise InvalidRequest(f"unknown chat parameter {name!r}{did_you_mean(name, CHAT_PARAMS, PARAM_ALIASES)}; "
                                 f"the parameters are {', '.join(CHAT_PARAMS)}", field=name)
    return {k: v for k, v in params.items() if v is not None}


def _request(info: ModelInfo, msgs: list[dict[str, Any]], given: dict[str, Any]) -> ChatRequest:
    ref = info.ref
    max_tokens = given.get("max_tokens", info.max_tokens)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest(f"max_tokens must be a whole number >= 1, got {max_tokens!r}", field="max_tokens")
    if max_tokens > info.max_tokens:
        raise InvalidRequest(f"max_tokens {max_tokens} is above model '{ref}''s limit of {info.max_tokens} "
                             f"(its Max Tokens)", field="max_tokens")
    tools = given.get("tools") or []
    if not isinstance(tools, (list, tuple)) or not all(isinstance(t, Mapping) for t in tools):
        raise InvalidRequest("tools must be a list of tool definitions (OpenAI form)", field="tools")
    choice = given.get("tool_choice")
    if (tools or (choice is not None and choice != "none")) and not info.supports_tool_use:
        raise InvalidRequest(f"model '{ref}' does not use tools (supports_tool_use is off); remove tools",
                             field="tools")
    fmt = given.get("response_format")
    if _asks_json(fmt) and not info.supports_json_mode:
        kind = fmt.get("type") if isinstance(fmt, Mapping) else None
        raise InvalidRequest(f"model '{ref}' has no JSON mode (supports_json_mode is off); response_format "
                             f"{kind} needs it", field="response_format")
    reasoning = None
    if "reasoning" in given:
        budget, effort = _check_reasoning(given["reasoning"])
        if not info.supports_reasoning:
            raise InvalidRequest(f"model '{ref}' does not reason (supports_reasoning is off); remove "
                                 f"reasoning", field="reasoning")
        reasoning = canonical_reasoning(True, info.reasoning_parameter, max_tokens, budget, effort)
    return ChatRequest(model="", messages=msgs, max_tokens=max_tokens, tools=[dict(t) for t in tools],
                       tool_choice=choice, reasoning=reasoning,
                       params={k: given[k] for k in _PROVIDER_PARAMS if k in given})


def _asks_json(fmt: Any) -> bool:
    return isinstance(fmt, Mapping) and fmt.get("type") in _JSON_FORMATS


def _check_reasoning(value: Any) -> tuple[int | None, str | None]:
    shape = "reasoning is {'max_tokens': N} or {'effort': 'low' | 'medium' | 'high'}"
    if not isinstance(value, Mapping) or len(value) != 1 or not set(value) <= {"max_tokens", "effort"}:
        raise InvalidRequest(shape, field="reasoning")
    budget, effort = value.get("max_tokens"), value.get("effort")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise InvalidRequest(f"{shape}, with N a whole number >= 1", field="reasoning")
    if "effort" in value and effort not in _EFFORTS:
        raise InvalidRequest(shape, field="reasoning")
    return budget, effort


def _check_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise InvalidRequest(f"max_retries must be a whole number from 0 to {MAX_RETRIES}, got {value!r}")
    return value


def _check_timeout(value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InvalidRequest(f"timeout must be a positive number of seconds (the whole call, retries "
                             f"included), got {value!r}")
    return float(value)


