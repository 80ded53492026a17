"""Shared fixtures: an isolated environment for every test, a registry on a temporary SQLite file,
and the "acme" org with one user per role (SPEC M-1)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

import byok_nb

# Process settings a developer's shell may carry; no test may depend on them.
_CLEARED_ENV = ("BYOK_NB_MASTER_KEY", "BYOK_NB_DATABASE_URL", "BYOK_NB_EGRESS", "BYOK_NB_PLATFORM_CATALOG")


@pytest.fixture(autouse=True)
def _isolated_byok_env(monkeypatch, tmp_path_factory):
    """Every test gets its own BYOK_NB_HOME and none of the developer's byok_nb settings."""
    monkeypatch.setenv("BYOK_NB_HOME", str(tmp_path_factory.mktemp("byok_home")))
    for name in _CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def master_key() -> str:
    return byok_nb.generate_master_key()


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "registry.db"


@pytest.fixture
def registry(db_path, master_key):
    """A registry on a fresh SQLite file (``db_path``), closed after the test."""
    reg = byok_nb.open_registry(f"sqlite:///{db_path}", master_key=master_key)
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
