"""Versioned schema migrations: a fresh database is created at the current version, an older one
is upgraded step by step, a newer one is refused.

``schema_info`` holds ``schema_version``. Version 1 is the first release's tables (orgs, projects,
members, custom_models, audit_log, workflows, workflow_fields, schema_info); every later version is
one :class:`Step` in :data:`STEPS`, in order. The rules a step follows:

* it is **idempotent** — it checks before it creates or alters (``checkfirst``, column lookups),
  so a step that meets its own work already done does nothing;
* it runs inside the one write transaction of the upgrade (SQLite and PostgreSQL both have
  transactional DDL), so an interrupted upgrade leaves the database at its old version;
* it is **recorded**: ``schema_version`` moves to the step's version and a ``migration:NNNN`` row
  says when and what.

Concurrent openers are serialized: ``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory
lock on PostgreSQL; whoever comes second re-reads the version under the lock and finds nothing
to do. Opening a database that is already current takes no write lock at all.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, case, func, inspect, select

from ..core.errors import Conflict
from . import schema
from .engine import read_tx, write_tx
from .generation import install as install_generation
from .info import (
    BINDING_CURRENT,
    BINDING_LEGACY,
    BINDING_ROW,
    KEY_ID_ROW,
    key_id_most_secrets_carry,
    set_info,
)

# The tables of schema version 1, as released. Anything added to schema.py later needs a Step.
V1_TABLES: tuple[str, ...] = (
    "schema_info", "orgs", "projects", "members", "custom_models", "audit_log", "workflows",
    "workflow_fields",
)
VERSION_KEY = "schema_version"
# pg_advisory_xact_lock key: any constant no other application on the server is likely to use.
_PG_LOCK_KEY = 0x6279_6F6B_6E62  # "byoknb"


class SchemaVersionError(Conflict):
    """The database's schema cannot be used by this byok_nb (newer, or not a byok_nb database)."""


