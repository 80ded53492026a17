"""Usage log, cost report, estimates and what-if tables (SPEC A-1 … A-3, F-2).

Storage layout (F-2). Every call is one row of ``usage_log`` (kept for :func:`usage`) and, in the
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

Who sees what (M-1): every member of the org sees the org's usage and reports (like the models
list); a user with no role in the org gets ``Forbidden``; one org never sees another's rows.

>>> s.cost_report(by="day")                       # doctest: +SKIP
>>> s.estimate_cost("openai/gpt-4o", 1_000, 200)  # doctest: +SKIP
Decimal('0.0045000')
"""
from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from typing import TYPE_CHECKING, Any

from ..core.errors import InvalidRequest, NotFound
from .access import require_admin, require_member
from .context import Backend, Context
from .membership import find_org_id

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from sqlalchemy import Connection, Engine


__all__ = [
    "REPORT_DIMENSIONS", "USAGE_COLUMNS", "cost_report", "estimate_cost", "record_usage_batch", "usage",
    "what_if",
]

USAGE_COLUMNS = ["ts", "org", "project", "workflow", "field", "model", "model_type", "provider",
                 "input_tokens", "output_tokens", "latency_ms", "ok", "cost_usd", "usage_unknown"]
# A report dimension and the rollup columns it groups by (a workflow name is unique per project).
REPORT_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "model": ("model", "model_type", "provider"),
    "provider": ("provider",),
    "workflow": ("project", "workflow"),
    "field": ("project", "workflow", "field"),
    "project": ("project",),
    "day": ("day",),
}
REPORT_VALUES = ["calls", "input_tokens", "output_tokens", "cost_usd", "untracked_calls", "failed_calls",
                 "cost_usd_exact"]
MODEL_TYPES = ("platform", "custom")
_US_PER_DAY = 86_400_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
# A call whose provider reported implausible token counts (see ChatResult.usage_unknown) is logged
# with this in both token columns: read back as missing, never summed. The rollup adds no tokens for
# it and files it as unpriced, so it counts among the calls whose cost is unknown.
UNKNOWN_TOKENS = -1
MAX_TOKENS_PER_CALL = 10**9   # as byok_nb.providers.base: more in one call is not a real count
_TEXT_LIMITS = {"project": 128, "workflow": 256, "field": 256, "model": 512, "provider": 32, "user": 256}


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
    return _record(engine, rows, fixed=fixed, default_user=default_user)


def _record(engine: "Engine", rows: Iterable[Mapping[str, Any]], *, fixed: tuple[str, int] | None,
            default_user: str, also: "Callable[[Connection], None] | None" = None) -> int:
    """Validate ``rows``, then write them in one short transaction; ``also`` runs in that same
    transaction (the usage spool marks its replayed rows there)."""
    from ..store import write_tx

    prep = _Preparer(engine, fixed=fixed, default_user=default_user)
    prepared = [prep.row(raw, i) for i, raw in enumerate(rows)]
    if not prepared:
        return 0
    with write_tx(engine) as conn:
        prep.resolve_models(conn, prepared)
        _write(conn, prepared)
        if also is not None:
            also(conn)
    return len(prepared)


