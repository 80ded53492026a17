"""Fixtures of the hardening suite: PostgreSQL throwaway databases and a database URL
parametrized over SQLite and PostgreSQL.

* ``pg_url`` (module scope): a fresh PostgreSQL database for the test module, dropped after it;
  skipped with "PostgreSQL not reachable on 127.0.0.1:5432: ..." when there is no server (failed
  instead when ``CI`` is set). ``BYOK_NB_TEST_PG_URL`` points it at another server (tests/pgkit.py).
* ``pg_fresh_url``: the module's database emptied for this test.
* ``db_url``: one test, run twice — on a SQLite file and on PostgreSQL (marked ``postgres``).

The shared ``tests/conftest.py`` already isolates ``BYOK_NB_HOME`` and the byok_nb variables and
provides ``master_key``, ``registry`` and ``acme`` (on both backends, ``[sqlite]`` and ``[postgresql]``).
"""
from __future__ import annotations

import pytest

import pgkit

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module")
def pg_url():
    try:
        pgkit.check_server()
        url = pgkit.create_database()
    except pgkit.PostgresUnavailable as exc:
        pgkit.unavailable(exc)
    try:
        yield url
    finally:
        pgkit.drop_database(url)


@pytest.fixture
def pg_fresh_url(pg_url):
    pgkit.reset_database(pg_url)
    return pg_url


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """A URL of an empty registry database: a SQLite file, or an emptied PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("pg_fresh_url")
