"""Writing usage rows: validation (fast: 20,000 rows/s or more), the ``usage_log`` insert and the
``usage_rollup`` increment, in one transaction.

The store layer's half of analytics: the services record calls through :func:`record_rows`, and the
usage spool replays rows a busy store could not take through the same function.

Storage layout. Every call is one row of ``usage_log`` and, in the same transaction, one increment
of ``usage_rollup`` keyed by (org, day, user, project, workflow, field, model, type, provider,
prices),
so reports read a few rows per group rather than every call.
"""
from __future__ import annotations

import datetime as dt
import functools
import math
import operator
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select

from ..catalog import get_platform_model
from ..core.display import format_cost
from ..core.errors import InvalidRequest
from . import read_tx, schema, write_tx
from .lookups import find_org_id

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Connection, Engine

MODEL_TYPES = ("platform", "custom")
_US_PER_DAY = 86_400_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
# A call whose provider reported implausible token counts (see ChatResult.usage_unknown) is logged
# with this in both token columns: read back as missing, never summed. The rollup adds no tokens for
# it and files it as unpriced, so it counts among the calls whose cost is unknown.
UNKNOWN_TOKENS = -1
MAX_TOKENS_PER_CALL = 10**9   # as byok_nb.providers.base: more in one call is not a real count
MAX_ATTEMPTS = 1000           # provider calls for one logged call, retries included
_TEXT_LIMITS = {"project": 128, "workflow": 256, "field": 256, "model": 512, "provider": 32, "user": 256}



def record_rows(engine: "Engine", rows: Iterable[Mapping[str, Any]], *, fixed: tuple[str, int] | None,
            default_user: str, also: "Callable[[Connection], None] | None" = None,
            org_ids: dict[str, int] | None = None) -> int:
    """Validate ``rows``, then write them in one short transaction; ``also`` runs in that same
    transaction (the usage spool marks its replayed rows there). ``org_ids`` (org name -> id) is
    a cache a caller writing many batches keeps across them (an org is never deleted or renamed),
    saving a read transaction per batch."""
    prep = RowPreparer(engine, fixed=fixed, default_user=default_user, org_ids=org_ids)
    prepared = [prep.row(raw, i) for i, raw in enumerate(rows)]
    if not prepared:
        return 0
    with write_tx(engine) as conn:
        prep.resolve_models(conn, prepared)
        _write(conn, prepared)
        if also is not None:
            also(conn)
    return len(prepared)


class RowPreparer:
    """Validates and normalizes raw rows quickly (>= 20,000 rows/s), caching repeated values."""

    def __init__(self, engine: "Engine", *, fixed: tuple[str, int] | None, default_user: str,
                 org_ids: dict[str, int] | None = None) -> None:
        self.engine = engine
        self.fixed = fixed
        self.default_user = default_user
        self.now_us = _now_us()
        self.org_ids: dict[str, int] = {} if org_ids is None else org_ids
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
        attempts = raw.get("attempts", 1)
        if type(attempts) is not int or not 0 <= attempts <= MAX_ATTEMPTS:
            raise InvalidRequest(f"{where}: attempts must be a whole number from 0 to {MAX_ATTEMPTS}")
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
            "latency_ms": latency, "ok": ok, "attempts": attempts,
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
        count = check_tokens(f"{where}: {name}", value)
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


_ROLLUP_KEY = ("org_id", "day", "user_name", "project", "workflow", "field", "model", "model_type",
               "provider", "input_cost_per_token", "output_cost_per_token")
_LOG_COLUMNS = ("org_id", "ts_us", "day", "user_name", "project", "workflow", "field", "model", "model_type",
                "provider", "input_tokens", "output_tokens", "latency_ms", "ok", "input_cost_per_token",
                "output_cost_per_token", "error", "attempts")

_SQLITE_LOG_INSERT = (f"INSERT INTO usage_log ({', '.join(_LOG_COLUMNS)}) "
                      f"VALUES ({', '.join('?' for _ in _LOG_COLUMNS)})")