class _Preparer:
    """Validates and normalizes raw rows quickly (F-2: >= 20,000 rows/s), caching repeated values."""

    def __init__(self, engine: "Engine", *, fixed: tuple[str, int] | None, default_user: str) -> None:
        self.engine = engine
        self.fixed = fixed
        self.default_user = default_user
        self.now_us = _now_us()
        self.org_ids: dict[str, int] = {}
        self.days: dict[int, str] = {}
        self.prices: dict[Any, str | None] = {}

    def row(self, raw: Any, index: int) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise InvalidRequest(f"usage row {index}: a row is a mapping, not {type(raw).__name__}")
        where = f"usage row {index}"
        org_id = self._org_id(raw.get("org"), where)
        model = raw.get("model")
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequest(f"{where}: model is required (a platform id or custom slug)")
        ts_us = self._ts(raw.get("ts"), where)
        day_index = ts_us // _US_PER_DAY
        day = self.days.get(day_index)
        if day is None:
            day = self.days[day_index] = (_EPOCH + dt.timedelta(days=day_index)).strftime("%Y-%m-%d")
        ok = raw.get("ok", True)
        if type(ok) is not bool:
            if ok in (0, 1):
                ok = bool(ok)
            else:
                raise InvalidRequest(f"{where}: ok must be True or False")
        latency = raw.get("latency_ms")
        if latency is not None:
            if isinstance(latency, bool) or not isinstance(latency, (int, float)) or not latency >= 0:
                try:
                    latency = float(latency)
                except (TypeError, ValueError):
                    latency = -1.0
                if not latency >= 0 or math.isinf(latency):
                    raise InvalidRequest(f"{where}: latency_ms must be a number >= 0")
            latency = float(latency)
        model_type = raw.get("model_type")
        if model_type is not None and model_type not in MODEL_TYPES:
            raise InvalidRequest(f"{where}: model_type must be 'platform' or 'custom'")
        error = raw.get("error")
        unknown = raw.get("usage_unknown", False)
        if type(unknown) is not bool:
            raise InvalidRequest(f"{where}: usage_unknown must be True or False")
        out = {
            "org_id": org_id, "ts_us": ts_us, "day": day,
            "user_name": self._text(raw.get("user", self.default_user), "user", where),
            "project": self._text(raw.get("project"), "project", where),
            "workflow": self._text(raw.get("workflow"), "workflow", where),
            "field": self._text(raw.get("field"), "field", where),
            "model": self._text(model.strip(), "model", where),
            "model_type": model_type,
            "provider": self._text(raw.get("provider"), "provider", where) or None,
            "input_tokens": UNKNOWN_TOKENS if unknown else self._tokens(raw.get("input_tokens"), "input_tokens", where),
            "output_tokens": UNKNOWN_TOKENS if unknown else self._tokens(raw.get("output_tokens"), "output_tokens", where),
            "latency_ms": latency, "ok": ok,
            "error": None if error is None else str(error)[:128],
            "_priced_given": "input_cost_per_token" in raw or "output_cost_per_token" in raw,
        }
        if out["_priced_given"]:
            out["input_cost_per_token"] = self._price(raw.get("input_cost_per_token"), "input_cost_per_token", where)
            out["output_cost_per_token"] = self._price(raw.get("output_cost_per_token"), "output_cost_per_token", where)
        return out

    def _org_id(self, org: Any, where: str) -> int:
        if self.fixed is not None:
            if org is not None and org != self.fixed[0]:
                raise InvalidRequest(f"{where}: org {org!r} is not this session's org {self.fixed[0]!r}")
            return self.fixed[1]
        if not isinstance(org, str) or not org:
            raise InvalidRequest(f"{where}: org is required when recording through a Registry")
        org_id = self.org_ids.get(org)
        if org_id is None:
            from ..store import read_tx

            with read_tx(self.engine) as conn:
                org_id = self.org_ids[org] = find_org_id(conn, org)
        return org_id

    def _ts(self, value: Any, where: str, name: str = "ts") -> int:
        if value is None:
            return self.now_us
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            return (value - _EPOCH) // dt.timedelta(microseconds=1)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 2**63 / 1e6:
            return int(round(value * 1_000_000))   # beyond that (or nan) the store cannot hold it
        if isinstance(value, str):
            try:
                return self._ts(dt.datetime.fromisoformat(value.strip()), where, name)
            except ValueError:
                pass
        elif isinstance(value, dt.date):
            return self._ts(dt.datetime(value.year, value.month, value.day), where, name)
        raise InvalidRequest(f"{where}: {name} must be a datetime, ISO text or epoch seconds")

    @staticmethod
    def _tokens(value: Any, name: str, where: str) -> int:
        if value is None:
            return 0
        count = _check_tokens(f"{where}: {name}", value)
        if count > MAX_TOKENS_PER_CALL:   # one call's count: more would only corrupt the sums
            raise InvalidRequest(f"{where}: {name} must be at most {MAX_TOKENS_PER_CALL:_} for one call "
                                 f"(give usage_unknown=True when the real count is not known)")
        return count

    @staticmethod
    def _text(value: Any, name: str, where: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InvalidRequest(f"{where}: {name} must be text")
        if len(value) > _TEXT_LIMITS[name]:
            raise InvalidRequest(f"{where}: {name} is longer than {_TEXT_LIMITS[name]} characters")
        return value

    def _price(self, value: Any, name: str, where: str) -> str | None:
        key = (type(value), value) if not isinstance(value, float) else (float, repr(value))
        try:
            return self.prices[key]
        except KeyError:
            pass
        except TypeError:   # unhashable
            raise InvalidRequest(f"{where}: {name} must be a Decimal, a number as text, or None") from None
        text = price_text(value, name, where)
        self.prices[key] = text
        return text

    def resolve_models(self, conn: "Connection", rows: list[dict[str, Any]]) -> None:
        """Fill model_type / provider / prices that a row left out, from the model as it is now."""
        cache: dict[tuple[int, str], tuple[str, str, str | None, str | None] | None] = {}
        for row in rows:
            if row["model_type"] is not None and row["provider"] is not None and row["_priced_given"]:
                continue
            key = (row["org_id"], row["model"])
            if key not in cache:
                cache[key] = _model_meta(conn, *key)
            meta = cache[key]
            if meta is None:
                if row["model_type"] is None or row["provider"] is None or not row["_priced_given"]:
                    raise InvalidRequest(f"usage row for unknown model {row['model']!r}: give model_type, "
                                         f"provider and the prices (None for unpriced)")
                continue
            if row["model_type"] is None:
                row["model_type"] = meta[0]
            if row["provider"] is None:
                row["provider"] = meta[1]
            if not row["_priced_given"]:
                row["input_cost_per_token"], row["output_cost_per_token"] = meta[2], meta[3]


def price_text(value: Any, name: str = "price", where: str = "usage row") -> str | None:
    """A per-token price as exact canonical text (``0.0000025``), None for unpriced."""
    from ..core.model_rules import format_cost

    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float):
        value = repr(value)
    try:
        price = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise InvalidRequest(f"{where}: {name} must be a number of USD per token") from None
    if not price.is_finite() or price < 0:
        raise InvalidRequest(f"{where}: {name} must be a finite number >= 0")
    return format_cost(price)


