"""Engine set-up: SQLite pragmas for several processes on one file, PostgreSQL as is (E-2)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import StaticPool

from ..errors import InvalidRequest, StoreUnavailable

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidRequest(f"not a database URL: {exc}") from None
    except ValueError:   # e.g. a non-numeric port; the URL is not echoed (it may hold a password)
        raise InvalidRequest("not a database URL: check its host, port and database parts") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    try:
        return create_engine(parsed, pool_pre_ping=True, future=True)
    except ArgumentError as exc:   # NoSuchModuleError: an unknown dialect
        raise InvalidRequest(f"unsupported database URL {parsed.drivername!r}: {exc}") from None
    except ImportError as exc:     # a known dialect whose driver is not installed
        raise InvalidRequest(f"the database driver for {parsed.drivername!r} is not installed "
                             f"({exc}); for PostgreSQL: pip install 'byok_nb[postgres]'") from None


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
    try:
        with engine.connect().execution_options(byok_write=True) as conn:
            with conn.begin():
                yield conn
    except OperationalError as exc:
        raise _unavailable(exc, engine) from None


@contextlib.contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    try:
        with engine.connect() as conn:
            with conn.begin():
                yield conn
    except OperationalError as exc:
        raise _unavailable(exc, engine) from None


def _unavailable(exc: OperationalError, engine: Engine) -> StoreUnavailable:
    """The driver's operational failure as a RegistryError (SPEC §1: nothing else escapes). Its
    text is the driver's first line only: never the SQL or its parameters (ciphertexts)."""
    detail = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
    if engine.dialect.name == "sqlite" and ("locked" in detail or "busy" in detail):
        return StoreUnavailable(
            f"the registry database is busy: another process has held its write lock for more than "
            f"{SQLITE_BUSY_TIMEOUT_MS / 1000:g} s; try again ({detail})")
    return StoreUnavailable(f"the registry database is unavailable; try again ({detail})")


def ensure_schema(engine: Engine) -> None:
    """Create the tables on first use, upgrade an older schema, refuse a newer one (migrations)."""
    from .migrations import migrate

    migrate(engine)
