"""M-5: a slug may not equal a platform model id nor an active custom slug of the same org — also
under concurrency, enforced by a partial unique index."""
from __future__ import annotations

import multiprocessing
import time

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from byok_nb import Conflict
from byok_nb.catalog import platform_model_ids

from racekit import add_same_slug_worker
from regkit import execute, fireworks, raw_row, together


def test_m5_slug_collides_with_platform_id(acme):
    platform_id = sorted(platform_model_ids())[0]
    with pytest.raises(Conflict) as info:
        acme.admin.add_model(test=False, **fireworks(slug=platform_id))
    assert info.value.status_code == 409
    assert platform_id in info.value.message and "platform" in info.value.message
    assert acme.admin.list_models(type="custom").empty


def test_m5_every_platform_id_is_reserved(acme):
    for platform_id in platform_model_ids():
        # Only ids that pass the M-4 form can collide; the others are refused by the form rule.
        if platform_id == platform_id.lower() and platform_id[0].isalnum():
            with pytest.raises(Conflict):
                acme.admin.add_model(test=False, **fireworks(slug=platform_id))


def test_m5_active_slug_same_org_conflicts(acme):
    first = acme.admin.add_model(test=False, **fireworks(slug="dup"))
    for draft in (fireworks(slug="dup", display_name="Second"), together(slug="dup")):
        with pytest.raises(Conflict) as info:
            acme.admin.add_model(test=False, **draft)
        assert info.value.status_code == 409 and "dup" in info.value.message
    # The first record is untouched.
    assert acme.admin.get_model("dup").id == first.id
    assert acme.admin.get_model("dup").display_name == first.display_name
    assert len(acme.admin.list_models(type="custom", include_inactive=True)) == 1


def test_m5_derived_slug_conflicts_too(acme):
    acme.admin.add_model(test=False, **fireworks(display_name="Llama 3.1 8B (internal v4)"))
    with pytest.raises(Conflict):
        acme.admin.add_model(test=False, **fireworks(display_name="llama 3.1 8b internal v4"))


def test_m5_same_slug_in_other_org_is_fine(acme):
    reg = acme.registry
    reg.create_org("globex")
    reg.add_member("globex", "gus", role="org_admin")
    ours = acme.admin.add_model(test=False, **fireworks(slug="shared"))
    theirs = reg.session(org="globex", user="gus").add_model(test=False, **together(slug="shared"))
    assert ours.id != theirs.id
    assert raw_row(reg, "shared", org="acme")["provider"] == "fireworks"
    assert raw_row(reg, "shared", org="globex")["provider"] == "together"


def test_m5_partial_unique_index_exists(acme, registry, registry_backend):
    with registry._engine.connect() as conn:
        if registry_backend == "sqlite":
            sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE type='index' "
                                    "AND tbl_name='custom_models' AND sql LIKE '%UNIQUE%'")).scalars().all()
        else:
            sql = conn.execute(text("SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indisunique "
                                    "AND NOT indisprimary AND indrelid = 'custom_models'::regclass")).scalars().all()
    assert len(sql) == 1, sql
    assert "org_id" in sql[0] and "slug" in sql[0] and "WHERE" in sql[0].upper()


def _insert_raw(registry, *, record_id: str, slug: str, active: bool) -> None:
    execute(registry, """
        INSERT INTO custom_models (id, org_id, slug, provider, provider_model_id, display_name,
            max_tokens, supports_json_mode, supports_vision, supports_tool_use, supports_reasoning,
            reasoning_parameter, active, created_at, updated_at, created_by)
        VALUES (:id, (SELECT id FROM orgs WHERE name='acme'), :slug, 'fireworks', 'm', '', 4096,
            true, false, true, false, 'max_tokens', :active, '2025-01-01 00:00:00', '2025-01-01 00:00:00', 'raw')
    """, id=record_id, slug=slug, active=active)


