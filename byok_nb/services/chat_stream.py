"""Streamed answers: ``chat(..., stream=True)`` and ``await achat(..., stream=True)``.

A stream is opened before it is handed over — the request is sent and its first chunk read, with
transient failures retried like any call — so a refusal is raised by ``chat`` itself, never by
the first ``next()``. The caller then iterates :class:`ChatChunk` s, in the OpenAI SDK's shape:
``.delta`` (text, ``""`` when none), ``.tool_calls`` (OpenAI delta dicts, or None) and ``.usage``
(None on every chunk but the last, which carries the totals when the provider reports them). To
know which chunk is the last, the stream reads one chunk ahead.

Usage is recorded exactly once per stream, whichever comes first: the last chunk is handed over,
the provider fails mid-way, the caller closes the stream (``close()`` / ``aclose()``, ``with`` /
``async with``), or the stream is garbage-collected unfinished. A stream stopped before the
provider reported its usage is recorded with its usage unknown (counted, cost unknown) — never
left out.
"""
from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..core.clean_errors import forget_secrets
from ..providers.base import StreamChunk, plausible_token_count
from ..providers.inline_reasoning import ThinkSplitter
from ..providers.retry import acall_with_retries, call_with_retries
from .call_cache import resolve
from .call_usage import call_cost, usage_row
from .calls import Call, bind, failed, target_of, within

__all__ = ["AsyncChatStream", "ChatChunk", "ChatStream", "ChatUsage", "aopen_stream", "open_stream"]

_END: Any = object()   # the inner iterator is exhausted


@dataclass(frozen=True)
class ChatUsage:
    """A streamed call's token totals, as the provider reported them."""

    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __getitem__(self, name: str) -> int:   # usage["input_tokens"], as from a dict
        if name not in ("input_tokens", "output_tokens", "total_tokens"):
            raise KeyError(name)
        return int(getattr(self, name))


@dataclass(frozen=True)
class ChatChunk:
    """One piece of a streamed answer."""

    delta: str = ""                                  # text, "" when none
    tool_calls: list[dict[str, Any]] | None = None   # OpenAI delta shape, or None
    usage: ChatUsage | None = None                   # only on the last chunk, when reported
    reasoning: str = ""                              # reasoning text, when the provider streams it
    finish_reason: str | None = None


