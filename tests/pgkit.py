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

Between tests a database is emptied either by :func:`reset_database` (drop and recreate
``public``: the next opener creates the tables again) or, much faster, by
:meth:`PristineDatabase.restore`: it empties every table but keeps the tables and the rows of a
few (``schema_info``), and falls back to dropping ``public`` when a test changed the schema itself
(a trigger, an index...).

When no server answers, :func:`unavailable` turns the reason into a skip — or into a failure when
``CI`` is set, so a CI run without PostgreSQL cannot pass by skipping every PostgreSQL test.

This module lives in ``tests/`` (on ``sys.path`` through ``tests/conftest.py``), so every test
directory's conftest and test module can ``import pgkit``.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

ENV_URL = "BYOK_NB_TEST_PG_URL"
ENV_CI = "CI"
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
    _terminate_others(parsed)
    with contextlib.closing(_connect(parsed, parsed.database)) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


# -- fast reset between tests ---------------------------------------------------------------------
# Everything a test could add to or change in the schema of ``public``: tables and their columns,
# indexes, constraints, triggers, functions, views, sequences. Equal fingerprints: emptying the tables suffices.
_FINGERPRINT_SQL = """
SELECT md5(coalesce(string_agg(item, E'\\n' ORDER BY item), '')) FROM (
    SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' '
           || coalesce(character_maximum_length::text, '') || ' ' || coalesce(column_default, '') || ' '
           || is_nullable AS item
      FROM information_schema.columns WHERE table_schema = 'public'
    UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
      FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL SELECT 'trigger ' || tgrelid::regclass::text || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
    UNION ALL SELECT 'relation ' || relkind::text || ' ' || relname::text FROM pg_class WHERE relnamespace = 'public'::regnamespace
) AS schema_items
"""
_FOREIGN_KEYS_SQL = """
SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
 WHERE contype = 'f' AND connamespace = 'public'::regnamespace
"""
_TABLES_SQL = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
_RESTART_SEQUENCES_SQL = ("SELECT count(setval(c.oid, 1, false)) FROM pg_class c "
                          "WHERE c.relkind = 'S' AND c.relnamespace = 'public'::regnamespace")
LOCK_TIMEOUT = "3s"


def _children_first(tables: list[str], edges: list[tuple[str, str]]) -> list[str] | None:
    """``tables`` ordered so that every referencing table comes before the one it references;
    None when the foreign keys form a cycle."""
    pending = {t: {parent for child, parent in edges if child == t and parent != t} for t in tables}
    referenced_by = {t: {child for child, parent in edges if parent == t and child != t} for t in tables}
    order: list[str] = []
    while pending:
        ready = sorted(t for t in pending if not (referenced_by[t] - set(order)))
        if not ready:
            return None
        order += ready
        for t in ready:
            del pending[t]
    return order


class PristineDatabase:
    """A database that :meth:`restore` brings back, between tests, to what it was when this object
    was made: same schema (compared as a fingerprint of every column, index, constraint, trigger,
    function and relation of ``public``), every table empty except the ``keep`` tables, whose rows
    are put back, and every sequence restarted at 1 (ids as in a fresh database).

    Emptying takes one DELETE per table, children first — about 1 ms for a test's few rows, where
    TRUNCATE of ten tables costs ~50 ms and dropping and recreating the schema ~130 ms with the
    tables' creation. A test that changed the schema itself makes :meth:`restore` drop ``public``
    (:func:`reset_database`) and return False: the caller then sets the schema up again and calls
    :meth:`record`. Set the schema up, then make the object (or call :meth:`record`)."""

    def __init__(self, url: str, keep: tuple[str, ...] = ()):
        from sqlalchemy.engine import make_url

        self.url, self.keep, self._parsed = url, keep, make_url(url)
        self._conn = None
        self.record()

    def _connection(self):
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = _connect(self._parsed, self._parsed.database)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def record(self) -> None:
        """Take the database as it is now as the state to restore."""
        from psycopg import sql

        conn = self._connection()
        self.fingerprint = conn.execute(_FINGERPRINT_SQL).fetchone()[0]
        tables = [row[0] for row in conn.execute(_TABLES_SQL)]
        edges = [tuple(row) for row in conn.execute(_FOREIGN_KEYS_SQL)]
        self.delete_order = _children_first(tables, edges)
        self.tables = tables
        self.kept = {}
        for table in self.keep:
            cur = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            self.kept[table] = ([d.name for d in cur.description], cur.fetchall())

    def _empty(self, conn) -> None:
        from psycopg import sql

        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        if self.delete_order is None:   # a foreign-key cycle: let TRUNCATE sort it out
            conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in self.tables)))
        else:
            for table in self.delete_order:
                conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        conn.execute(_RESTART_SEQUENCES_SQL)
        for table, (columns, rows) in self.kept.items():
            if rows:
                conn.cursor().executemany(
                    sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)),
                        sql.SQL(", ").join(sql.Placeholder() * len(columns))), rows)

    def restore(self) -> bool:
        """Back to the recorded state (True), or, when the schema differs, an empty ``public``
        schema (False). A session a test left holding locks is terminated if it is in the way."""
        import psycopg

        for attempt in (1, 2):
            conn = self._connection()
            if conn.execute(_FINGERPRINT_SQL).fetchone()[0] != self.fingerprint:
                self.close()
                reset_database(self.url)
                return False
            try:
                with conn.transaction():
                    self._empty(conn)
                return True
            except psycopg.errors.LockNotAvailable:
                if attempt == 2:
                    raise
                _terminate_others(self._parsed, keep_pid=conn.info.backend_pid)
        raise AssertionError("unreachable")  # pragma: no cover


def _terminate_others(url, keep_pid: int | None = None) -> None:
    """End every other session of this role on ``url``'s database (a test's leftover pool)."""
    with contextlib.closing(_connect(server_url())) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                      "AND usename = current_user AND pid <> pg_backend_pid() AND pid <> %s",
                      (url.database, keep_pid or 0))


# -- pytest glue ----------------------------------------------------------------------------------
def ci_requires_postgres() -> bool:
    """True when ``CI`` is set (to anything but "", "0", "false", "no")."""
    return os.environ.get(ENV_CI, "").strip().lower() not in ("", "0", "false", "no")


def unavailable(exc: PostgresUnavailable):
    """Skip the current test with ``exc``'s reason — or fail it when :func:`ci_requires_postgres`."""
    import pytest

    if ci_requires_postgres():
        pytest.fail(f"{exc} — and {ENV_CI}={os.environ.get(ENV_CI)!r} is set, so PostgreSQL is required, not "
                    f"skipped (scripts/system_deps.sh starts the local test server; {ENV_URL} names another)",
                    pytrace=False)
    pytest.skip(f"{exc} (scripts/system_deps.sh starts the local test server; {ENV_URL} names another)")
