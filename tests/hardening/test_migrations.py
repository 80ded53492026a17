"""Versioned schema migrations (store/migrations.py), on SQLite and PostgreSQL: a fresh database
is created at the current version, a version-1 database (the frozen DDL of schema_v1.py, with
data and encrypted secrets) is upgraded step by step with its data intact, opening again is a
no-op, a newer database is refused, and an upgrade that fails part-way changes nothing."""
from __future__ import annotations

import hashlib
from decimal import Decimal
import multiprocessing as mp
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select

import byok_nb
from byok_nb.core.secrets import SecretBox, decode_master_key
from byok_nb.store import migrations, schema
from byok_nb.store.migrations import SCHEMA_VERSION, SchemaVersionError, Step

import hardkit
import pgkit
import schema_v1


def _engine(url):
    return create_engine(url)


def _schema_info(url) -> dict[str, str]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return {k: v for k, v in conn.execute(select(schema.schema_info.c.key, schema.schema_info.c.value))}
    finally:
        engine.dispose()


def _tables(url) -> set[str]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _shape(url) -> dict[str, tuple]:
    """Tables with their columns (name, nullability), indexes and unique constraints."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            out = {}
            for table in sorted(insp.get_table_names()):
                columns = tuple(sorted((c["name"], c["nullable"]) for c in insp.get_columns(table)))
                indexes = tuple(sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                       for i in insp.get_indexes(table)))
                uniques = tuple(sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)))
                out[table] = (columns, indexes, uniques)
            return out
    finally:
        engine.dispose()


def test_every_table_of_schema_py_belongs_to_a_version():
    """A table added to store/schema.py without a migration Step would never reach upgraded
    databases; this names it."""
    missing = set(schema.metadata.tables) - migrations.tables_of_version(SCHEMA_VERSION)
    assert not missing, f"add a migrations.Step that creates {sorted(missing)}"
    assert set(migrations.V1_TABLES) == set(schema_v1.metadata.tables)
    assert [s.version for s in migrations.STEPS] == list(range(2, SCHEMA_VERSION + 1))


def test_fresh_database_is_created_at_the_current_version(db_url, master_key):
    byok_nb.open_registry(db_url, master_key=master_key).close()
    info = _schema_info(db_url)
    assert info["schema_version"] == str(SCHEMA_VERSION)
    assert f"migration:{SCHEMA_VERSION:04d}" in info
    assert set(schema.metadata.tables) <= _tables(db_url)


def test_v1_database_is_upgraded_with_data_and_secrets_intact(db_url, master_key):
    written = hardkit.build_v1_database(db_url, master_key)
    assert _tables(db_url) == set(schema_v1.metadata.tables)
    assert _schema_info(db_url) == {"schema_version": "1"}

    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        info = _schema_info(db_url)
        assert info["schema_version"] == str(SCHEMA_VERSION)
        for step in migrations.STEPS:   # each step recorded with when and what
            assert step.description[:40] in info[f"migration:{step.version:04d}"]
        assert set(schema.metadata.tables) <= _tables(db_url)

        ana = reg.session(org="acme", user="ana")
        custom = ana.list_models(type="custom")
        assert sorted(custom["ref"]) == ["bedrock-claude", "fw-prod", "qwen"]
        assert sorted(ana.list_models(type="custom", include_inactive=True)["ref"]) == [
            "bedrock-claude", "fw-old", "fw-prod", "qwen"]
        view = ana.get_model("fw-prod")
        assert view.id == written["ids"]["fw-prod"]
        assert view.secret_masked == "****" + hardkit.FW_KEY[-4:]
        assert view.input_cost_per_token == Decimal("0.0000003")
        assert ana.get_model("bedrock-claude").aws_access_key_id == hardkit.AWS_ACCESS_KEY_ID
        for slug in ("fw-prod", "bedrock-claude", "qwen"):
            assert hardkit.secret_of(ana, slug) == written["secrets"][slug]
        assert ana.referencing_workflows("fw-prod") == 1
        assert list(ana.audit_log()["slug"]) == ["fw-prod", "fw-old", "bedrock-claude", "qwen"]
        assert reg.session(org="acme", user="cy").get_model("qwen").base_url == "http://127.0.0.1:9/v1"
        assert reg.session(org="globex", user="gil").list_models(type="custom").empty

        # The deleted model's secret too: reactivating it keeps its id (M-12) and new writes work.
        old = ana.add_model(test=False, **hardkit.fireworks(slug="fw-old", api_key=hardkit.FW_KEY_2))
        assert old.id == written["ids"]["fw-old"]
        ana.add_model(test=False, **hardkit.fireworks(slug="after-upgrade"))
        assert hardkit.secret_of(ana, "after-upgrade") == hardkit.FW_KEY
        assert ana.usage().empty   # the v2 tables are usable


def test_upgraded_database_has_the_shape_of_a_fresh_one(db_url, master_key, tmp_path):
    """Tables, columns, indexes and unique constraints after the upgrade equal a fresh database's:
    a column or index added to schema.py without a Step fails here."""
    hardkit.build_v1_database(db_url, master_key)
    byok_nb.open_registry(db_url, master_key=master_key).close()
    if db_url.startswith("sqlite"):
        fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
        byok_nb.open_registry(fresh, master_key=master_key).close()
        assert _shape(db_url) == _shape(fresh)
    else:
        with pgkit.throwaway_database() as fresh:
            byok_nb.open_registry(fresh, master_key=master_key).close()
            assert _shape(db_url) == _shape(fresh)


def test_opening_an_upgraded_database_again_is_a_no_op(db_url, master_key):
    hardkit.build_v1_database(db_url, master_key)
    byok_nb.open_registry(db_url, master_key=master_key).close()
    info, shape = _schema_info(db_url), _shape(db_url)
    digest = _file_digest(db_url)
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        assert migrations.migrate(reg._engine) == []
    assert _schema_info(db_url) == info
    assert _shape(db_url) == shape
    assert _file_digest(db_url) == digest   # SQLite: not one byte written


def _file_digest(url: str) -> str | None:
    if not url.startswith("sqlite:///"):
        return None
    return hashlib.sha256(Path(url[len("sqlite:///"):]).read_bytes()).hexdigest()


def test_each_step_is_idempotent(db_url, master_key):
    hardkit.build_v1_database(db_url, master_key)
    engine = _engine(db_url)
    try:
        for _ in range(2):
            with engine.begin() as conn:
                for step in migrations.STEPS:
                    step.apply(conn)
    finally:
        engine.dispose()
    # The steps' work already done: the upgrade only records the version.
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        assert reg.session(org="acme", user="ana").get_model("fw-prod").slug == "fw-prod"
    assert _schema_info(db_url)["schema_version"] == str(SCHEMA_VERSION)


def test_newer_database_is_refused_and_left_unchanged(db_url, master_key):
    hardkit.build_v1_database(db_url, master_key)
    engine = _engine(db_url)
    with engine.begin() as conn:
        conn.execute(schema.schema_info.update().values(value=str(SCHEMA_VERSION + 1)))
    engine.dispose()
    before = _shape(db_url)
    with pytest.raises(SchemaVersionError) as info:
        byok_nb.open_registry(db_url, master_key=master_key)
    assert isinstance(info.value, byok_nb.RegistryError)
    message = info.value.message
    assert f"schema version {SCHEMA_VERSION + 1}" in message and "upgrade byok_nb" in message
    assert "byok_nb:byok_nb@" not in message   # the URL is shown without its password
    assert _shape(db_url) == before
    assert _schema_info(db_url)["schema_version"] == str(SCHEMA_VERSION + 1)


def test_tables_without_a_schema_version_are_refused(db_url, master_key):
    engine = _engine(db_url)
    with engine.begin() as conn:
        schema_v1.orgs.create(conn)
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="no schema_info"):
        byok_nb.open_registry(db_url, master_key=master_key)


def test_a_failing_step_rolls_the_whole_upgrade_back(db_url, master_key, monkeypatch):
    """The steps run in one write transaction: a step that fails after an earlier one created its
    tables leaves the database exactly at version 1."""
    hardkit.build_v1_database(db_url, master_key)
    before = _shape(db_url)

    def boom(conn):
        raise RuntimeError("step 3 failed")

    with monkeypatch.context() as patch:
        patch.setattr(migrations, "STEPS", (*migrations.STEPS, Step(SCHEMA_VERSION + 1, "boom", boom)))
        patch.setattr(migrations, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        with pytest.raises(RuntimeError, match="step 3 failed"):
            byok_nb.open_registry(db_url, master_key=master_key)
    assert _shape(db_url) == before
    assert _schema_info(db_url) == {"schema_version": "1"}
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:   # and a good upgrade still works
        assert reg.session(org="acme", user="ana").get_model("qwen").slug == "qwen"


@pytest.mark.slow
@pytest.mark.parametrize("start", ["fresh", "v1"])
def test_concurrent_openers_create_or_upgrade_once(db_url, master_key, start):
    """Several kernels starting at once against a new (or old) database: every open succeeds and
    the schema is created (or upgraded) exactly once."""
    if start == "v1":
        hardkit.build_v1_database(db_url, master_key)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    hardkit.run_spawned(hardkit.open_worker, [(db_url, master_key, barrier, results)] * 6)
    outcomes = [results.get(timeout=10) for _ in range(6)]
    assert outcomes == ["ok"] * 6, outcomes
    info = _schema_info(db_url)
    assert info["schema_version"] == str(SCHEMA_VERSION)
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        assert migrations.migrate(reg._engine) == []
        if start == "v1":
            assert hardkit.secret_of(reg.session(org="acme", user="ana"), "fw-prod") == hardkit.FW_KEY


def _ciphertexts(url) -> dict[str, bytes]:
    cm = schema_v1.custom_models
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return {rid: bytes(ct) for rid, ct in conn.execute(select(cm.c.id, cm.c.secret_ciphertext)).all()}
    finally:
        engine.dispose()


def _rows(url) -> dict[str, dict]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return {r["id"]: dict(r) for r in conn.execute(select(schema.custom_models)).mappings()}
    finally:
        engine.dispose()


def test_the_schema_upgrade_alone_rewrites_no_secret(db_url, master_key):
    """migrate() has no key: it records the key id most secrets carry and marks them for
    re-encryption; the stored bytes are the v1 bytes."""
    hardkit.build_v1_database(db_url, master_key)
    before = _ciphertexts(db_url)
    engine = _engine(db_url)
    try:
        migrations.migrate(engine)
    finally:
        engine.dispose()
    assert _ciphertexts(db_url) == before
    info = _schema_info(db_url)
    assert info["master_key_id"] == SecretBox(decode_master_key(master_key)).key_id
    assert info["secret_binding"] == "v1"


def test_c4_v1_secrets_are_bound_to_where_they_are_sent_at_the_first_open_with_their_key(db_url, master_key):
    """Existing stores migrate: the first open with the store's key re-encrypts every v1 secret
    under the associated data that covers org, provider, auth method, URLs, region, access key id
    and provider model id; the legacy associated data then reads none of them."""
    from byok_nb.core.secrets import legacy_associated_data

    hardkit.build_v1_database(db_url, master_key)
    before = _ciphertexts(db_url)
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        after = _ciphertexts(db_url)
        assert set(after) == set(before) and all(after[rid] != before[rid] for rid in before)
        box = SecretBox(decode_master_key(master_key))
        rows = _rows(db_url)
        assert sorted(box.open_row(row) for row in rows.values()) == sorted(hardkit.V1_SECRETS.values())
        for rid, blob in after.items():
            with pytest.raises(byok_nb.RegistryError):
                box.decrypt_with(blob, legacy_associated_data(rid, "secret"))
        assert _schema_info(db_url)["secret_binding"] == "v2"
        assert hardkit.secret_of(reg.session(org="acme", user="ana"), "qwen") == hardkit.OAI_KEY


def test_c4_v1_store_opened_with_another_key_first_is_left_alone_then_migrates(db_url, master_key):
    """Decided: the re-encryption waits for the store's key. Opened with another key first, the
    store is read (lists work), its secrets are unreadable as they would be anyway and not one is
    rewritten; the next open with the right key migrates them all."""
    hardkit.build_v1_database(db_url, master_key)
    before = _ciphertexts(db_url)
    with byok_nb.open_registry(db_url, master_key=byok_nb.generate_master_key()) as wrong:
        ana = wrong.session(org="acme", user="ana")
        assert sorted(ana.list_models(type="custom")["ref"]) == ["bedrock-claude", "fw-prod", "qwen"]
        with pytest.raises(byok_nb.RegistryError, match="re-enter them"):
            hardkit.secret_of(ana, "fw-prod")
    assert _ciphertexts(db_url) == before
    assert _schema_info(db_url)["secret_binding"] == "v1"
    with byok_nb.open_registry(db_url, master_key=master_key) as right:
        ana = right.session(org="acme", user="ana")
        for slug in ("fw-prod", "bedrock-claude", "qwen"):
            assert hardkit.secret_of(ana, slug) == hardkit.V1_SECRETS[slug]
    assert _schema_info(db_url)["secret_binding"] == "v2"


def test_c4_a_migrated_secret_refuses_an_edited_base_url(db_url, master_key):
    hardkit.build_v1_database(db_url, master_key)
    byok_nb.open_registry(db_url, master_key=master_key).close()
    engine = _engine(db_url)
    with engine.begin() as conn:
        conn.execute(schema.custom_models.update().where(schema.custom_models.c.slug == "qwen")
                     .values(base_url="http://127.0.0.1:1/v1"))
    engine.dispose()
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        with pytest.raises(byok_nb.RegistryError, match="re-enter them"):
            hardkit.secret_of(reg.session(org="acme", user="ana"), "qwen")


def _generation_triggers(url) -> set[str]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                sql = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            else:
                sql = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
            return {row[0] for row in conn.exec_driver_sql(sql)}
    finally:
        engine.dispose()


def test_f7_an_upgraded_database_moves_its_generation_as_a_fresh_one_does(db_url, master_key, tmp_path):
    """The generation triggers are not tables (create_all does not make them): an upgraded
    database gets the same ones as a fresh database, and a write there moves the generation."""
    from byok_nb.store.generation import GenerationReader

    hardkit.build_v1_database(db_url, master_key)
    reg = byok_nb.open_registry(db_url, master_key=master_key)
    try:
        reader = GenerationReader(reg._backend.engine)
        before = reader.read()
        reg.add_member("acme", "newcomer", role="org_admin")
        assert reader.read() > before
        reader.close()
    finally:
        reg.close()
    upgraded = _generation_triggers(db_url)
    assert upgraded and all(name.startswith("byok_gen_") for name in upgraded)
    if db_url.startswith("sqlite"):
        fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
        byok_nb.open_registry(fresh, master_key=master_key).close()
        assert _generation_triggers(fresh) == upgraded
    else:
        with pgkit.throwaway_database() as fresh:
            byok_nb.open_registry(fresh, master_key=master_key).close()
            assert _generation_triggers(fresh) == upgraded