# PostgreSQL: the rows as one array a column, unnested server-side — one short statement of 18
# parameters whatever the batch size (psycopg prepares it once; a statement with a placeholder a
# value is re-parsed by psycopg in Python every time, and executemany binds and executes a row at
# a time: either cost ~100-150 us of CPU a row on the gateway's writer thread, measured).
_PG_LOG_TYPES = {"org_id": "integer", "ts_us": "bigint", "input_tokens": "bigint", "output_tokens": "bigint",
                 "latency_ms": "double precision", "ok": "boolean", "attempts": "integer"}
_PG_LOG_INSERT = (f"INSERT INTO usage_log ({', '.join(_LOG_COLUMNS)}) SELECT * FROM unnest("
                  + ", ".join(f"%b::{_PG_LOG_TYPES.get(c, 'text')}[]" for c in _LOG_COLUMNS) + ")")


def _write(conn: "Connection", rows: list[dict[str, Any]]) -> None:
    """Insert the log rows and add them to the rollup, in the caller's transaction."""
    totals: dict[tuple, list[int]] = {}
    log_params = []
    for row in rows:
        log_params.append(tuple([row[c] for c in _LOG_COLUMNS]))
        unknown = row["input_tokens"] == UNKNOWN_TOKENS
        key = (row["org_id"], row["day"], row["user_name"], row["project"], row["workflow"], row["field"],
               row["model"], row["model_type"], row["provider"], "" if unknown else row["input_cost_per_token"] or "",
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
    elif conn.dialect.name == "postgresql":
        # One INSERT of column arrays, straight to the driver (_PG_LOG_INSERT).
        conn.exec_driver_sql(_PG_LOG_INSERT, tuple(list(column) for column in zip(*log_params)))
    else:
        conn.execute(schema.usage_log.insert(), [dict(zip(_LOG_COLUMNS, p)) for p in log_params])
    # Sorted keys: concurrent writers take row locks in one order (no deadlock on PostgreSQL).
    deltas = [dict(zip(_ROLLUP_KEY, key), calls=t[0], failed_calls=t[1], input_tokens=t[2], output_tokens=t[3])
              for key, t in sorted(totals.items())]
    _upsert_rollup(conn, deltas)


def _upsert_rollup(conn: "Connection", deltas: list[dict[str, Any]]) -> None:
    r = schema.usage_rollup
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        conn.execute(_rollup_upsert(dialect), deltas)
        return
    # Portable fallback for other databases: update, else insert (the write transaction serializes).
    for delta in deltas:
        match = and_(*(r.c[k] == delta[k] for k in _ROLLUP_KEY))
        updated = conn.execute(r.update().where(match).values(
            **{name: r.c[name] + delta[name] for name in ("calls", "failed_calls", "input_tokens", "output_tokens")}))
        if updated.rowcount == 0:
            conn.execute(r.insert().values(**delta))


@functools.cache
def _rollup_upsert(dialect: str) -> Any:
    """The rollup's INSERT ... ON CONFLICT DO UPDATE for ``dialect``, built once: building it
    (the ``excluded`` pseudo-table proxies every column) cost more CPU than a batch's inserts."""
    r = schema.usage_rollup
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    stmt = insert(r)
    return stmt.on_conflict_do_update(
        index_elements=[r.c[k] for k in _ROLLUP_KEY],
        set_={name: r.c[name] + stmt.excluded[name]
              for name in ("calls", "failed_calls", "input_tokens", "output_tokens")})


def _now_us() -> int:
    return time.time_ns() // 1000


def check_tokens(name: str, value: Any) -> int:
    """A token count: a whole number >= 0 (an int, or anything with ``__index__`` but a bool)."""
    if type(value) is not int:      # the common case stays cheap when recording large batches
        try:
            if isinstance(value, bool):
                raise TypeError
            value = operator.index(value)
        except TypeError:
            raise InvalidRequest(f"{name} must be a whole number of tokens >= 0") from None
    if value < 0:
        raise InvalidRequest(f"{name} must be a whole number of tokens >= 0")
    return value