def _model_meta(conn: "Connection", org_id: int, ref: str) -> tuple[str, str, str | None, str | None] | None:
    """(model_type, provider, input price text, output price text) of a reference now, or None.
    An active custom slug wins over a platform id, as in workflows.lookup_model."""
    from sqlalchemy import select

    from ..catalog import get_platform_model
    from ..store import schema

    cm = schema.custom_models
    row = conn.execute(select(cm.c.provider, cm.c.input_cost_per_token, cm.c.output_cost_per_token,
                              cm.c.active).where(cm.c.org_id == org_id, cm.c.slug == ref)
                       .order_by(cm.c.active.desc(), cm.c.updated_at.desc()).limit(1)).first()
    if row is not None and row.active:
        return ("custom", row.provider, row.input_cost_per_token, row.output_cost_per_token)
    platform = get_platform_model(ref)
    if platform is not None:
        return ("platform", "openrouter", price_text(platform.input_cost_per_token),
                price_text(platform.output_cost_per_token))
    if row is not None:
        return ("custom", row.provider, row.input_cost_per_token, row.output_cost_per_token)
    return None


_ROLLUP_KEY = ("org_id", "day", "project", "workflow", "field", "model", "model_type", "provider",
               "input_cost_per_token", "output_cost_per_token")
_LOG_COLUMNS = ("org_id", "ts_us", "day", "user_name", "project", "workflow", "field", "model", "model_type",
                "provider", "input_tokens", "output_tokens", "latency_ms", "ok", "input_cost_per_token",
                "output_cost_per_token", "error")

