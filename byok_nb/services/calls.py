"""Running one model call: the part every caller shares (``chat``, ``achat``, ``generate``, the
gateway). A :class:`Call` is built by a caller that has checked what was asked; here the
credentials are decrypted inside the call, transient provider failures are retried within one
total deadline (:mod:`byok_nb.providers.retry`), exactly one usage row is recorded through the
call's recorder, and the answer becomes a :class:`~byok_nb.core.domain.Completion` priced exactly.
Streams are :mod:`.chat_stream`'s.

Provider messages reach the caller already scrubbed by the adapters; the completion text is not
scanned for secrets (a provider does not know the key it was called with, and scanning every
answer would cost more than the rest of the call).
"""
from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..core.domain import Completion
from ..core.errors import Conflict, NotFound
from ..core.secrets import UnreadableSecret
from ..providers.base import ChatRequest, ChatResult, Target
from ..providers.inline_reasoning import split_think
from ..providers.retry import (
    RetryPolicy,
    acall_with_retries,
    call_with_retries,
    deadline_exceeded,
)
from ..providers.transport import loads_bounded
from . import models
from .call_cache import resolve
from .call_usage import Recorder, call_cost, record_usage, usage_row
from .context import Context
from .workflows import ModelInfo

__all__ = ["Call", "abind", "arun", "bind", "completed", "deleted_model_message", "failed", "parse_json", "run",
           "target_of", "within"]

T = TypeVar("T")

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def deleted_model_message(ref: str, field: str) -> str:
    """The message for a field whose model is deleted or unknown."""
    return f"model '{ref}' is deleted; assign another model to field '{field}'"


@dataclass
class Call:
    """One call, checked and ready to send: the model, the request (its provider model id is
    filled in when the credentials are decrypted), the usage row's names and how to retry."""

    ctx: Context
    model: ModelInfo
    request: ChatRequest
    policy: RetryPolicy
    deadline: float | None
    record: Recorder = record_usage
    parse_json: bool = False          # fill Completion.json from the answer
    names: dict[str, Any] = field(default_factory=dict)   # project / workflow / field of the row
    workflow_field: str | None = None  # set by generate: a model deleted mid-call is a Conflict there

    @property
    def splits_think(self) -> bool:
        """Whether a leading ``<think>`` block of the answer is moved to its reasoning here: the
        model reasons (its flag is on) but this call set no reasoning, so the adapter, which
        moves it for calls that ask for reasoning, leaves it in the text."""
        return self.model.supports_reasoning and not self.request.reasoning

    def base_row(self) -> dict[str, Any]:
        m = self.model
        return {"org": self.ctx.org, "user": self.ctx.user, **self.names, "model": m.ref,
                "model_type": m.type, "provider": m.provider,
                "input_cost_per_token": m.input_cost_per_token,
                "output_cost_per_token": m.output_cost_per_token}


# -- running a call --------------------------------------------------------------------------------
def bind(call: Call, target: Target | None = None) -> "tuple[Any, ChatRequest]":
    """(adapter, request) for ``call``: its target (``target_of(call)``, credentials decrypted
    now, unless the caller already has it)."""
    if target is None:
        target = target_of(call)
    adapter = call.ctx.providers.adapter(target)
    request = copy.copy(call.request)   # a shallow copy: dataclasses.replace re-runs __init__
    request.model = target.provider_model_id
    return adapter, request


def target_of(call: Call) -> Target:
    """Where ``call`` goes, with its credentials: a custom model's stored target, or OpenRouter."""
    model = call.model
    if model.type == "custom":
        _, target = models.call_target(call.ctx, model.ref)
        return target
    return Target(provider="openrouter", provider_model_id=model.ref)


async def abind(call: Call) -> "tuple[Any, ChatRequest]":
    """:func:`bind` on the event loop: the target comes from the context's view, or is read in a
    thread (call_cache.resolve), never from the store on the loop."""
    target = await resolve(lambda: target_of(call))
    return bind(call, target)


