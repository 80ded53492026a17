"""Engine set-up: SQLite pragmas for several processes on one file, PostgreSQL as is."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DataError,
    DBAPIError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StatementError,
)
from sqlalchemy.pool import StaticPool

from ..core.errors import InvalidRequest, StoreUnavailable

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str) -> Engine:
    if isinstance(url, str) and ("\x00" in url or not url.isascii() and _has_lone_surrogate(url)):
        # No driver takes these (sqlite3 and libpq encode the URL's parts as UTF-8 C strings).
        raise InvalidRequest("not a database URL: it contains a NUL byte or a lone surrogate")
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidRequest(f"not a database URL: {exc}") from None
    except ValueError:   # e.g. a non-numeric port; the URL is not echoed (it may hold a password)
        raise InvalidRequest("not a database URL: check its host, port and database parts") from None
    if parsed.get_backend_name() == "sqlite":
        try:
            return _sqlite_engine(parsed)
        except ArgumentError as exc:   # e.g. sqlite://<junk>: SQLAlchemy's own "Invalid SQLite URL"
            raise InvalidRequest(f"not a database URL: {exc}") from None
        except ValueError:             # a NUL byte or a lone surrogate in the file name
            raise InvalidRequest("not a database URL: the SQLite file name is not a valid path") from None
        except OSError as exc:         # the file's directory cannot be created
            where = Path(parsed.database).expanduser().parent
            raise InvalidRequest(f"cannot create the directory {where} of the SQLite database "
                                 f"{parsed.database}: {exc.strerror or exc}") from None
    try:
        return create_engine(parsed, pool_pre_ping=True, future=True)
    except ArgumentError as exc:   # NoSuchModuleError: an unknown dialect
        raise InvalidRequest(f"unsupported database URL {parsed.drivername!r}: {exc}") from None
    except ImportError as exc:     # a known dialect whose driver is not installed
        raise InvalidRequest(f"the database driver for {parsed.drivername!r} is not installed "
                             f"({exc}); for PostgreSQL: pip install 'byok_nb[postgres]'") from None


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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
def _store_errors(engine: Engine) -> Iterator[None]:
    """Driver failures a caller can act on, as RegistryErrors: the store busy, unreachable or
    its file damaged / not a database (503, naming the file), a value the driver cannot bind
    (422). Anything else is a bug and passes through."""
    try:
        yield
    except OperationalError as exc:
        raise _unavailable(exc, engine) from None
    except (UnicodeEncodeError, OverflowError, StatementError) as exc:
        if type(exc) is DatabaseError:   # exactly: not IntegrityError and friends (callers map those)
            raise _damaged(exc, engine) from None
        if not _unbindable_value(exc):
            raise
        raise _unbindable() from None


@contextlib.contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction (BEGIN IMMEDIATE on SQLite)."""
    with _store_errors(engine), engine.connect().execution_options(byok_write=True) as conn, conn.begin():
        yield conn


@contextlib.contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with _store_errors(engine), engine.connect() as conn, conn.begin():
        yield conn


# A value the driver cannot send: text with a lone surrogate (UnicodeEncodeError), an integer
# beyond 64 bits (OverflowError), an object of no SQL type ("Error binding parameter" on SQLite,
# "cannot adapt type" on psycopg), a value a bind processor refuses (Decimal('sNaN')), NUL in
# PostgreSQL text or a number out of the column's range (DataError). The rules of each call refuse
# most bad input by name first; this is the net under lookups by arbitrary keys. The transaction
# has rolled back by the time it is raised.
def _unbindable_value(exc: Exception) -> bool:
    if isinstance(exc, (UnicodeEncodeError, OverflowError, DataError)):
        return True
    if isinstance(exc, (ProgrammingError, InterfaceError)):
        text = str(exc.orig).lower()
        return "binding parameter" in text or "cannot adapt" in text or "not supported" in text
    if isinstance(exc, DBAPIError):   # IntegrityError and friends: the caller maps those
        return False
    # Not the driver's error: SQLAlchemy wrapped what a bind processor raised for the value.
    return isinstance(getattr(exc, "orig", None), (ValueError, TypeError, ArithmeticError))


def _unbindable() -> InvalidRequest:
    return InvalidRequest("a value in this request cannot be stored or looked up: text with a lone "
                          "surrogate or NUL byte, a number out of range, or a value of an unsupported "
                          "type")


def _detail(exc: DBAPIError) -> str:
    return (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]


def _sqlite_file(engine: Engine) -> str | None:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    return None if not database or database == ":memory:" else database


def _unavailable(exc: OperationalError, engine: Engine) -> StoreUnavailable:
    """The driver's operational failure as a RegistryError (nothing else escapes). Its
    text is the driver's first line only: never the SQL or its parameters (ciphertexts)."""
    detail = _detail(exc)
    if engine.dialect.name == "sqlite" and ("locked" in detail or "busy" in detail):
        return StoreUnavailable(
            f"the registry database is busy: another process has held its write lock for more than "
            f"{SQLITE_BUSY_TIMEOUT_MS / 1000:g} s; try again ({detail})")
    path = _sqlite_file(engine)
    if path and ("unable to open" in detail or "readonly" in detail or "disk i/o" in detail.lower()):
        # A file the process cannot open or write: waiting will not help, the file must be fixed.
        return StoreUnavailable(f"the registry database {path} cannot be used: {detail} (is it a "
                                f"directory, or not readable and writable by this user?)")
    where = f" {path}" if path else ""
    return StoreUnavailable(f"the registry database{where} is unavailable; try again ({detail})")


def _damaged(exc: DatabaseError, engine: Engine) -> StoreUnavailable:
    """SQLite's "file is not a database" / "database disk image is malformed": the file is not a
    registry, or it is damaged (random bytes, a truncated copy). Named, never a driver error."""
    detail = _detail(exc)
    path = _sqlite_file(engine) or engine.url.render_as_string(hide_password=True)
    return StoreUnavailable(f"the registry database {path} is damaged or not a SQLite database "
                            f"({detail}); restore it from a backup, or move it away to start a new "
                            f"registry — it was left unchanged")
