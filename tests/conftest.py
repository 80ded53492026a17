"""Shared fixtures: an isolated environment for every test, a registry on each storage backend,
and the "acme" org with one user per role (SPEC M-1).

Every test that uses ``registry`` (or ``acme``, or ``registry_url``) runs twice, once per backend,
with the backend in its id: ``test_x[sqlite]`` on a temporary SQLite file (``db_path``) and
``test_x[postgresql]`` on a PostgreSQL database (marker ``postgres``) — one database per test
session (per pytest-xdist worker), created on first use, emptied before each test and dropped at
the end. Without a reachable server the ``[postgresql]`` variants are skipped, with the reason
("PostgreSQL not reachable on 127.0.0.1:5432: ..."); with ``CI`` set they fail instead, so CI
cannot pass without PostgreSQL. ``BYOK_NB_TEST_PG_URL`` points them at another server (pgkit.py).

A test that is about SQLite itself (its file's bytes, WAL, file permissions, several processes on
one file) is marked ``@pytest.mark.sqlite_only``; a test that asks for ``db_path`` (the SQLite
file) is SQLite-only as well. Either way it runs once, as ``test_x[sqlite]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import os

import pytest

import byok_nb
import pgkit

# Process settings a developer's shell may carry; no test may depend on them.
_CLEARED_ENV = ("BYOK_NB_MASTER_KEY", "BYOK_NB_DATABASE_URL", "BYOK_NB_EGRESS", "BYOK_NB_PLATFORM_CATALOG")

SQLITE, POSTGRESQL = "sqlite", "postgresql"
BACKENDS = [SQLITE, pytest.param(POSTGRESQL, marks=pytest.mark.postgres)]


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: run this registry test on SQLite only (it is about "
                                       "the SQLite file, WAL or its locking), not on PostgreSQL too")


def pytest_generate_tests(metafunc):
    """Run every test that (through ``registry``/``acme``) uses ``registry_url`` on each backend."""
    if "registry_url" not in metafunc.fixturenames:
        return
    sqlite_only = (metafunc.definition.get_closest_marker("sqlite_only") is not None
                   or "db_path" in metafunc.fixturenames)
    metafunc.parametrize("registry_url", [SQLITE] if sqlite_only else BACKENDS, indirect=True)


@pytest.fixture(autouse=True)
def _isolated_byok_env(monkeypatch, tmp_path_factory):
    """Every test gets its own BYOK_NB_HOME and none of the developer's byok_nb settings."""
    monkeypatch.setenv("BYOK_NB_HOME", str(tmp_path_factory.mktemp("byok_home")))
    for name in _CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium for every browser test of this session (this xdist worker): ONE
    Playwright sync session per process — its sync API keeps an event loop marked running in the
    main thread, so a second ``sync_playwright()`` in the same process fails. Skips without
    Chromium, or fails when ``CI`` is set (.ci/run installs it)."""
    from byok_nb.testing.voila import chromium_missing_reason, launch_chromium

    reason = chromium_missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI={os.environ['CI']!r} is set, so Chromium is required)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def master_key() -> str:
    return byok_nb.generate_master_key()


@pytest.fixture
def db_path(tmp_path):
    """The SQLite file of the ``[sqlite]`` registry (asking for it makes a test SQLite-only)."""
    return tmp_path / "registry.db"


@pytest.fixture(scope="session")
def _pg_registry_database():
    """This session's (this xdist worker's) PostgreSQL database, with the registry's tables
    created once; dropped at the end. Skips — or fails under CI — without a server."""
    try:
        pgkit.check_server()
        url = pgkit.create_database("byok_nb_reg")
    except pgkit.PostgresUnavailable as exc:
        pgkit.unavailable(exc)
    try:
        _create_schema(url)
        pristine = pgkit.PristineDatabase(url, keep=("schema_info",))
        try:
            yield pristine
        finally:
            pristine.close()
    finally:
        pgkit.drop_database(url)


def _create_schema(url: str) -> None:
    from byok_nb.store import ensure_schema, make_engine

    engine = make_engine(url)
    try:
        ensure_schema(engine)
    finally:
        engine.dispose()


@pytest.fixture
def pg_registry_url(_pg_registry_database) -> str:
    """The session's PostgreSQL database, emptied for this test (tables kept, rows gone)."""
    pristine = _pg_registry_database
    if not pristine.restore():   # the previous test changed the schema: start over
        _create_schema(pristine.url)
        pristine.record()
    return pristine.url


@pytest.fixture
def registry_url(request) -> str:
    """The URL of an empty registry database on this test's backend (``[sqlite]`` /
    ``[postgresql]``, see the module docstring)."""
    backend = getattr(request, "param", SQLITE)
    if backend == SQLITE:
        return f"sqlite:///{request.getfixturevalue('db_path')}"
    return request.getfixturevalue("pg_registry_url")


@pytest.fixture
def registry_backend(registry_url) -> str:
    """"sqlite" or "postgresql": the backend of this test's ``registry``."""
    return POSTGRESQL if registry_url.startswith("postgresql") else SQLITE


@pytest.fixture
def registry(registry_url, master_key):
    """A registry on an empty database of this test's backend, closed after the test."""
    reg = byok_nb.open_registry(registry_url, master_key=master_key)
    try:
        yield reg
    finally:
        reg.close()


@dataclass
class Acme:
    """Org "acme" with project "search": ana is org_admin, pat project_admin and cy contributor
    on "search"; zed has no membership at all."""

    registry: Any
    org: str
    project: str
    admin: Any
    project_admin: Any
    contributor: Any
    outsider: Any


@pytest.fixture
def acme(registry) -> Acme:
    registry.create_org("acme")
    registry.create_project("acme", "search")
    registry.add_member("acme", "ana", role="org_admin")
    registry.add_member("acme", "pat", role="project_admin", project="search")
    registry.add_member("acme", "cy", role="contributor", project="search")
    return Acme(
        registry=registry, org="acme", project="search",
        admin=registry.session(org="acme", user="ana"),
        project_admin=registry.session(org="acme", user="pat"),
        contributor=registry.session(org="acme", user="cy"),
        outsider=registry.session(org="acme", user="zed"),
    )
