"""Retrying a provider call that failed for a reason that may pass (connection failure, 429, 5xx).

One policy for every caller (``Session.chat``, ``achat``, the gateway): only a ``ProviderError``
marked ``transient`` is tried again — every other error, and every other 4xx, is raised at once,
since sending the same request again cannot change a refusal. Waits are exponential backoff with
full jitter (a random wait between 0 and ``base * 2**n``, capped), so many callers throttled
together do not come back together; a provider's ``Retry-After`` replaces the jittered wait, up to
``retry_after_cap``. Everything happens inside one total deadline: a wait that would end past it
is not started, and the last error is raised instead.

The deadline bounds each attempt as well as the waits: on the sync path :func:`call_with_retries`
makes it known to the transport for the length of each attempt (:func:`attempt_deadline`), so
every HTTP operation of an attempt ends by the sooner of the provider timeout and the deadline,
and an attempt cut short by the deadline is the 504 :func:`deadline_exceeded` (the async path
cancels the attempt at the deadline instead, ``services.calls.within``). When that attempt was a
retry, the error raised is the provider's answer to the attempt before it: "the provider said 503
three times" tells the caller more than "time ran out", and it does not depend on how fast the
machine was.

``sleep``, ``clock`` and ``rand`` are injectable so tests run without real waits. Reading a
``Retry-After`` value is :mod:`.retry_after`'s job; the headers of a reply are read here.
"""
from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ..core.errors import TRANSIENT_STATUSES, ProviderError
from .retry_after import retry_after_seconds

T = TypeVar("T")

# A socket timeout may wake a hair early: an attempt that failed this close to the deadline ran
# into it.
DEADLINE_SLACK = 0.005
# Two limits this close are one: an attempt bounded by a deadline that comes less than this much
# before its own timeout (``chat()`` without ``timeout`` has a deadline of one provider timeout,
# counted from a few milliseconds earlier) timed out as the provider's call, a 502 that says so.
SAME_LIMIT = 0.25


class _Attempt:
    """The running attempt: its call's total deadline, and whether that cut one of its HTTP
    operations short (it came sooner than the operation's own timeout)."""

    __slots__ = ("cut", "deadline")

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.cut = False


# The attempt running in this context (set by call_with_retries around each attempt).
_attempt: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar("byok_nb_attempt", default=None)


def within_total(own: float | None) -> float | None:
    """``own`` (when an HTTP operation must end, a ``time.monotonic()`` value, or None for
    never), or the running call's total deadline if that comes sooner."""
    attempt = _attempt.get()
    if attempt is None or attempt.deadline is None:
        return own
    if own is not None and attempt.deadline >= own:
        return own
    if own is None or attempt.deadline < own - SAME_LIMIT:
        attempt.cut = True
    return attempt.deadline


def attempt_deadline(timeout: float) -> float:
    """When an HTTP exchange that may take ``timeout`` seconds (the provider timeout) must end:
    that long from now, or the running call's total deadline if it comes sooner."""
    own = time.monotonic() + timeout
    bound = within_total(own)
    return own if bound is None else bound


