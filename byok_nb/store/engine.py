"""Engine set-up: SQLite pragmas for several processes on one file, PostgreSQL as is (E-2)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from ..errors import InvalidRequest
from .schema import SCHEMA_VERSION, metadata, schema_info

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidRequest(f"not a database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return create_engine(parsed, pool_pre_ping=True, future=True)


def _sqlite_engine(parsed) -> Engine:
    database = parsed.database
    in_memory = not database or database == ":memory:"
    kwargs: dict = {"connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
    if in_memory:
        # One shared connection, or every pooled connection would see its own empty database.
        kwargs["poolclass"] = StaticPool
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not in_memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection):
        # Writers take the write lock up front (BEGIN IMMEDIATE): a deferred transaction that
        # upgrades from read to write can fail with SQLITE_BUSY without waiting on busy_timeout.
        if conn.get_execution_options().get("byok_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


@contextlib.contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction (BEGIN IMMEDIATE on SQLite)."""
    with engine.connect().execution_options(byok_write=True) as conn:
        with conn.begin():
            yield conn


@contextlib.contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        with conn.begin():
            yield conn


def ensure_schema(engine: Engine) -> None:
    """Create the tables on first use and record the schema version."""
    with write_tx(engine) as conn:
        metadata.create_all(conn)
        row = conn.execute(select(schema_info.c.value).where(schema_info.c.key == "schema_version")).first()
        if row is None:
            conn.execute(schema_info.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        elif int(row[0]) > SCHEMA_VERSION:
            raise InvalidRequest(f"the registry database has schema version {row[0]}, newer than this "
                                 f"byok_nb understands ({SCHEMA_VERSION}); upgrade byok_nb")