def test_m5_database_enforces_one_active_row_per_slug(acme, registry):
    # Inactive duplicates are allowed (history of deleted models) ...
    _insert_raw(registry, record_id="old1", slug="raced", active=False)
    _insert_raw(registry, record_id="old2", slug="raced", active=False)
    _insert_raw(registry, record_id="live", slug="raced", active=True)
    # ... but the database itself refuses a second active row, whatever the code above it does.
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        _insert_raw(registry, record_id="live2", slug="raced", active=True)
    assert acme.admin.get_model("raced").id == "live"
    # Deactivating the live row frees the slug for a new active row.
    execute(registry, "UPDATE custom_models SET active=false WHERE id='live'")
    _insert_raw(registry, record_id="live3", slug="raced", active=True)
    assert acme.admin.get_model("raced").id == "live3"


_RIVAL_INSERT = """
    INSERT INTO custom_models (id, org_id, slug, provider, provider_model_id, display_name,
        max_tokens, supports_json_mode, supports_vision, supports_tool_use,
        supports_reasoning, reasoning_parameter, active, created_at, updated_at, created_by)
    VALUES ('rival-row', NEW.org_id, NEW.slug, 'fireworks', 'm', '', 4096, true, false, true, false,
        'max_tokens', true, NEW.created_at, NEW.updated_at, 'rival');
"""
COMPETING_WRITER = {
    "sqlite": [
        f"""CREATE TRIGGER competing_writer BEFORE INSERT ON custom_models
            WHEN NEW.created_by != 'rival'
            BEGIN {_RIVAL_INSERT} END""",
    ],
    "postgresql": [
        f"""CREATE FUNCTION competing_writer() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {_RIVAL_INSERT} RETURN NEW; END $$""",
        """CREATE TRIGGER competing_writer BEFORE INSERT ON custom_models
            FOR EACH ROW WHEN (NEW.created_by <> 'rival') EXECUTE FUNCTION competing_writer()""",
    ],
}
NO_COMPETING_WRITER = {
    "sqlite": ["DROP TRIGGER competing_writer"],
    "postgresql": ["DROP TRIGGER competing_writer ON custom_models", "DROP FUNCTION competing_writer()"],
}


def test_m5_index_violation_becomes_conflict(acme, registry, registry_backend):
    """A competing writer that slips its row in after our check still yields 409 (not an
    IntegrityError): a trigger inserts an active row with the same slug just before our insert."""
    for statement in COMPETING_WRITER[registry_backend]:
        execute(registry, statement)
    with pytest.raises(Conflict) as info:
        acme.admin.add_model(test=False, **fireworks(slug="contested"))
    assert info.value.status_code == 409 and "contested" in info.value.message
    for statement in NO_COMPETING_WRITER[registry_backend]:
        execute(registry, statement)
    # The failed add left nothing behind: no model, no audit row.
    assert acme.admin.list_models(type="custom", include_inactive=True).empty
    assert acme.admin.audit_log().empty


@pytest.mark.slow
def test_m5_concurrent_adds_exactly_one_wins(tmp_path, master_key):
    """Several processes add the same slug at the same moment on one SQLite file. (On PostgreSQL:
    tests/hardening/test_postgres_parity.py, eight processes.)"""
    import byok_nb

    db_url = f"sqlite:///{tmp_path / 'race.db'}"
    reg = byok_nb.open_registry(db_url, master_key=master_key)
    reg.create_org("acme")
    reg.add_member("acme", "ana", role="org_admin")
    reg.close()

    contenders = 4   # each child pays an interpreter start-up (~0.5 s of CPU); 4 keep it near 2 s
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(contenders)
    results = ctx.Queue()
    fields = fireworks(display_name="Race", slug="raced")
    procs = [ctx.Process(target=add_same_slug_worker, args=(db_url, master_key, fields, barrier, results))
             for _ in range(contenders)]
    started = time.monotonic()
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=90) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    elapsed = time.monotonic() - started

    assert sorted(outcomes) == ["conflict"] * (contenders - 1) + ["ok"], outcomes
    reg = byok_nb.open_registry(db_url, master_key=master_key)
    try:
        frame = reg.session(org="acme", user="ana").list_models(type="custom", include_inactive=True)
        assert list(frame["ref"]) == ["raced"]
        audit = reg.session(org="acme", user="ana").audit_log()
        assert list(audit["action"]) == ["add"]
    finally:
        reg.close()
    assert elapsed < 60