_SQLITE_LOG_INSERT = (f"INSERT INTO usage_log ({', '.join(_LOG_COLUMNS)}) "
                      f"VALUES ({', '.join('?' for _ in _LOG_COLUMNS)})")


def _write(conn: "Connection", rows: list[dict[str, Any]]) -> None:
    """Insert the log rows and add them to the rollup, in the caller's transaction."""
    from ..store import schema

    totals: dict[tuple, list[int]] = {}
    log_params = []
    for row in rows:
        log_params.append(tuple([row[c] for c in _LOG_COLUMNS]))
        unknown = row["input_tokens"] == UNKNOWN_TOKENS
        key = (row["org_id"], row["day"], row["project"], row["workflow"], row["field"], row["model"],
               row["model_type"], row["provider"], "" if unknown else row["input_cost_per_token"] or "",
               "" if unknown else row["output_cost_per_token"] or "")
        t = totals.get(key)
        if t is None:
            t = totals[key] = [0, 0, 0, 0]
        t[0] += 1
        t[1] += not row["ok"]
        if not unknown:
            t[2] += row["input_tokens"]
            t[3] += row["output_tokens"]
    if conn.dialect.name == "sqlite":
        # The driver's executemany straight away: SQLAlchemy's per-row parameter processing would
        # be most of the cost of recording (F-2). Booleans are stored as 0/1 as SQLAlchemy would.
        conn.exec_driver_sql(_SQLITE_LOG_INSERT, log_params)
    else:
        conn.execute(schema.usage_log.insert(), [dict(zip(_LOG_COLUMNS, p)) for p in log_params])
    # Sorted keys: concurrent writers take row locks in one order (no deadlock on PostgreSQL).
    deltas = [dict(zip(_ROLLUP_KEY, key), calls=t[0], failed_calls=t[1], input_tokens=t[2], output_tokens=t[3])
              for key, t in sorted(totals.items())]
    _upsert_rollup(conn, deltas)


def _upsert_rollup(conn: "Connection", deltas: list[dict[str, Any]]) -> None:
    from sqlalchemy import and_

    from ..store import schema

    r = schema.usage_rollup
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(r)
        stmt = stmt.on_conflict_do_update(
            index_elements=[r.c[k] for k in _ROLLUP_KEY],
            set_={name: r.c[name] + stmt.excluded[name]
                  for name in ("calls", "failed_calls", "input_tokens", "output_tokens")})
        conn.execute(stmt, deltas)
        return
    # Portable fallback for other databases: update, else insert (the write transaction serializes).
    for delta in deltas:
        match = and_(*(r.c[k] == delta[k] for k in _ROLLUP_KEY))
        updated = conn.execute(r.update().where(match).values(
            **{name: r.c[name] + delta[name] for name in ("calls", "failed_calls", "input_tokens", "output_tokens")}))
        if updated.rowcount == 0:
            conn.execute(r.insert().values(**delta))


def _now_us() -> int:
    return time.time_ns() // 1000