class _Tally:
    """What one stream has seen, and the one recording of it (thread-safe: a garbage collection
    may finish a stream from any thread)."""

    def __init__(self, call: Call, started: float, attempts: int) -> None:
        self.call = call
        self.started = started
        self.attempts = attempts
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.request_id: str | None = None
        self.recorded = False
        self._lock = threading.Lock()
        self._think = ThinkSplitter() if call.splits_think else None

    def see(self, chunk: StreamChunk) -> None:
        if chunk.request_id and self.request_id is None:
            self.request_id = chunk.request_id
        if chunk.input_tokens is not None:
            self.input_tokens = chunk.input_tokens
        if chunk.output_tokens is not None:
            self.output_tokens = chunk.output_tokens

    @property
    def usage(self) -> ChatUsage | None:
        if plausible_token_count(self.input_tokens) and plausible_token_count(self.output_tokens):
            return ChatUsage(self.input_tokens, self.output_tokens)   # type: ignore[arg-type]
        return None

    def _claim(self) -> bool:
        with self._lock:
            if self.recorded:
                return False
            self.recorded = True
            return True

    def finish(self) -> None:
        """Record the call as answered: its totals, or its usage unknown when none came."""
        if not self._claim():
            return
        usage = self.usage
        row = usage_row(self.call.base_row(), ok=True, latency_ms=(time.perf_counter() - self.started) * 1000,
                        attempts=self.attempts, input_tokens=usage.input_tokens if usage else None,
                        output_tokens=usage.output_tokens if usage else None, usage_unknown=usage is None)
        self.call.record(self.call.ctx, row)

    def fail(self, exc: BaseException) -> BaseException:
        """Record the call as failed mid-way (tokens were spent: usage unknown); the error to raise."""
        if not self._claim():
            return exc
        return failed(self.call, exc, self.attempts, self.started, usage_unknown=True)

    def chunk(self, raw: StreamChunk, last: bool) -> ChatChunk:
        delta, reasoning = raw.delta or "", raw.reasoning or ""
        if self._think is not None:   # an inline <think> block goes to .reasoning, as in chat()
            thought, delta = self._think.feed(delta)
            if last:
                more_thought, more_text = self._think.close()
                thought, delta = thought + more_thought, delta + more_text
            reasoning += thought
        return ChatChunk(delta=delta, tool_calls=raw.tool_calls or None,
                         usage=self.usage if last else None, reasoning=reasoning,
                         finish_reason=raw.finish_reason)


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _StreamBase:
    _tally: _Tally
    _ahead: Any

    @property
    def model(self) -> str:
        """The model reference called."""
        return self._tally.call.model.ref

    @property
    def usage(self) -> ChatUsage | None:
        """The totals the provider reported (known after the last chunk), or None."""
        return self._tally.usage

    @property
    def cost_usd(self) -> Decimal | None:
        """What the call cost, from the reported totals and the model's prices: None while the
        totals are unknown or when the model is unpriced (never 0 for unknown)."""
        usage = self._tally.usage
        if usage is None:
            return None
        model = self._tally.call.model
        return call_cost(usage.input_tokens, usage.output_tokens, model.input_cost_per_token,
                         model.output_cost_per_token)

    @property
    def request_id(self) -> str | None:
        """The provider's id for the call, when it sent one."""
        return self._tally.request_id

    @property
    def attempts(self) -> int:
        """Provider calls made to open the stream, retries included."""
        return self._tally.attempts

    def _step(self, current: Any, following: Any) -> ChatChunk:
        """The chunk to hand over, given the one read ahead of it."""
        if isinstance(following, _Failed):
            following = _Failed(self._tally.fail(following.error))
        self._ahead = following
        last = following is _END
        out = self._tally.chunk(current, last)
        if last:
            self._tally.finish()
        return out

    def _raise_ahead(self) -> None:
        ahead = self._ahead
        if ahead is _END:
            self._tally.finish()   # a stream that sent nothing
            raise StopIteration
        if isinstance(ahead, _Failed):
            self._ahead = _END
            forget_secrets(ahead.error)
            raise ahead.error

    def __repr__(self) -> str:
        state = "finished" if self._tally.recorded else "open"
        return f"{type(self).__name__}(model={self.model!r}, {state})"


class ChatStream(_StreamBase, Iterator[ChatChunk]):
    """A streamed answer: iterate it for :class:`ChatChunk` s; ``close()`` (or ``with``) stops it
    early and closes the connection. Usage is recorded once, however it ends."""

    def __init__(self, tally: _Tally, inner: Iterator[StreamChunk], first: Any) -> None:
        self._tally = tally
        self._inner = inner
        self._ahead = first

    def __iter__(self) -> "ChatStream":
        return self

    def __next__(self) -> ChatChunk:
        try:
            self._raise_ahead()
        except StopIteration:
            raise StopIteration from None
        current = self._ahead
        following: Any
        try:
            following = next(self._inner)
            self._tally.see(following)
        except StopIteration:
            following = _END
        except BaseException as exc:   # handed over after ``current``, on the next call
            following = _Failed(exc)
        return self._step(current, following)

    def close(self) -> None:
        """Stop reading: the connection is closed and the call recorded (with what it used, or
        its usage unknown) if it was not yet."""
        self._ahead = _END
        inner = self.__dict__.get("_inner")
        try:
            if inner is not None and hasattr(inner, "close"):
                inner.close()
        finally:
            self._tally.finish()

    def __enter__(self) -> "ChatStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if "_tally" not in self.__dict__ or self._tally.recorded:
            return
        try:
            self.close()
        except Exception:   # noqa: BLE001 — a finalizer has no caller to tell (store gone at exit)
            pass


