"""The PostgreSQL test helper itself: a clear skip reason when there is no server, and
throwaway databases that really are created and dropped."""
from __future__ import annotations

import pytest

import pgkit


def test_unreachable_server_gives_a_clear_reason(monkeypatch):
    monkeypatch.setenv(pgkit.ENV_URL, "postgresql://byok_nb:pw-not-shown@127.0.0.1:1/x")
    with pytest.raises(pgkit.PostgresUnavailable) as info:
        pgkit.check_server()
    assert str(info.value).startswith("PostgreSQL not reachable on 127.0.0.1:1: ")
    assert "pw-not-shown" not in str(info.value)


def test_a_non_postgresql_url_is_refused(monkeypatch):
    monkeypatch.setenv(pgkit.ENV_URL, "sqlite:///x.db")
    with pytest.raises(pgkit.PostgresUnavailable, match="not a PostgreSQL URL"):
        pgkit.server_url()


@pytest.mark.postgres
def test_throwaway_database_is_created_and_dropped_even_while_in_use(pg_url):
    from sqlalchemy import create_engine, text

    def exists(name: str) -> bool:
        admin = create_engine(pg_url)
        try:
            with admin.connect() as conn:
                return conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is not None
        finally:
            admin.dispose()

    with pgkit.throwaway_database("byok_nb_probe") as url:
        name = url.rsplit("/", 1)[1]
        assert name.startswith("byok_nb_probe_") and exists(name)
        engine = create_engine(url)
        conn = engine.connect()   # still open when the block ends: DROP ... WITH (FORCE) copes
        assert conn.execute(text("SELECT current_database()")).scalar() == name
    assert not exists(name)
    conn.invalidate()   # its server session was terminated by the drop; release it explicitly
    conn.close()
    engine.dispose()


def test_unavailable_skips_locally_and_fails_under_ci(monkeypatch):
    reason = pgkit.PostgresUnavailable("PostgreSQL not reachable on 127.0.0.1:1: refused")
    for value in ("", "0", "false"):
        monkeypatch.setenv(pgkit.ENV_CI, value)
        with pytest.raises(pytest.skip.Exception, match="not reachable on 127.0.0.1:1: refused"):
            pgkit.unavailable(reason)
    monkeypatch.delenv(pgkit.ENV_CI)
    with pytest.raises(pytest.skip.Exception):
        pgkit.unavailable(reason)
    for value in ("true", "1", "yes"):
        monkeypatch.setenv(pgkit.ENV_CI, value)
        with pytest.raises(pytest.fail.Exception, match="not reachable on 127.0.0.1:1: refused.*required"):
            pgkit.unavailable(reason)


@pytest.mark.postgres
def test_pristine_database_restores_rows_sequences_and_schema(pg_fresh_url, monkeypatch):
    import psycopg

    def run(sql: str, *params):
        with psycopg.connect(pg_fresh_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
            cur = conn.execute(sql, params or None)
            return cur.fetchall() if cur.description else None

    run("CREATE TABLE parent (id serial PRIMARY KEY, name text)")
    run("CREATE TABLE child (id serial PRIMARY KEY, parent_id int NOT NULL REFERENCES parent(id))")
    run("CREATE TABLE info (key text PRIMARY KEY, value text)")
    run("INSERT INTO info VALUES ('schema_version', '2')")
    pristine = pgkit.PristineDatabase(pg_fresh_url, keep=("info",))
    try:
        assert pristine.delete_order.index("child") < pristine.delete_order.index("parent")
        for _ in range(2):
            run("INSERT INTO parent (name) VALUES ('a'), ('b')")
            run("INSERT INTO child (parent_id) SELECT id FROM parent")
            run("UPDATE info SET value = '99'")
            run("INSERT INTO info VALUES ('extra', 'x')")
            assert pristine.restore() is True
            assert run("SELECT count(*) FROM parent")[0][0] == 0 and run("SELECT count(*) FROM child")[0][0] == 0
            assert run("SELECT key, value FROM info") == [("schema_version", "2")]
            # ids restart as in a fresh database
            assert run("INSERT INTO parent (name) VALUES ('c') RETURNING id") == [(1,)]
            assert pristine.restore() is True
        # A session a test left holding a lock in the way is ended, not waited for.
        monkeypatch.setattr(pgkit, "LOCK_TIMEOUT", "200ms")
        leftover = psycopg.connect(pg_fresh_url.replace("postgresql+psycopg", "postgresql"))
        leftover.execute("LOCK TABLE parent IN SHARE MODE")   # idle in transaction from here on
        assert pristine.restore() is True
        assert leftover.closed or leftover.broken or _is_terminated(leftover)
        leftover.close()
        # A test that changes the schema (here: a trigger) gets an empty schema back instead.
        run("CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$")
        run("CREATE TRIGGER noop BEFORE INSERT ON parent FOR EACH ROW EXECUTE FUNCTION noop()")
        assert pristine.restore() is False
        assert run("SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == []
    finally:
        pristine.close()


def _is_terminated(conn) -> bool:
    import psycopg

    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False
