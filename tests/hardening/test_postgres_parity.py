"""PostgreSQL parity (E-2), beyond the registry suite — which runs whole on PostgreSQL too (every
test using ``registry``/``acme`` has a ``[postgresql]`` variant, tests/conftest.py), so conflicts,
reactivation, patch, delete, audit and reuse are proven there. Here: the M-5 rule is the
database's own partial unique index, visible in pg_indexes; an add reads back exactly; rotation
(C-5); and eight processes adding one slug at once."""
from __future__ import annotations

import multiprocessing as mp
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

import byok_nb

import hardkit
from hardkit import readable_by, stored_secrets
from racekit import add_same_slug_worker

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_registry(pg_fresh_url, master_key):
    reg = byok_nb.open_registry(pg_fresh_url, master_key=master_key)
    hardkit.make_acme(reg)
    reg.add_member("acme", "cy", role="contributor", project="search")
    reg.create_org("globex")
    reg.add_member("globex", "gil", role="org_admin")
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def ana(pg_registry):
    return pg_registry.session(org="acme", user="ana")


def test_pg_partial_unique_index_on_active_rows(pg_registry, pg_fresh_url):
    engine = create_engine(pg_fresh_url)
    try:
        with engine.connect() as conn:
            indexdef = conn.execute(text(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'custom_models' "
                "AND indexname = 'uq_custom_models_active_slug'")).scalar_one()
        assert indexdef.startswith("CREATE UNIQUE INDEX")
        assert "(org_id, slug)" in indexdef and "WHERE active" in indexdef
        # The index itself refuses a second active row, whatever the application does.
        pg_registry.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="dup"))
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO custom_models (id, org_id, slug, provider, provider_model_id, display_name, "
                "max_tokens, supports_json_mode, supports_vision, supports_tool_use, supports_reasoning, "
                "reasoning_parameter, active, created_at, updated_at, created_by) "
                "SELECT 'x' || substr(id, 2), org_id, slug, provider, provider_model_id, display_name, max_tokens, "
                "supports_json_mode, supports_vision, supports_tool_use, supports_reasoning, "
                "reasoning_parameter, true, created_at, updated_at, created_by FROM custom_models "
                "WHERE slug = 'dup'"))
    finally:
        engine.dispose()


def test_pg_add_and_read_back_exactly(ana):
    model = ana.add_model(test=False, **hardkit.fireworks(
        slug="fw", input_cost_per_token="0.0000003", output_cost_per_token="0", max_tokens=123456,
        supports_vision=True))
    got = ana.get_model("fw")
    assert got == model
    assert got.input_cost_per_token == Decimal("0.0000003") and got.output_cost_per_token == Decimal("0")
    assert got.max_tokens == 123456 and got.supports_vision is True
    assert got.secret_masked == "****" + hardkit.FW_KEY[-4:]
    assert got.created_at.tzinfo is not None
    assert hardkit.secret_of(ana, "fw") == hardkit.FW_KEY
    frame = ana.list_models(type="custom")
    assert list(frame["ref"]) == ["fw"]
    assert hardkit.FW_KEY not in frame.to_csv()


def test_pg_rotation(pg_registry, pg_fresh_url, ana, master_key):
    ana.add_model(test=False, **hardkit.fireworks(slug="r1"))
    ana.add_model(test=False, **hardkit.openai_compatible(slug="r2"))
    new_key = byok_nb.generate_master_key()
    assert pg_registry.rotate_master_key(new_key, dry_run=True).secrets == 2
    assert readable_by(master_key, stored_secrets(pg_fresh_url)) == {"acme/r1", "acme/r2"}
    assert pg_registry.rotate_master_key(new_key).secrets == 2
    stored = stored_secrets(pg_fresh_url)
    assert readable_by(new_key, stored) == {"acme/r1", "acme/r2"} and not readable_by(master_key, stored)
    assert hardkit.secret_of(ana, "r2") == hardkit.OAI_KEY


@pytest.mark.slow
def test_pg_m5_eight_processes_add_one_slug_exactly_one_wins(pg_registry, pg_fresh_url, master_key):
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    hardkit.run_spawned(add_same_slug_worker,
                        [(pg_fresh_url, master_key, hardkit.fireworks(display_name="Race", slug="race"),
                          barrier, results)] * 8)
    outcomes = sorted(results.get(timeout=10) for _ in range(8))
    assert outcomes == ["conflict"] * 7 + ["ok"], outcomes
    assert list(pg_registry.session(org="acme", user="ana").audit_log()["action"]) == ["add"]
