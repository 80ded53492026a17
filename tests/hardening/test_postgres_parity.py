"""PostgreSQL parity (E-2): the key registry behaves on PostgreSQL as on SQLite — add, conflicts
(M-5, including eight processes adding one slug at once), reactivation keeping its id (M-12),
patch (M-13..M-16), delete (M-11), audit (M-17), reuse (C-6), rotation (C-5) — and the M-5 rule
is the database's own partial unique index, visible in pg_indexes."""
from __future__ import annotations

import multiprocessing as mp
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

import byok_nb
from byok_nb import Conflict, InvalidRequest, LLMField, NotFound
from byok_nb.catalog import platform_model_ids

import hardkit
from hardkit import readable_by, stored_secrets

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


def test_pg_conflicts(pg_registry, ana):
    ana.add_model(test=False, **hardkit.fireworks(slug="taken"))
    with pytest.raises(Conflict):
        ana.add_model(test=False, **hardkit.fireworks(slug="taken"))
    platform_id = sorted(platform_model_ids())[0]
    with pytest.raises(Conflict, match="platform model id"):
        ana.add_model(test=False, **hardkit.fireworks(slug=platform_id))
    # Another org may use the same slug.
    pg_registry.session(org="globex", user="gil").add_model(test=False, **hardkit.fireworks(slug="taken"))
    # A deleted slug reactivates only with the same provider.
    ana.delete_model("taken")
    with pytest.raises(Conflict, match="same provider"):
        ana.add_model(test=False, **hardkit.openai_compatible(slug="taken"))


def test_pg_reactivation_keeps_the_id_and_overwrites_fields(ana):
    first = ana.add_model(test=False, **hardkit.fireworks(slug="re", display_name="One"))
    ana.delete_model("re")
    with pytest.raises(NotFound):
        ana.get_model("re")
    again = ana.add_model(test=False, **hardkit.fireworks(slug="re", display_name="Two", api_key=hardkit.FW_KEY_2,
                                                          max_tokens=77))
    assert again.id == first.id
    assert (again.display_name, again.max_tokens) == ("Two", 77)
    assert hardkit.secret_of(ana, "re") == hardkit.FW_KEY_2


def test_pg_patch_rules(ana):
    ana.add_model(test=False, **hardkit.openai_compatible(slug="oc"))
    updated = ana.update_model("oc", display_name="Renamed", api_key="sk-rotated-secret-value-9876")
    assert updated.display_name == "Renamed" and updated.secret_masked == "****9876"
    assert hardkit.secret_of(ana, "oc") == "sk-rotated-secret-value-9876"
    assert ana.update_model("oc", api_key="").secret_masked == "****9876"   # blank keeps
    with pytest.raises(InvalidRequest):
        ana.update_model("oc", api_key="****9876")
    with pytest.raises(InvalidRequest):
        ana.update_model("oc", slug="other")
    with pytest.raises(InvalidRequest):
        ana.update_model("oc", base_url="")
    ana.add_model(test=False, **hardkit.bedrock_iam(slug="br"))
    with pytest.raises(InvalidRequest):
        ana.update_model("br", auth_method="api_key")
    switched = ana.update_model("br", auth_method="api_key", api_key="ABSKnewBedrockApiKey1234567890")
    assert switched.aws_access_key_id is None and switched.secret_masked == "****7890"


def test_pg_delete_counts_referencing_workflows(ana):
    ana.add_model(test=False, **hardkit.fireworks(slug="used"))
    ana.create_workflow("triage", "search", fields=[LLMField(name="a", model="used"),
                                                    LLMField(name="b", model="used")])
    ana.create_workflow("other", "search", fields=[LLMField(name="a", model="used")])
    result = ana.delete_model("used")
    assert (result.slug, result.referencing_workflows) == ("used", 2)
    assert "used" not in set(ana.list_models(type="custom")["ref"])
    assert "used" in set(ana.list_models(type="custom", include_inactive=True)["ref"])
    with pytest.raises(NotFound):
        ana.delete_model("used")


def test_pg_audit_log(pg_registry, ana):
    ana.add_model(test=False, **hardkit.fireworks(slug="a1"))
    ana.update_model("a1", api_key=hardkit.FW_KEY_2, max_tokens=10)
    ana.delete_model("a1")
    ana.add_model(test=False, **hardkit.fireworks(slug="a1"))
    frame = ana.audit_log()
    assert list(frame["action"]) == ["add", "edit", "delete", "reactivate"]
    assert frame.iloc[1]["changes"] == {"api_key": "rotated", "max_tokens": 10}
    assert hardkit.FW_KEY not in frame.to_csv() and hardkit.FW_KEY_2 not in frame.to_csv()
    with pytest.raises(byok_nb.Forbidden):
        pg_registry.session(org="acme", user="cy").audit_log()


def test_pg_reuse_reencrypts_for_the_new_record(pg_fresh_url, ana):
    ana.add_model(test=False, **hardkit.bedrock_iam(slug="src"))
    assert [m.slug for m in ana.reuse_sources("bedrock", "iam")] == ["src"]
    assert ana.reuse_sources("bedrock", "api_key") == []
    copy = ana.add_model(test=False, **hardkit.bedrock_iam(
        slug="copy", aws_access_key_id=None, aws_secret_access_key=None, reuse_credentials_from="src"))
    assert copy.aws_access_key_id == hardkit.AWS_ACCESS_KEY_ID
    assert hardkit.secret_of(ana, "copy") == hardkit.AWS_SECRET
    stored = stored_secrets(pg_fresh_url)
    assert stored["acme/copy"][1] != stored["acme/src"][1]   # its own ciphertext, bound to its id
    with pytest.raises(InvalidRequest, match="cross-method"):
        ana.add_model(test=False, **hardkit.bedrock_iam(slug="x", auth_method="api_key", aws_access_key_id=None,
                                                        aws_secret_access_key=None, reuse_credentials_from="src"))


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
    hardkit.run_spawned(hardkit.same_slug_worker, [(pg_fresh_url, master_key, "race", barrier, results)] * 8)
    outcomes = sorted(results.get(timeout=10) for _ in range(8))
    assert outcomes == ["conflict"] * 7 + ["ok"], outcomes
    assert list(pg_registry.session(org="acme", user="ana").audit_log()["action"]) == ["add"]