def is_transient_status(status: int) -> bool:
    """Whether a reply with this HTTP status is worth trying again."""
    return status in TRANSIENT_STATUSES


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to try again and how long to wait between tries (seconds)."""

    max_retries: int = 2          # retries after the first attempt: at most max_retries + 1 calls
    base: float = 0.5             # the first backoff's upper bound; doubled each retry
    cap: float = 8.0              # no jittered backoff waits longer than this
    retry_after_cap: float = 30.0  # a provider's Retry-After is honoured up to this

    def delay(self, retry_index: int, error: ProviderError, rand: Callable[[], float]) -> float:
        """The wait before retry number ``retry_index`` (0 for the first retry)."""
        if error.retry_after is not None:
            return min(max(0.0, error.retry_after), self.retry_after_cap)
        # min() before the power's result can overflow: 2**1100 is fine for int, not for float.
        bound = min(self.cap, self.base * 2 ** min(retry_index, 64))
        return rand() * bound


def deadline_exceeded() -> ProviderError:
    """The error for a call whose deadline passed before any provider answered."""
    error = ProviderError("The call did not complete within its time limit (deadline exceeded).",
                          status_code=504, provider_message="deadline exceeded", transient=False)
    error.deadline = True   # type: ignore[attr-defined]  # see is_deadline
    return error


def is_deadline(error: BaseException) -> bool:
    """Whether ``error`` is :func:`deadline_exceeded`'s (not a provider's own 504)."""
    return getattr(error, "deadline", False) is True


def _next_wait(policy: RetryPolicy, error: ProviderError, retries_done: int, deadline: float | None,
               clock: Callable[[], float], rand: Callable[[], float]) -> float | None:
    """The wait before the next attempt, or ``None`` when ``error`` should be raised now: it is
    not transient, the retries are used up, or the wait would end at or past the deadline (an
    attempt started at the deadline has no time left to succeed)."""
    if not error.transient or retries_done >= policy.max_retries:
        return None
    wait = policy.delay(retries_done, error, rand)
    if deadline is not None and clock() + wait >= deadline:
        return None
    return wait


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy, deadline: float | None, *,
                      sleep: Callable[[float], object] = time.sleep,
                      clock: Callable[[], float] = time.monotonic,
                      rand: Callable[[], float] = random.random) -> tuple[T, int]:
    """``(fn(), attempts)``, calling ``fn`` again after transient ``ProviderError``s as ``policy``
    says. ``deadline`` is a ``time.monotonic()`` value (or ``None``: no deadline). Raises the
    last error when retrying stops, or a 504 ``ProviderError`` when the deadline passed before
    the first attempt."""
    if deadline is not None and clock() >= deadline:
        raise deadline_exceeded()
    attempts = 0
    previous: ProviderError | None = None
    while True:
        attempts += 1
        attempt = _Attempt(deadline)
        token = _attempt.set(attempt)
        try:
            return fn(), attempts
        except ProviderError as exc:
            # It ran into the deadline (a read timed out at it), not into its own timeout.
            cut_short = attempt.cut and deadline is not None and clock() >= deadline - DEADLINE_SLACK
            if not cut_short:
                wait = _next_wait(policy, exc, attempts - 1, deadline, clock, rand)
                if wait is None:
                    raise
                previous = exc
        finally:
            _attempt.reset(token)
        if cut_short:   # raised outside the except: no __context__ holding the provider's error
            raise previous if previous is not None else deadline_exceeded()
        sleep(wait)


async def acall_with_retries(afn: Callable[[], Awaitable[T]], policy: RetryPolicy,
                             deadline: float | None, *,
                             sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                             clock: Callable[[], float] = time.monotonic,
                             rand: Callable[[], float] = random.random) -> tuple[T, int]:
    """The async twin of :func:`call_with_retries`: ``afn`` is called afresh for each attempt
    (an awaitable can be awaited only once) and waits do not block the event loop."""
    if deadline is not None and clock() >= deadline:
        raise deadline_exceeded()
    attempts = 0
    previous: ProviderError | None = None
    while True:
        attempts += 1
        try:
            return await afn(), attempts
        except ProviderError as exc:
            if previous is not None and is_deadline(exc):
                cut_short = True
            else:
                cut_short = False
                wait = _next_wait(policy, exc, attempts - 1, deadline, clock, rand)
                if wait is None:
                    raise
                previous = exc
        if cut_short:   # a retry the deadline cut off: the provider's last answer says more
            assert previous is not None
            raise previous
        await sleep(wait)


def retry_after_from_headers(headers: object, *, now: dt.datetime | None = None) -> float | None:
    """The wait a reply's headers ask for: ``retry-after-ms`` (OpenAI's, finer) when it is a
    readable number, else ``Retry-After``. ``headers`` is any mapping with a case-insensitive
    ``get`` (httpx's)."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    milliseconds = get("retry-after-ms")
    try:
        value = float(milliseconds.strip()) if isinstance(milliseconds, str) else math.nan
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value >= 0:
        return value / 1000
    return retry_after_seconds(get("retry-after"), now=now)


__all__ = ["RetryPolicy", "TRANSIENT_STATUSES", "acall_with_retries", "attempt_deadline", "call_with_retries",
           "deadline_exceeded", "is_deadline", "is_transient_status", "retry_after_from_headers", "retry_after_seconds",
           "within_total"]

