"""Throwaway PostgreSQL databases for tests (no pytest dependency, so any conftest can use it).

The server is ``BYOK_NB_TEST_PG_URL`` when set (any SQLAlchemy PostgreSQL URL; its database is
only used to connect while creating and dropping the throwaway ones), else the local test server
that ``scripts/system_deps.sh`` sets up: role ``byok_nb`` / ``byok_nb`` (CREATEDB) on
127.0.0.1:5432, database ``byok_nb_test``.

    from pgkit import PostgresUnavailable, throwaway_database

    with throwaway_database() as url:        # "postgresql+psycopg://byok_nb:***@127.0.0.1:5432/byok_nb_t_..."
        reg = byok_nb.open_registry(url, master_key=key)

Each database is created by the byok_nb role (so it owns the ``public`` schema and can reset it,
see :func:`reset_database`) and dropped ``WITH (FORCE)`` afterwards, even when a test left
connections open or a child process was killed holding one.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

ENV_URL = "BYOK_NB_TEST_PG_URL"
DEFAULT_URL = "postgresql+psycopg://byok_nb:byok_nb@127.0.0.1:5432/byok_nb_test"
CONNECT_TIMEOUT_S = 3


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL server; ``str(exc)`` is the reason, ready for ``pytest.skip``."""


def server_url():
    """The configured server as a SQLAlchemy URL, driver pinned to psycopg 3."""
    from sqlalchemy.engine import make_url

    url = make_url(os.environ.get(ENV_URL) or DEFAULT_URL)
    if url.get_backend_name() != "postgresql":
        raise PostgresUnavailable(f"{ENV_URL} is not a PostgreSQL URL: "
                                  f"{url.render_as_string(hide_password=True)}")
    return url.set(drivername="postgresql+psycopg")


def _where(url) -> str:
    return f"{url.host or 'localhost'}:{url.port or 5432}"


def _connect(url, dbname: str | None = None):
    """A psycopg autocommit connection (CREATE/DROP DATABASE cannot run in a transaction)."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a test dependency
        raise PostgresUnavailable(f"psycopg is not installed ({exc}); pip install 'psycopg[binary]'") from None
    try:
        return psycopg.connect(host=url.host or "localhost", port=url.port or 5432, user=url.username,
                               password=url.password, dbname=dbname or url.database or "postgres",
                               connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PostgresUnavailable(f"PostgreSQL not reachable on {_where(url)}: {reason}") from None


def check_server() -> None:
    """Raise :class:`PostgresUnavailable` with a clear reason unless the server answers."""
    with contextlib.closing(_connect(server_url())) as conn:
        conn.execute("SELECT 1")


def create_database(prefix: str = "byok_nb_t") -> str:
    """Create an empty database; returns its SQLAlchemy URL (password included)."""
    import psycopg
    from psycopg import sql

    base = server_url()
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}".lower()
    with contextlib.closing(_connect(base)) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise PostgresUnavailable(f"PostgreSQL on {_where(base)} refused CREATE DATABASE for role "
                                      f"{base.username!r}: {str(exc).strip()}") from None
    return base.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database`, closing whatever still uses it."""
    from psycopg import sql
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    with contextlib.closing(_connect(server_url())) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def throwaway_database(prefix: str = "byok_nb_t") -> Iterator[str]:
    """A fresh database for the duration of the block (see the module docstring)."""
    url = create_database(prefix)
    try:
        yield url
    finally:
        drop_database(url)


def reset_database(url: str) -> None:
    """Empty a throwaway database (drop and recreate ``public``): cheaper than a new database per
    test. Closes other sessions on it first, so a test's leftover pool cannot block the drop."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    with contextlib.closing(_connect(server_url())) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND usename = current_user AND pid <> pg_backend_pid()", (parsed.database,))
    with contextlib.closing(_connect(parsed, parsed.database)) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