# -- reading ---------------------------------------------------------------------------------------
def usage(ctx: Context, *, since: Any = None, until: Any = None) -> "pd.DataFrame":
    """The org's usage log, one row a call, oldest first.

    Columns: ``ts`` (UTC), ``org``, ``project``, ``workflow``, ``field``, ``model``, ``model_type``,
    ``provider``, ``input_tokens``, ``output_tokens`` (Int64), ``latency_ms``, ``ok``, ``cost_usd``
    (float USD at the prices recorded with the call; NaN when the model had no price, 0 only when
    it is free) and ``usage_unknown`` (True when the provider reported token counts that cannot be
    real: the call counts, its token columns are missing and its cost is NaN).
    ``since`` / ``until`` (datetime — naive means UTC —, ISO text or epoch seconds) keep the calls
    with ``since <= ts < until``; a large log is best read a window at a time (totals over all of
    it come from :func:`cost_report`, which does not read the log).
    """
    import numpy as np
    import pandas as pd
    from sqlalchemy import select

    from .frames import counts
    from ..store import read_tx, schema

    require_member(ctx)
    u = schema.usage_log
    query = select(
        u.c.ts_us, u.c.project, u.c.workflow, u.c.field, u.c.model, u.c.model_type, u.c.provider,
        u.c.input_tokens, u.c.output_tokens, u.c.latency_ms, u.c.ok, u.c.input_cost_per_token,
        u.c.output_cost_per_token).where(u.c.org_id == ctx.org_id)
    bounds = _Preparer(ctx.engine, fixed=None, default_user="")
    if since is not None:
        query = query.where(u.c.ts_us >= bounds._ts(since, "usage", "since"))
    if until is not None:
        query = query.where(u.c.ts_us < bounds._ts(until, "usage", "until"))
    with read_tx(ctx.engine) as conn:
        rows = conn.execute(query.order_by(u.c.ts_us, u.c.id)).all()
    raw = pd.DataFrame(rows, columns=["ts_us", "project", "workflow", "field", "model", "model_type", "provider",
                                      "input_tokens", "output_tokens", "latency_ms", "ok", "pin", "pout"])
    frame = pd.DataFrame({
        "ts": pd.to_datetime(raw["ts_us"].astype("int64"), unit="us", utc=True),
        "org": pd.Series([ctx.org] * len(raw), dtype=object),
    })
    for name in ("project", "workflow", "field"):
        frame[name] = raw[name].astype(object).where(raw[name] != "", None)
    for name in ("model", "model_type", "provider"):
        frame[name] = raw[name].astype(object)
    unknown = (raw["input_tokens"].astype("int64") == UNKNOWN_TOKENS).to_numpy()
    frame["input_tokens"] = counts(raw["input_tokens"]).mask(unknown)     # missing, never -1
    frame["output_tokens"] = counts(raw["output_tokens"]).mask(unknown)
    frame["latency_ms"] = raw["latency_ms"].astype("float64")
    frame["ok"] = raw["ok"].astype(bool)
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


def cost_report(ctx: Context, by: str | list[str] = "model") -> "pd.DataFrame":
    """Cost per ``model``, ``provider``, ``workflow``, ``project`` or ``day`` (or ``field``, or a
    list of these, e.g. ``["day", "model"]``).

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
    from sqlalchemy import func, select

    from ..store import read_tx, schema

    require_member(ctx)
    dims = _dimensions(by)
    r = schema.usage_rollup
    keys = [r.c[d] for d in dims] + [r.c.input_cost_per_token, r.c.output_cost_per_token]
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
        elif d in ("project", "workflow", "field"):
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


def _check_tokens(name: str, value: Any) -> int:
    """A token count: a whole number >= 0 (an int, or anything with ``__index__`` but a bool)."""
    if type(value) is not int:      # the common case stays cheap when recording large batches
        import operator

        try:
            if isinstance(value, bool):
                raise TypeError
            value = operator.index(value)
        except TypeError:
            raise InvalidRequest(f"{name} must be a whole number of tokens >= 0") from None
    if value < 0:
        raise InvalidRequest(f"{name} must be a whole number of tokens >= 0")
    return value


def estimate_cost(ctx: Context, ref: str, input_tokens: int, output_tokens: int) -> Decimal | None:
    """The exact USD cost of a call of ``ref`` (platform id or custom slug) at its current
    prices, or None when the model is unpriced (``Decimal("0")`` when it is free)."""
    from .workflows import lookup_model

    require_member(ctx)
    input_tokens = _check_tokens("input_tokens", input_tokens)
    output_tokens = _check_tokens("output_tokens", output_tokens)
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

    from . import workflows
    from .frames import with_prices
    from ..store import read_tx

    require_member(ctx)
    input_tokens = _check_tokens("input_tokens", input_tokens)
    output_tokens = _check_tokens("output_tokens", output_tokens)
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
