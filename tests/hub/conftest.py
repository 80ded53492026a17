"""Fixtures of the team-deployment tests: a real JupyterHub (hubkit.py) and headless Chromium.

Every test that runs a hub is marked ``hub`` (and ``slow``). A hub takes seconds to start, so
the tests of a module share one. Without ``configurable-http-proxy`` on PATH the tests are skipped with the
reason — or fail when ``CI`` is set, since CI installs it (scripts/system_deps.sh).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest


from .hubkit import RunningHub, proxy_missing_reason

HERE = Path(__file__).parent


def pytest_configure(config):
    config.addinivalue_line("markers", "hub: runs a real JupyterHub with configurable-http-proxy on loopback")


def pytest_collection_modifyitems(items):
    """A test that runs a real hub (it uses ``proxy_available``) is marked ``hub`` and ``slow``.
    Each test stands alone (the removal test removes its own user), so under ``-n 2`` a module
    split over both workers is correct, only slower: each worker starts its own hub."""
    for item in items:
        if "proxy_available" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.hub)
            item.add_marker(pytest.mark.slow)


def _required(reason: str | None, what: str) -> None:
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI={os.environ['CI']!r} is set, so {what} is required)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def proxy_available() -> None:
    _required(proxy_missing_reason(), "configurable-http-proxy")


@pytest.fixture
def start_service():
    """``start_service(registry, **kw)`` -> a started hub service in a thread (svckit), every one
    stopped after the test."""
    from .svckit import service_starter

    yield from service_starter()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def run_hub(hub: RunningHub):
    """Start ``hub``, yield it, stop it and fail the module if any process it started is left."""
    with hub:
        yield hub
    assert hub.leftovers == [], f"processes left after the hub stopped (killed now): {hub.leftovers}"
