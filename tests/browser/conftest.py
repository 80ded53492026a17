"""Browser tests: Voila serving the real admin app on a throwaway registry, driven by headless
Debian Chromium through Playwright (marker ``browser``).

Screenshots go to a temporary folder; with ``BYOK_NB_UPDATE_SCREENSHOTS=1`` they are written to
``docs/screenshots/`` for the README (so an ordinary test run leaves the work tree unchanged).

Session-scoped: one loopback fake Fireworks, one Voila on a free 127.0.0.1 port, one Chromium,
all torn down after the session. Everything is skipped, with the reason, when Chromium or
Playwright is missing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

import byok_nb
from byok_nb.server.admin_app import app_notebook
from byok_nb.testing import FakeOpenAIProvider
from byok_nb.testing.voila import VoilaServer, sandbox_env

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@dataclass
class VoilaApp:
    server: VoilaServer
    home: Path
    fake: FakeOpenAIProvider
    planted_key: str       # the key the fake accepts; distinctive, so any leak is unmistakable

    @property
    def url(self) -> str:
        return self.server.url

    def registry_bytes(self) -> bytes:
        """Every byte SQLite wrote: the database, its WAL and shared-memory files."""
        return b"".join(p.read_bytes() for p in sorted(self.home.glob("registry.db*")))


def _serve_app(tmp_path_factory, name: str, user: str, seed=None):
    """A fake Fireworks accepting a planted key, and Voila serving the admin app as ``user`` in
    org "acme" on a throwaway registry; ``seed(registry, planted_key)`` prepares the registry."""
    base = tmp_path_factory.mktemp(name)
    home = base / "home"
    home.mkdir()
    planted = "fw_" + "PlantedBrowserKey" + "Q7x2" * 4
    master_key = byok_nb.generate_master_key()
    with FakeOpenAIProvider("fireworks", api_key=planted) as fake:
        env = sandbox_env(home, BYOK_NB_MASTER_KEY=master_key, BYOK_NB_USER=user, BYOK_NB_ORG="acme",
                          BYOK_NB_FIREWORKS_BASE_URL=fake.base_url)
        if seed is not None:
            with byok_nb.open_registry(f"sqlite:///{home / 'registry.db'}", master_key=master_key) as registry:
                seed(registry, planted)
        with VoilaServer(app_notebook(), env=env, log_path=base / "voila.log") as server:
            yield VoilaApp(server=server, home=home, fake=fake, planted_key=planted)


@pytest.fixture(scope="session")
def voila_app(chromium, tmp_path_factory):
    """The admin app as "ana", who becomes org admin of the empty registry on first run."""
    yield from _serve_app(tmp_path_factory, "voila_admin", "ana")


def _seed_contributor(registry, planted: str) -> None:
    registry.create_org("acme")
    registry.create_project("acme", "search")
    registry.add_member("acme", "ana", role="org_admin")
    registry.add_member("acme", "cy", role="contributor", project="search")
    registry.session(org="acme", user="ana").add_model(
        provider="fireworks", api_key=planted, provider_model_id="accounts/acme/models/ft-v1",
        display_name="Team fine-tune", test=False)


@pytest.fixture(scope="module")
def voila_app_contributor(chromium, tmp_path_factory):
    """The admin app as "cy", a contributor: one custom model exists, added by ana."""
    yield from _serve_app(tmp_path_factory, "voila_contributor", "cy", seed=_seed_contributor)


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 1800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    if os.environ.get("BYOK_NB_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


# -- the pages of issue 12: rows, Workflows, header, analytics, axe ------------------------------
LONG_NAME = "Llama 3.1 70B Instruct — quarterly support fine-tune for the EMEA helpdesk (v12, long name)"


def _seed_pages(registry, planted: str) -> None:
    """Org acme: ana (org admin), cy (contributor on search); custom models (one with a long name,
    one without tool use, one deleted for reactivation); workflow search/triage with a tool field;
    usage on one day for Analytics."""
    import datetime as dt

    from byok_nb import LLMField
    from byok_nb.services.analytics import record_usage_batch

    registry.create_org("acme")
    registry.create_project("acme", "search")
    registry.add_member("acme", "ana", role="org_admin")
    registry.add_member("acme", "cy", role="contributor", project="search")
    ana = registry.session(org="acme", user="ana")
    common = dict(provider="fireworks", api_key=planted, test=False)
    ana.add_model(provider_model_id="accounts/acme/models/ft-v1", display_name="Team fine-tune",
                  input_cost_per_token="0.0000002", output_cost_per_token="0.0000004", **common)
    ana.add_model(provider_model_id="accounts/acme/models/long", display_name=LONG_NAME, slug="long-name-ft",
                  **common)
    ana.add_model(provider_model_id="accounts/acme/models/no-tools", display_name="No Tools FT",
                  supports_tool_use=False, **common)
    ana.add_model(provider_model_id="accounts/acme/models/old", display_name="Retired FT", slug="retired-ft",
                  **common)
    ana.delete_model("retired-ft")
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    ana.create_workflow("triage", "search", fields=[LLMField("reply", tools=[tool]), LLMField("summary")])
    day = dt.datetime(2026, 11, 30, 10, tzinfo=dt.timezone.utc)
    record_usage_batch(ana, [{"model": "team-fine-tune", "ts": day, "input_tokens": 12_000,
                              "output_tokens": 3_000, "workflow": "triage", "project": "search"},
                             {"model": "no-tools-ft", "ts": day, "input_tokens": 500, "output_tokens": 50,
                              "workflow": "triage", "project": "search"}])


@pytest.fixture(scope="module")
def voila_pages(chromium, tmp_path_factory):
    """The admin app as org admin "ana" on a registry with models, a workflow and usage."""
    yield from _serve_app(tmp_path_factory, "voila_pages", "ana", seed=_seed_pages)


@pytest.fixture(scope="module")
def voila_pages_contributor(chromium, tmp_path_factory):
    """The same registry, as contributor "cy"."""
    yield from _serve_app(tmp_path_factory, "voila_pages_cy", "cy", seed=_seed_pages)


@pytest.fixture(scope="module")
def voila_outsider(chromium, tmp_path_factory):
    """The app as "zed", who is not a member of acme."""
    yield from _serve_app(tmp_path_factory, "voila_outsider", "zed", seed=_seed_contributor)


@pytest.fixture(scope="session")
def axe_js() -> Path:
    """npm's axe-core (installed into a cache folder when missing; see axekit.py)."""
    from axekit import axe_script

    try:
        return axe_script()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
