"""The usage rollup on SQLite and PostgreSQL (SPEC A-2, F-2, E-2): upserts, concurrency, exactness."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from byok_nb import LLMField
from byok_nb.services.analytics import record_usage_batch

from .test_analytics import _random_rows, _reference


@pytest.fixture
def backend_registry(registry):
    """(registry, org admin session) on this test's backend: ``[sqlite]`` and ``[postgresql]``, an
    empty database each time (tests/conftest.py)."""
    registry.create_org("acme")
    registry.create_project("acme", "search")
    registry.add_member("acme", "ana", role="org_admin")
    return registry, registry.session(org="acme", user="ana")


def test_a2_rollup_is_exact_on_each_backend(backend_registry):
    reg, s = backend_registry
    rows = _random_rows(3_000, seed=11)
    assert record_usage_batch(s, rows[:1500]) == 1500
    assert record_usage_batch(reg, [dict(r, org=s.org) for r in rows[1500:]]) == 1500
    for by in ("model", "day", "workflow"):
        from byok_nb.services.analytics import REPORT_DIMENSIONS

        dims = REPORT_DIMENSIONS[by]
        expected = _reference(rows, dims)
        report = s.cost_report(by=by)
        assert len(report) == len(expected)
        for _, r in report.iterrows():
            key = tuple(r[d].date().isoformat() if d == "day" else r[d] for d in dims)
            assert r["calls"] == expected[key]["calls"]
            assert r["cost_usd_exact"] == expected[key]["cost"]
    assert len(s.usage()) == 3_000


def test_a2_concurrent_recorders_never_lose_an_increment(backend_registry):
    reg, s = backend_registry
    row = {"model": "openai/gpt-4o", "input_tokens": 3, "output_tokens": 2, "project": "search",
           "workflow": "w", "field": "f", "ts": 1_770_000_000}
    errors = []

    def worker():
        try:
            for _ in range(20):
                record_usage_batch(s, [row] * 25)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = s.cost_report(by="model")
    assert report.loc[0, "calls"] == 4 * 20 * 25
    assert report.loc[0, "cost_usd_exact"] == 2000 * (3 * Decimal("0.0000025") + 2 * Decimal("0.00001"))


def test_w9_generate_and_seed_on_each_backend(backend_registry):
    reg, s = backend_registry
    s.create_workflow("triage", "search", fields=[LLMField("chat")])
    import io

    assert s.seed_assignments_csv(io.StringIO("workflow,field,model\ntriage,chat,openai/gpt-4o\n")) == 1
    c = s.generate("triage", "chat", "hello")
    assert c.model == "openai/gpt-4o"
    u = s.usage()
    assert len(u) == 1 and u.loc[0, "ok"]
    assert s.cost_report(by="project").loc[0, "calls"] == 1