@dataclass(frozen=True)
class Step:
    """One schema upgrade: from ``version - 1`` to ``version``."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_tables(*names: str) -> Callable[[Connection], None]:
    """A step that creates tables (with their indexes) from schema.py when they are missing."""

    def apply(conn: Connection) -> None:
        schema.metadata.create_all(conn, tables=[schema.metadata.tables[n] for n in names],
                                   checkfirst=True)

    apply.tables = names  # type: ignore[attr-defined]
    return apply


def _record_key_custody(conn: Connection) -> None:
    """Version 3: the store records its master key's id, and secrets written before their
    associated data covered where and as whom they are sent are marked for re-encryption.

    The key id recorded is the one most stored secrets carry (after an old rotation raced with a
    stale writer, a few may carry another; those stay unreadable, as they already were to the
    current key). Re-encryption needs the key, which a schema step does not have: it happens at the
    first ``open_registry`` with that key (key_custody.settle_at_open); until then the secrets stay
    as they are and a registry opened with any other key cannot read or write them anyway."""
    si = schema.schema_info
    present = set(conn.execute(select(si.c.key).where(si.c.key.in_([BINDING_ROW, KEY_ID_ROW]))).scalars())
    key_id = key_id_most_secrets_carry(conn)
    if BINDING_ROW not in present:
        set_info(conn, BINDING_ROW, BINDING_LEGACY if key_id else BINDING_CURRENT)
    if KEY_ID_ROW not in present and key_id:
        set_info(conn, KEY_ID_ROW, key_id)


def _usage_user_and_attempts(conn: Connection) -> None:
    """Version 5: each usage row counts its provider attempts (retries), and the rollup is keyed
    by the calling user too, so costs can be reported per user.

    A unique key cannot be changed in place on SQLite, so the rollup is rebuilt from the log it
    summarizes (every log row was added to it in the same transaction): each day's totals are
    unchanged and now split by user."""
    log_columns = {c["name"] for c in inspect(conn).get_columns("usage_log")}
    if "attempts" not in log_columns:
        # Rows logged before retries existed were one attempt each.
        conn.exec_driver_sql("ALTER TABLE usage_log ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1")
    if "user_name" in {c["name"] for c in inspect(conn).get_columns("usage_rollup")}:
        return
    rollup = schema.usage_rollup
    rollup.drop(conn)
    rollup.create(conn)
    u = schema.usage_log
    # As store.usage_log writes the rollup: a call with unknown token counts (-1) adds no tokens
    # and is filed as unpriced; "" is the rollup's "no price".
    unknown = u.c.input_tokens == -1
    keys = [u.c.org_id, u.c.day, u.c.user_name, u.c.project, u.c.workflow, u.c.field, u.c.model,
            u.c.model_type, u.c.provider,
            case((unknown, ""), else_=func.coalesce(u.c.input_cost_per_token, "")),
            case((unknown, ""), else_=func.coalesce(u.c.output_cost_per_token, ""))]
    totals = select(*keys, func.count(), func.sum(case((u.c.ok, 0), else_=1)),
                    func.sum(case((unknown, 0), else_=u.c.input_tokens)),
                    func.sum(case((unknown, 0), else_=u.c.output_tokens))).group_by(*keys)
    conn.execute(rollup.insert().from_select(
        ["org_id", "day", "user_name", "project", "workflow", "field", "model", "model_type", "provider",
         "input_cost_per_token", "output_cost_per_token", "calls", "failed_calls", "input_tokens",
         "output_tokens"], totals))


def _store_generation(conn: Connection) -> None:
    """Version 7: the store's generation counter and the triggers that move it on every write to
    orgs, members, custom models and API tokens (store/generation.py), so a server may keep what
    it checks calls against in memory and still see any change on its next request."""
    schema.metadata.create_all(conn, tables=[schema.store_generation], checkfirst=True)
    install_generation(conn)


_store_generation.tables = ("store_generation",)  # type: ignore[attr-defined]


STEPS: tuple[Step, ...] = (
    Step(2, "usage_log and usage_rollup: one row per generate call and its rollup",
         _create_tables("usage_log", "usage_rollup")),
    Step(3, "master key id recorded in the store; secrets bound to where they are sent",
         _record_key_custody),
    Step(4, "api_tokens: the gateway's bearer tokens, stored as hashes", _create_tables("api_tokens")),
    Step(5, "usage: attempts per call; the rollup keyed by the calling user (cost by user)",
         _usage_user_and_attempts),
    Step(6, "member_marks: removed members and hub-granted admins (team deployment)",
         _create_tables("member_marks")),
    Step(7, "store_generation: a counter every write to orgs, members, models and tokens moves",
         _store_generation),
)

SCHEMA_VERSION: int = STEPS[-1].version if STEPS else 1


def tables_of_version(version: int) -> set[str]:
    """The table names a database of ``version`` has (for tests and diagnostics)."""
    names = set(V1_TABLES)
    for step in STEPS:
        if step.version <= version:
            names |= set(getattr(step.apply, "tables", ()))
    return names


def _read_version(conn: Connection) -> int | None:
    """The recorded version; None for a database with no byok_nb tables at all."""
    # One catalog query, so one snapshot: on PostgreSQL (READ COMMITTED) separate has_table()
    # calls could straddle another opener's commit and see its tables without schema_info.
    tables = set(inspect(conn).get_table_names())
    if "schema_info" not in tables:
        if tables & set(V1_TABLES):
            raise SchemaVersionError(
                "the database has byok_nb tables but no schema_info table; it was not made by "
                "byok_nb (or was edited by hand) and will not be changed")
        return None
    row = conn.execute(select(schema.schema_info.c.value)
                       .where(schema.schema_info.c.key == VERSION_KEY)).first()
    if row is None:
        raise SchemaVersionError("the database's schema_info table has no schema_version; "
                                 "it will not be changed")
    try:
        return int(row[0])
    except ValueError:
        raise SchemaVersionError(f"the database's schema_version {row[0]!r} is not a number") from None


def _refuse_newer(version: int, url: str) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the registry database {url} has schema version {version}, newer than this byok_nb "
            f"understands ({SCHEMA_VERSION}); upgrade byok_nb (pip install -U byok_nb) — the "
            f"database was left unchanged")


def _stamp(now: dt.datetime, text: str) -> str:
    return f"{now.isoformat(timespec='seconds')} {text}"[:256]


def migrate(engine: Engine) -> list[int]:
    """Bring the database to :data:`SCHEMA_VERSION`; returns the versions of the steps applied
    (``[]`` when it was current, ``[SCHEMA_VERSION]`` for a fresh database)."""

    url = engine.url.render_as_string(hide_password=True)
    with read_tx(engine) as conn:
        version = _read_version(conn)
    if version is not None:
        _refuse_newer(version, url)
        if version == SCHEMA_VERSION:
            return []   # the common case: no write lock taken
    with write_tx(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        version = _read_version(conn)   # again, under the lock: another opener may have won
        now = dt.datetime.now(dt.timezone.utc)
        if version is None:
            schema.metadata.create_all(conn, checkfirst=True)
            set_info(conn, VERSION_KEY, str(SCHEMA_VERSION))
            _record_key_custody(conn)   # no secrets yet: their binding is current from the start
            install_generation(conn)    # triggers are not tables: create_all does not make them
            set_info(conn, f"migration:{SCHEMA_VERSION:04d}", _stamp(now, "created at this version"))
            return [SCHEMA_VERSION]
        _refuse_newer(version, url)
        applied = []
        for step in STEPS:
            if step.version <= version:
                continue
            step.apply(conn)
            set_info(conn, VERSION_KEY, str(step.version))
            set_info(conn, f"migration:{step.version:04d}", _stamp(now, step.description))
            applied.append(step.version)
        return applied


def ensure_schema(engine: Engine) -> None:
    """Create the tables on first use, upgrade an older schema, refuse a newer one."""
    migrate(engine)
