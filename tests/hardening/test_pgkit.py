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