def failed(call: Call, exc: BaseException, attempts: int, started: float, *,
           usage_unknown: bool = False) -> BaseException:
    """Record a failed call; the exception to raise (the error reworded where the model is the
    news: deleted since the look-up, or credentials unreadable)."""
    row = usage_row(call.base_row(), ok=False, latency_ms=(time.perf_counter() - started) * 1000,
                    attempts=attempts, usage_unknown=usage_unknown, error=exc)
    call.record(call.ctx, row)
    ref = call.model.ref
    if isinstance(exc, NotFound) and call.model.type == "custom":
        if call.workflow_field is not None:
            return Conflict(deleted_model_message(ref, call.workflow_field))
        return NotFound(f"model '{ref}' is deleted in org '{call.ctx.org}'")
    if isinstance(exc, UnreadableSecret):   # name the model whose credentials are bad
        return UnreadableSecret(f"model '{ref}': {exc.message}")
    return exc


def completed(call: Call, result: ChatResult, attempts: int, started: float) -> Completion:
    """Record a successful call and make its :class:`Completion`."""
    latency_ms = result.latency_ms or (time.perf_counter() - started) * 1000
    call.record(call.ctx, usage_row(call.base_row(), ok=True, latency_ms=latency_ms, attempts=attempts,
                                    input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                                    usage_unknown=result.usage_unknown))
    m = call.model
    if call.splits_think:
        thought, text = split_think(result.text)
        if thought or text != result.text:
            result = result.replace(text=text, reasoning_text="\n\n".join(
                part for part in (result.reasoning_text, thought) if part))
    return Completion(text=result.text, json=parse_json(result.text) if call.parse_json else None,
                      tool_calls=list(result.tool_calls), input_tokens=result.input_tokens,
                      output_tokens=result.output_tokens, latency_ms=latency_ms, model=m.ref,
                      cost_usd=call_cost(result.input_tokens, result.output_tokens,
                                         m.input_cost_per_token, m.output_cost_per_token),
                      request_id=result.request_id, reasoning=result.reasoning_text or None,
                      attempts=attempts)


def run(call: Call) -> Completion:
    """Send ``call`` (retrying transient failures within its deadline) and record it once."""
    started = time.perf_counter()
    attempts = 0
    try:
        adapter, request = bind(call)

        def attempt() -> ChatResult:
            nonlocal attempts
            attempts += 1
            answer: ChatResult = adapter.chat(request)
            return answer

        result, _ = call_with_retries(attempt, call.policy, call.deadline)
    except BaseException as exc:
        error = failed(call, exc, attempts, started)
        if error is exc:
            raise
        raise error from None
    return completed(call, result, attempts, started)


async def arun(call: Call) -> Completion:
    """:func:`run` on the async client."""
    started = time.perf_counter()
    attempts = 0
    try:
        adapter, request = await abind(call)

        async def attempt() -> ChatResult:
            nonlocal attempts
            attempts += 1
            answer: ChatResult = await within(adapter.achat(request), call.deadline)
            return answer

        result, _ = await acall_with_retries(attempt, call.policy, call.deadline)
    except BaseException as exc:
        error = failed(call, exc, attempts, started)
        if error is exc:
            raise
        raise error from None
    return completed(call, result, attempts, started)


async def within(awaitable: Awaitable[T], deadline: float | None) -> T:
    """``await awaitable``, cancelled at ``deadline`` (a ``time.monotonic()`` value): on the async
    path the deadline bounds each attempt too, not only the waits between them (on the sync path
    the transport bounds each HTTP operation of an attempt by it, see ``retry.attempt_deadline``)."""
    if deadline is None:
        return await awaitable
    try:
        # asyncio.timeout, not wait_for: no task of its own per attempt (wait_for makes one).
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            return await awaitable
    except TimeoutError:
        raise deadline_exceeded() from None


def parse_json(text: str) -> Any:
    """The reply parsed as JSON (a fenced ```json block is unwrapped), or None when it is not JSON."""
    candidate = text or ""
    fenced = _FENCE.match(candidate)
    if fenced:
        candidate = fenced.group(1)
    try:
        return loads_bounded(candidate)   # a reply nested too deeply counts as not JSON
    except ValueError:
        return None
