"""The store's generation: one counter that every write to what a call is checked against moves.

A server that answers thousands of calls a second cannot read the token, the membership, the
model and its credentials from the store for each one; it keeps them in memory
(:mod:`byok_nb.services.call_cache`) and, per request, reads only this counter. When it has moved,
something those reads depend on changed, and the memory is dropped.

The counter is moved by database triggers, not by the code that writes, so no write path can be
missed — a second process, the CLI, an older tool, an operator's SQL: every insert, update or delete
of ``orgs``, ``members``, ``custom_models`` (models, prices, credentials, key rotation) and of
``api_tokens`` (except ``last_used_at``, which the gateway itself writes once a minute and which
nothing is checked against) moves it, in the same transaction as the write. So a reader sees the
new value exactly when it can see the write.

On PostgreSQL the triggers are deferred constraint triggers: they run at commit, when the
transaction already holds every other lock it will take, so two writers cannot deadlock on the
counter's row. The statement is an upsert, so a deleted counter row comes back on the next write.
"""
from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Connection, Engine

from ..core.errors import StoreUnavailable

__all__ = ["WATCHED", "AsyncGenerationReader", "GenerationReader", "install"]

TABLE = "store_generation"
# table -> the columns whose update moves the counter (None: every update).
WATCHED: dict[str, tuple[str, ...] | None] = {
    "orgs": None,
    "members": None,
    "custom_models": None,
    "api_tokens": ("org_id", "user_name", "token_hash", "expires_at", "revoked_at"),
}
_BUMP = (f"INSERT INTO {TABLE} (id, value) VALUES (1, 1) "
         f"ON CONFLICT (id) DO UPDATE SET value = {TABLE}.value + 1")
_PG_FUNCTION = "byok_nb_bump_generation"


def install(conn: Connection) -> None:
    """Create the counter's row and the triggers that move it (idempotent)."""
    conn.exec_driver_sql(f"INSERT INTO {TABLE} (id, value) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
    if conn.dialect.name == "postgresql":
        _install_postgresql(conn)
    else:
        _install_sqlite(conn)


def _install_sqlite(conn: Connection) -> None:
    for table, columns in WATCHED.items():
        update = "UPDATE" if columns is None else f"UPDATE OF {', '.join(columns)}"
        for kind, event in (("ins", "INSERT"), ("upd", update), ("del", "DELETE")):
            conn.exec_driver_sql(f"CREATE TRIGGER IF NOT EXISTS byok_gen_{table}_{kind} AFTER {event} "
                                 f"ON {table} BEGIN {_BUMP}; END")


def _install_postgresql(conn: Connection) -> None:
    conn.exec_driver_sql(f"CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger "
                         f"LANGUAGE plpgsql AS $$ BEGIN {_BUMP}; RETURN NULL; END $$")
    for table, columns in WATCHED.items():
        update = "UPDATE" if columns is None else f"UPDATE OF {', '.join(columns)}"
        name = f"byok_gen_{table}"
        exists = conn.exec_driver_sql(
            "SELECT 1 FROM pg_trigger WHERE tgname = %(name)s AND tgrelid = %(table)s::regclass",
            {"name": name, "table": table}).first()
        if exists is None:
            conn.exec_driver_sql(f"CREATE CONSTRAINT TRIGGER {name} AFTER INSERT OR {update} OR DELETE "
                                 f"ON {table} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                                 f"EXECUTE FUNCTION {_PG_FUNCTION}()")


_SELECT = f"SELECT value FROM {TABLE} WHERE id = 1"


class GenerationReader:
    """Reads the counter on one connection of its own, kept open (a pool checkout and a
    SQLAlchemy statement would cost more than the read). Autocommit: each read sees every
    transaction committed before it started. Thread-safe (one read at a time).

    On SQLite a read is a lookup in the WAL index (shared memory) and one cached page: a few
    microseconds that never wait on a writer (WAL readers do not block), so a server may read
    it on its event loop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = self._engine = engine
        self._raw: Any = None
        self._lock = threading.Lock()

    def read(self) -> int:
        """The current generation (0 before any watched write); StoreUnavailable when the store
        cannot be reached (after one reconnection)."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    cursor = self._connection().cursor()
                    try:
                        cursor.execute(_SELECT)
                        row = cursor.fetchone()
                    finally:
                        cursor.close()
                    return int(row[0]) if row else 0
                except Exception as exc:  # noqa: BLE001 — any driver failure: reconnect once, then 503
                    self._drop()
                    if attempt == 2:
                        raise StoreUnavailable(f"the registry database is unavailable; try again "
                                               f"({type(exc).__name__})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self) -> Any:
        if self._raw is None:
            raw = self._engine.raw_connection()
            if self._engine.dialect.name == "postgresql":
                raw.driver_connection.autocommit = True   # no transaction left open between reads
            self._raw = raw
        return self._raw

    def _drop(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            try:
                # Not back to the pool: its autocommit setting is this reader's.
                raw.invalidate() if self._engine.dialect.name == "postgresql" else raw.close()
            except Exception:  # noqa: BLE001,S110 — closing a broken connection may fail too
                pass

    def close(self) -> None:
        with self._lock:
            self._drop()


class AsyncGenerationReader:
    """The counter read on PostgreSQL from an event loop without blocking it: an asyncio
    psycopg connection of its own (autocommit), so a read is a round trip the loop waits on
    like any socket, with no thread and no interpreter lock handed back and forth."""

    def __init__(self, engine: Engine) -> None:
        # The engine's URL with its password, for the driver (never printed or logged).
        url = engine.url.set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._conn: Any = None

    async def read(self) -> int:
        """As :meth:`GenerationReader.read` (one read at a time: the caller coalesces)."""
        for attempt in (1, 2):
            try:
                if self._conn is None or self._conn.closed:
                    import psycopg  # the PostgreSQL driver: only on PostgreSQL

                    self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                cursor = await self._conn.execute(_SELECT)
                row = await cursor.fetchone()
                return int(row[0]) if row else 0
            except Exception as exc:  # noqa: BLE001 — reconnect once, then 503 (never the URL)
                await self.aclose()
                if attempt == 2:
                    raise StoreUnavailable(f"the registry database is unavailable; try again "
                                           f"({type(exc).__name__})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001,S110 — closing a broken connection may fail too
                pass
