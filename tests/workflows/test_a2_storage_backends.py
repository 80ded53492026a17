"""The usage rollup on SQLite and PostgreSQL (SPEC A-2, F-2, E-2): upserts, concurrency, exactness."""
from __future__ import annotations

import os
import threading
import uuid
from decimal import Decimal

import pytest

import byok_nb
from byok_nb import LLMField
from byok_nb.analytics import record_usage_batch

from .test_analytics import _random_rows, _reference

PG_URL = os.environ.get("BYOK_NB_TEST_POSTGRES_URL",
                        "postgresql+psycopg://byok_nb:byok_nb@127.0.0.1:5432/byok_nb_test")


def _postgres_available() -> bool:
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_registry(request, tmp_path, master_key, fakes):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'r.db'}"
    else:
        if not _postgres_available():
            pytest.skip("no PostgreSQL server on 127.0.0.1:5432 (scripts/system_deps.sh starts one)")
        url = PG_URL
    reg = byok_nb.open_registry(url, master_key=master_key)
    org = f"org-{uuid.uuid4().hex[:10]}"   # the PostgreSQL database is shared between runs
    reg.create_org(org)
    reg.create_project(org, "search")
    reg.add_member(org, "ana", role="org_admin")
    try:
        yield reg, reg.session(org=org, user="ana")
    finally:
        reg.close()


def test_a2_rollup_is_exact_on_each_backend(backend_registry):
    reg, s = backend_registry
    rows = _random_rows(3_000, seed=11)
    assert record_usage_batch(s, rows[:1500]) == 1500
    assert record_usage_batch(reg, [dict(r, org=s.org) for r in rows[1500:]]) == 1500
    for by in ("model", "day", "workflow"):
        from byok_nb.analytics import REPORT_DIMENSIONS

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
