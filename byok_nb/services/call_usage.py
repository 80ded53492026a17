"""Recording one model call in the usage log, and what it cost.

Every call that reached the point of calling a provider is one usage row, whether it succeeded or
failed. The row goes through a *recorder*: a plain callable ``record(ctx, row)`` that must not
block for long (the async call path calls it on the event loop). The default,
:func:`record_usage`, writes the row at once with :func:`~byok_nb.store.usage_log.record_rows`;
a server that records thousands of calls a second passes a batching writer instead.

When the store cannot take the row once the provider has answered (busy past its timeout,
unreachable), the answer is still returned and the row goes to the durable local usage spool
(byok_nb.store.usage_spool), recorded on the next successful write, with a warning logged.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Context as DecimalContext
from decimal import Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from typing import Any

from ..core.errors import StoreUnavailable
from ..store.usage_log import record_rows
from .context import Context

__all__ = ["Recorder", "call_cost", "failure_label", "record_usage", "usage_row"]

# ``record(ctx, row)``: ``row`` is a usage row as record_rows takes it (with ``ts`` set).
Recorder = Callable[[Context, dict[str, Any]], None]


def usage_row(base: dict[str, Any], *, ok: bool, latency_ms: float, attempts: int,
              input_tokens: int | None = None, output_tokens: int | None = None,
              usage_unknown: bool = False, error: BaseException | None = None) -> dict[str, Any]:
    """The full row for one call: ``base`` (model, prices, project/workflow/field) plus the outcome.

    Counts were validated by ChatResult: implausible ones arrive as ``usage_unknown``, not as
    numbers. A failed call's error is stored as its class and status only: provider text may
    quote the request, and the log never keeps it."""
    row = dict(base, ok=ok, latency_ms=latency_ms, attempts=attempts, input_tokens=input_tokens or 0,
               output_tokens=output_tokens or 0, usage_unknown=usage_unknown,
               ts=dt.datetime.now(dt.timezone.utc))
    if error is not None:
        row["error"] = failure_label(error)
    return row


def failure_label(error: BaseException) -> str:
    """``ProviderError 503``: the class and status of a failure, never its text."""
    status = getattr(error, "status_code", None)
    return f"{type(error).__name__}{f' {status}' if status else ''}"


def record_usage(ctx: Context, row: dict[str, Any]) -> None:
    """The default recorder: write ``row`` now as the context's user, or spool it when the store
    cannot take it (the provider has answered and charged: never lose the row, never fail the
    call whose answer is here)."""
    spool = ctx.spool
    try:
        record_rows(ctx.engine, [row], fixed=(ctx.org, ctx.org_id), default_user=ctx.user)
    except StoreUnavailable as exc:
        ts = row.get("ts")
        spooled = dict(row, ts=ts.isoformat() if isinstance(ts, dt.datetime) else ts)
        spool.keep(spooled, org=ctx.org, user=ctx.user, reason=exc)
        return
    if spool.pending():   # the store takes writes again: catch up
        spool.replay_quietly()


def call_cost(input_tokens: int | None, output_tokens: int | None, input_price: Decimal | None,
              output_price: Decimal | None) -> Decimal | None:
    """The exact USD cost of a call, or None when it cannot be known: the model is unpriced or
    the provider did not report both token counts. ``Decimal(0)`` only for a free model."""
    if input_price is None or output_price is None or input_tokens is None or output_tokens is None:
        return None
    exact = _EXACT   # its methods take the context directly: no context switch per call
    return exact.add(exact.multiply(Decimal(input_tokens), input_price),
                     exact.multiply(Decimal(output_tokens), output_price))


# Exact or nothing: money is never rounded here (an inexact result raises Inexact); the default
# context's other traps kept.
_EXACT = DecimalContext(prec=200, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