class AsyncChatStream(_StreamBase, AsyncIterator[ChatChunk]):
    """The async twin of :class:`ChatStream`: ``async for chunk in stream``; ``await
    stream.aclose()`` (or ``async with``) stops it early."""

    def __init__(self, tally: _Tally, inner: AsyncIterator[StreamChunk], first: Any) -> None:
        self._tally = tally
        self._inner = inner
        self._ahead = first

    def __aiter__(self) -> "AsyncChatStream":
        return self

    async def __anext__(self) -> ChatChunk:
        try:
            self._raise_ahead()
        except StopIteration:
            raise StopAsyncIteration from None
        current = self._ahead
        following: Any
        try:
            following = await self._inner.__anext__()
            self._tally.see(following)
        except StopAsyncIteration:
            following = _END
        except BaseException as exc:
            following = _Failed(exc)
        return self._step(current, following)

    async def aclose(self) -> None:
        """Stop reading: the connection is closed and the call recorded if it was not yet."""
        self._ahead = _END
        inner = self.__dict__.get("_inner")
        try:
            if inner is not None and hasattr(inner, "aclose"):
                await inner.aclose()
        finally:
            self._tally.finish()

    async def __aenter__(self) -> "AsyncChatStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # The inner async generator is closed by the event loop's finalizer; the recording
        # cannot wait for that.
        if "_tally" not in self.__dict__ or self._tally.recorded:
            return
        try:
            self._tally.finish()
        except Exception:   # noqa: BLE001 — a finalizer has no caller to tell
            pass


# -- opening ---------------------------------------------------------------------------------------

def _tally_from(call: Call, started: float, attempts: int, first: Any) -> "_Tally":
    """The tally of a stream that opened after ``attempts`` tries, counting its first chunk."""
    tally = _Tally(call, started, attempts)
    if first is not _END:
        tally.see(first)
    return tally


def open_stream(call: Call) -> ChatStream:
    """Send ``call`` as a stream and read its first chunk, retrying transient failures within the
    deadline; a failure that ends the retries is recorded and raised."""
    started = time.perf_counter()
    attempts = 0
    try:
        adapter, request = bind(call)

        def attempt() -> tuple[Iterator[StreamChunk], Any]:
            nonlocal attempts
            attempts += 1
            inner = adapter.stream(request)
            try:
                return inner, next(inner)
            except StopIteration:
                return inner, _END
            except BaseException:
                inner.close()
                raise

        (inner, first), _ = call_with_retries(attempt, call.policy, call.deadline)
    except BaseException as exc:
        error = failed(call, exc, attempts, started)
        if error is exc:
            raise
        raise error from None
    return ChatStream(_tally_from(call, started, attempts, first), inner, first)


async def aopen_stream(call: Call) -> AsyncChatStream:
    """:func:`open_stream` on the async client."""
    started = time.perf_counter()
    attempts = 0
    try:
        target = await resolve(lambda: target_of(call))   # from memory, or read in a thread
        adapter, request = bind(call, target)

        async def attempt() -> tuple[AsyncIterator[StreamChunk], Any]:
            nonlocal attempts
            attempts += 1
            inner = adapter.astream(request)
            try:
                return inner, await within(inner.__anext__(), call.deadline)
            except StopAsyncIteration:
                return inner, _END
            except BaseException:
                await inner.aclose()
                raise

        (inner, first), _ = await acall_with_retries(attempt, call.policy, call.deadline)
    except BaseException as exc:
        error = failed(call, exc, attempts, started)
        if error is exc:
            raise
        raise error from None
    return AsyncChatStream(_tally_from(call, started, attempts, first), inner, first)
