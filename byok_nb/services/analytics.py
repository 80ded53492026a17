"""Usage log, cost report, estimates and what-if tables.

Storage layout. Every call is one row of ``usage_log`` (kept for :func:`usage`) and, in the
same transaction, one increment of ``usage_rollup``: a table keyed by (org, day, project,
workflow, field, model, model type, provider, input price, output price) holding integer sums
(calls, failed calls, input tokens, output tokens). :func:`cost_report` reads the rollup — a few
thousand rows however many million calls were made — and prices each key exactly:
``cost = sum(input_tokens) * input_price + sum(output_tokens) * output_price``. Because the price
is part of the key, no money is ever summed in floating point or stored rounded, and the sums stay
64-bit integers on SQLite and PostgreSQL alike.

Prices are recorded at call time. Each usage row carries the per-token prices the model had when
it was called (exact decimal text; none = unpriced), so editing a model's price later changes
estimates and future calls but never rewrites past costs. "Unpriced" and "free" stay different
states: an unpriced call has cost NaN and counts in ``untracked_calls``; a free one costs 0.

Who sees what: every member of the org sees the org's usage and reports (like the models
list); a user with no role in the org gets ``Forbidden``; one org never sees another's rows.

>>> s.cost_report(by="day")                       # doctest: +SKIP
>>> s.estimate_cost("openai/gpt-4o", 1_000, 200)  # doctest: +SKIP
Decimal('0.0045000')
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, Inexact, localcontext
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from ..core.errors import InvalidRequest, NotFound
from ..core.inputs import ReportBy
from ..store import read_tx, schema
from ..store.usage_log import UNKNOWN_TOKENS, RowPreparer, check_tokens, record_rows
from . import workflows
from .access import require_admin, require_member
from .context import Backend, Context
from .workflows import lookup_model

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


__all__ = [
    "REPORT_DIMENSIONS", "USAGE_COLUMNS", "cost_report", "estimate_cost", "record_usage_batch", "usage",
    "what_if",
]

USAGE_COLUMNS = ["ts", "org", "user", "project", "workflow", "field", "model", "model_type", "provider",
                 "input_tokens", "output_tokens", "latency_ms", "ok", "attempts", "cost_usd", "usage_unknown"]
# A report dimension and the rollup columns it groups by (a workflow name is unique per project).
REPORT_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "model": ("model", "model_type", "provider"),
    "provider": ("provider",),
    "workflow": ("project", "workflow"),
    "field": ("project", "workflow", "field"),
    "project": ("project",),
    "day": ("day",),
    "user": ("user",),
}
# Report columns stored under another name in the rollup.
_ROLLUP_NAMES = {"user": "user_name"}
REPORT_VALUES = ["calls", "input_tokens", "output_tokens", "cost_usd", "untracked_calls", "failed_calls",
                 "cost_usd_exact"]
# -- recording -------------------------------------------------------------------------------------
def record_usage_batch(session_or_registry: Any, rows: Iterable[Mapping[str, Any]]) -> int:
    """Record usage rows — all of them in one transaction, or none — and return how many.

    ``generate`` records its calls through this; it is public for importing usage from elsewhere
    (another gateway's logs, a backfill) and for benchmarks. Each row is a mapping with:

    ``model`` (required: platform id or custom slug), ``ts`` (datetime — naive means UTC —, ISO
    text or epoch seconds; default now), ``project``, ``workflow``, ``field``, ``user`` (text,
    optional), ``input_tokens``, ``output_tokens`` (ints from 0 to 10**9, default 0),
    ``usage_unknown`` (bool, default False: True records the call with its token counts missing
    and its cost unknown, as ``generate`` does when a provider reports implausible counts),
    ``latency_ms`` (number or None), ``ok`` (bool, default True), ``error`` (short text for failed calls),
    ``model_type`` (``platform`` | ``custom``) and ``provider`` (looked up from the model when
    absent), and ``input_cost_per_token`` / ``output_cost_per_token``: when the keys are present
    their values are recorded as given (None = unpriced); when absent the model's current prices
    are recorded.

    With a :class:`~byok_nb.registry.Session` the rows belong to its org and the actor must be an
    org admin (importing usage writes the org's books; members record usage by calling
    ``generate``); a row naming another ``org`` is refused. With a
    :class:`~byok_nb.registry.Registry` (no actor: an operator's import or a benchmark) every row
    names its ``org``.

    >>> record_usage_batch(s, [{"model": "openai/gpt-4o", "input_tokens": 900, "output_tokens": 80}])  # doctest: +SKIP
    1
    """
    # A Session or a Registry, told apart by what they hold (this module must not import them).
    ctx = getattr(session_or_registry, "_ctx", session_or_registry)
    backend = getattr(session_or_registry, "_backend", None)
    if isinstance(ctx, Context):
        require_admin(ctx)
        engine = ctx.engine
        fixed = (ctx.org, ctx.org_id)
        default_user = ctx.user
    elif isinstance(backend, Backend):
        engine = backend.engine
        fixed = None
        default_user = ""
    else:
        raise InvalidRequest("record_usage_batch takes a Session or a Registry")
    if isinstance(rows, Mapping):
        rows = [rows]
    return record_rows(engine, rows, fixed=fixed, default_user=default_user)


# -- reading ---------------------------------------------------------------------------------------
def usage(ctx: Context, *, since: Any = None, until: Any = None) -> "pd.DataFrame":
    """The org's usage log, one row a call, oldest first.

    Columns: ``ts`` (UTC), ``org``, ``user`` (who called; None for imported rows without one),
    ``project``, ``workflow``, ``field`` (None for direct calls), ``model``, ``model_type``,
    ``provider``, ``input_tokens``, ``output_tokens`` (Int64), ``latency_ms``, ``ok``, ``attempts``
    (provider calls made, retries included), ``cost_usd``
    (float USD at the prices recorded with the call; NaN when the model had no price, 0 only when
    it is free) and ``usage_unknown`` (True when the provider reported token counts that cannot be
    real: the call counts, its token columns are missing and its cost is NaN).
    ``since`` / ``until`` (datetime — naive means UTC —, ISO text or epoch seconds) keep the calls
    with ``since <= ts < until``; a large log is best read a window at a time (totals over all of
    it come from :func:`cost_report`, which does not read the log).
    """
    import numpy as np
    import pandas as pd

    from .frames import counts

    require_member(ctx)
    u = schema.usage_log
    query = select(
        u.c.ts_us, u.c.user_name, u.c.project, u.c.workflow, u.c.field, u.c.model, u.c.model_type, u.c.provider,
        u.c.input_tokens, u.c.output_tokens, u.c.latency_ms, u.c.ok, u.c.attempts, u.c.input_cost_per_token,
        u.c.output_cost_per_token).where(u.c.org_id == ctx.org_id)
    bounds = RowPreparer(ctx.engine, fixed=None, default_user="")
    if since is not None:
        query = query.where(u.c.ts_us >= bounds._ts(since, "usage", "since"))
    if until is not None:
        query = query.where(u.c.ts_us < bounds._ts(until, "usage", "until"))
    with read_tx(ctx.engine) as conn:
        rows = conn.execute(query.order_by(u.c.ts_us, u.c.id)).all()
    raw = pd.DataFrame(rows, columns=["ts_us", "user", "project", "workflow", "field", "model", "model_type",
                                      "provider", "input_tokens", "output_tokens", "latency_ms", "ok",
                                      "attempts", "pin", "pout"])
    frame = pd.DataFrame({
        "ts": pd.to_datetime(raw["ts_us"].astype("int64"), unit="us", utc=True),
        "org": pd.Series([ctx.org] * len(raw), dtype=object),
    })
    for name in ("user", "project", "workflow", "field"):
        frame[name] = raw[name].astype(object).where(raw[name] != "", None)
    for name in ("model", "model_type", "provider"):
        frame[name] = raw[name].astype(object)
    unknown = (raw["input_tokens"].astype("int64") == UNKNOWN_TOKENS).to_numpy()
    frame["input_tokens"] = counts(raw["input_tokens"]).mask(unknown)     # missing, never -1
    frame["output_tokens"] = counts(raw["output_tokens"]).mask(unknown)
    frame["latency_ms"] = raw["latency_ms"].astype("float64")
    frame["ok"] = raw["ok"].astype(bool)
    frame["attempts"] = counts(raw["attempts"])
    pin = _price_floats(raw["pin"])
    pout = _price_floats(raw["pout"])
    tokens_in = frame["input_tokens"].to_numpy(dtype="float64", na_value=np.nan)
    tokens_out = frame["output_tokens"].to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        frame["cost_usd"] = pd.Series(tokens_in * pin + tokens_out * pout, index=frame.index, dtype="float64")
    frame["usage_unknown"] = unknown
    return frame[USAGE_COLUMNS]


def _price_floats(prices: "pd.Series"):
    """Price text -> float64 array (NaN for unpriced), converting each distinct price once."""
    import numpy as np

    codes, uniques = prices.factorize(use_na_sentinel=True)
    table = np.array([float(p) if p not in (None, "") else np.nan for p in uniques] + [np.nan])
    return table[codes]  # code -1 (missing) picks the trailing NaN


def _dimensions(by: Any) -> tuple[str, ...]:
    names = [by] if isinstance(by, str) else list(by) if isinstance(by, (list, tuple)) else None
    if not names or any(n not in REPORT_DIMENSIONS for n in names):
        raise InvalidRequest(f"by must be one of {', '.join(REPORT_DIMENSIONS)} (or a list of them), got {by!r}")
    dims: list[str] = []
    for n in names:
        dims.extend(c for c in REPORT_DIMENSIONS[n] if c not in dims)
    return tuple(dims)


def cost_report(ctx: Context, by: ReportBy = "model") -> "pd.DataFrame":
    """Cost per ``model``, ``provider``, ``workflow``, ``project``, ``day`` or ``user`` (the calling
    user; or ``field``, or a list of these, e.g. ``["day", "model"]``).

    One row a group with its key column(s) and ``calls``, ``input_tokens``, ``output_tokens`` (Int64),
    ``cost_usd`` (float; the cost of the priced calls, NaN when none was priced),
    ``untracked_calls`` (calls whose cost is unknown: the model had no price, or the provider
    reported implausible token counts, which are not summed), ``failed_calls`` and ``cost_usd_exact``
    (the same cost as an exact Decimal, None when no call was priced). Read from the rollup and
    priced vectorized with exact integer arithmetic. ``day`` groups are UTC dates (datetime64).
    Sorted by day for ``by="day"``, else most expensive first.
    """
    import numpy as np
    import pandas as pd


    require_member(ctx)
    dims = _dimensions(by)
    r = schema.usage_rollup
    keys = [r.c[_ROLLUP_NAMES.get(d, d)] for d in dims] + [r.c.input_cost_per_token, r.c.output_cost_per_token]
    query = (select(*keys, func.sum(r.c.calls), func.sum(r.c.failed_calls), func.sum(r.c.input_tokens),
                    func.sum(r.c.output_tokens))
             .where(r.c.org_id == ctx.org_id).group_by(*keys))
    with read_tx(ctx.engine) as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=[*dims, "pin", "pout", "calls", "failed_calls", "input_tokens",
                                        "output_tokens"])
    for name in ("calls", "failed_calls", "input_tokens", "output_tokens"):
        frame[name] = frame[name].astype("int64")  # PostgreSQL's SUM(bigint) is numeric
    priced = ((frame["pin"] != "") & (frame["pout"] != "")).to_numpy()
    scale, pin, pout = _scaled_prices(frame["pin"], frame["pout"])
    # Exact cost of each (key, price) row in units of 10**-scale USD, as Python ints (no overflow).
    cost_units = (frame["input_tokens"].to_numpy(dtype=object) * pin
                  + frame["output_tokens"].to_numpy(dtype=object) * pout)
    frame["cost_units"] = np.where(priced, cost_units, 0)
    frame["priced_calls"] = np.where(priced, frame["calls"].to_numpy(), 0)
    frame["untracked_calls"] = frame["calls"] - frame["priced_calls"]
    if frame.empty:
        out = pd.DataFrame({d: pd.Series(dtype=object) for d in dims})
        for name in ("calls", "input_tokens", "output_tokens", "untracked_calls", "failed_calls"):
            out[name] = pd.Series(dtype="int64")
        out["cost_usd"] = pd.Series(dtype="float64")
        out["cost_usd_exact"] = pd.Series(dtype=object)
        return _finish_report(out, dims)
    grouped = frame.groupby(list(dims), sort=False, dropna=False)
    out = grouped[["calls", "input_tokens", "output_tokens", "untracked_calls", "failed_calls",
                   "priced_calls"]].sum()
    units = grouped["cost_units"].agg(lambda s: sum(s, 0))
    out = out.reset_index()
    exact = [Decimal(int(u)).scaleb(-scale) if n else None
             for u, n in zip(units.to_numpy(), out["priced_calls"].to_numpy())]
    out["cost_usd_exact"] = pd.Series(exact, index=out.index, dtype=object)
    out["cost_usd"] = np.array([float(e) if e is not None else np.nan for e in exact], dtype="float64")
    return _finish_report(out.drop(columns="priced_calls"), dims)


def _finish_report(out: "pd.DataFrame", dims: tuple[str, ...]) -> "pd.DataFrame":
    import pandas as pd

    from .frames import counts

    for name in ("calls", "input_tokens", "output_tokens", "untracked_calls", "failed_calls"):
        out[name] = counts(out[name])
    out["cost_usd"] = out["cost_usd"].astype("float64")
    for d in dims:
        if d == "day":
            out[d] = pd.to_datetime(out[d], format="%Y-%m-%d")
        elif d in ("project", "workflow", "field", "user"):
            out[d] = out[d].astype(object).where(out[d] != "", None)
    if "day" in dims:
        out = out.sort_values(list(dims), kind="stable")
    else:
        out = out.sort_values(["cost_usd", *dims], ascending=[False, *([True] * len(dims))],
                              na_position="last", kind="stable")
    return out[[*dims, *REPORT_VALUES]].reset_index(drop=True)


def _scaled_prices(pin: "pd.Series", pout: "pd.Series"):
    """(scale, input prices, output prices) with every price an exact int in units of 10**-scale."""
    import numpy as np

    uniques = {p for p in pin.unique()} | {p for p in pout.unique()}
    decimals = {p: Decimal(p) for p in uniques if p not in (None, "")}
    scale = max((-d.as_tuple().exponent for d in decimals.values()), default=0)
    scale = max(scale, 0)
    ints = {p: int(d.scaleb(scale)) for p, d in decimals.items()}

    def column(series: "pd.Series"):
        return np.array([ints.get(p, 0) for p in series.to_numpy()], dtype=object)

    return scale, column(pin), column(pout)


# -- estimates -------------------------------------------------------------------------------------
def _exact_cost(input_tokens: int, output_tokens: int, pin: Decimal | None, pout: Decimal | None) -> Decimal | None:
    if pin is None or pout is None:
        return None
    with localcontext() as ctx:
        ctx.prec = 200
        ctx.traps[Inexact] = True
        return Decimal(input_tokens) * pin + Decimal(output_tokens) * pout


def estimate_cost(ctx: Context, ref: str, input_tokens: int, output_tokens: int) -> Decimal | None:
    """The exact USD cost of a call of ``ref`` (platform id or custom slug) at its current
    prices, or None when the model is unpriced (``Decimal("0")`` when it is free)."""
    require_member(ctx)
    input_tokens = check_tokens("input_tokens", input_tokens)
    output_tokens = check_tokens("output_tokens", output_tokens)
    model = lookup_model(ctx, ref)
    if model is None or not model.active:
        state = "is deleted" if model is not None else "is neither a platform model id nor a custom model slug"
        raise NotFound(f"model {ref!r} {state} in org {ctx.org!r}")
    return _exact_cost(input_tokens, output_tokens, model.input_cost_per_token, model.output_cost_per_token)


def what_if(ctx: Context, input_tokens: int, output_tokens: int, workflow: Any = None,
            field: str | None = None) -> "pd.DataFrame":
    """What a token volume would cost on each of the org's models (platform and active custom),
    cheapest first, unpriced ones last.

    Given ``workflow`` and ``field``, only the models that field may use (its picker) are compared.
    Columns: ``ref``, ``label``, ``type``, ``provider``, ``input_cost_per_token``,
    ``input_cost_per_1m``, ``output_cost_per_token``, ``output_cost_per_1m`` (float USD, NaN when
    unpriced), ``cost_usd`` (float, NaN when unpriced) and ``cost_usd_exact`` (Decimal or None).

    >>> s.what_if(1_000_000, 250_000)[["ref", "input_cost_per_1m", "cost_usd"]].head(3)  # doctest: +SKIP
    """
    import numpy as np
    import pandas as pd

    from .frames import with_prices

    require_member(ctx)
    input_tokens = check_tokens("input_tokens", input_tokens)
    output_tokens = check_tokens("output_tokens", output_tokens)
    if (workflow is None) != (field is None):
        raise InvalidRequest("give both workflow and field, or neither")
    with read_tx(ctx.engine) as conn:
        platform, custom = workflows._active_models(ctx, conn)
        llm_field = workflows.resolve_field(ctx, conn, workflow, field)[1] if workflow is not None else None
    rows = []
    for m in [*platform, *custom]:
        if llm_field is not None and workflows.why_hidden(llm_field, m) is not None:
            continue
        exact = _exact_cost(input_tokens, output_tokens, m.input_cost_per_token, m.output_cost_per_token)
        rows.append({"ref": m.ref, "label": m.label, "type": m.type, "provider": m.provider,
                     "input_cost_per_token": m.input_cost_per_token,
                     "output_cost_per_token": m.output_cost_per_token,
                     "cost_usd": float(exact) if exact is not None else np.nan, "cost_usd_exact": exact})
    frame = with_prices(pd.DataFrame(rows, columns=["ref", "label", "type", "provider", "input_cost_per_token",
                                                    "output_cost_per_token", "cost_usd", "cost_usd_exact"]))
    frame["cost_usd"] = frame["cost_usd"].astype("float64")
    return frame.sort_values(["cost_usd", "ref"], na_position="last", kind="stable").reset_index(drop=True)
