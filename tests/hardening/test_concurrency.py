"""Concurrency and crashes (E-2, M-5, M-17): eight processes adding, editing and deleting
overlapping slugs on one SQLite file and on PostgreSQL lose no acknowledged write, leave one
active model per slug and an audit log that matches exactly what was acknowledged, and never let a
driver error ("database is locked", deadlocks, ...) reach a caller; and a writer killed with
SIGKILL inside its transaction leaves a sound SQLite database without any of its writes."""
from __future__ import annotations

import collections
import json
import multiprocessing as mp
import os
import signal

import pytest
from sqlalchemy import create_engine, func, select

import byok_nb
from byok_nb.store import schema

import hardkit
from racekit import add_same_slug_worker

WORKERS = 8
RACE_FIELDS = hardkit.fireworks(display_name="Race", slug="contended")
OPS_PER_WORKER = 25
SLUGS = [f"shared-{i}" for i in range(5)]


def _audit_rows(url: str) -> list[dict]:
    a = schema.audit_log
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                select(a.c.id, a.c.actor, a.c.action, a.c.slug, a.c.model_id, a.c.changes).order_by(a.c.id)).mappings()]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_e2_eight_processes_churning_overlapping_slugs_lose_nothing(db_url, master_key, tmp_path):
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        hardkit.make_acme(reg, admins=tuple(f"w{n}" for n in range(WORKERS)))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    out_dir = tmp_path / "logs"
    out_dir.mkdir()
    hardkit.run_spawned(hardkit.churn_worker, [
        (db_url, master_key, n, OPS_PER_WORKER, SLUGS, barrier, str(out_dir)) for n in range(WORKERS)],
        timeout=150)
    log = [e for n in range(WORKERS) for e in json.loads((out_dir / f"worker-{n}.json").read_text())]

    # Only RegistryError subclasses reached the callers, and only the expected ones.
    bad = [e for e in log if e["outcome"] in ("escaped", "unexpected", "setup")]
    assert not bad, bad[:5]
    assert len(log) == WORKERS * OPS_PER_WORKER
    acked = [e for e in log if e["outcome"] == "ok"]
    kinds = collections.Counter((e["kind"], e["outcome"]) for e in log)
    assert kinds[("add", "ok")] and kinds[("edit", "ok")] and kinds[("delete", "ok")], kinds
    assert kinds[("add", "Conflict")] and kinds[("edit", "NotFound")], kinds   # the races happened

    # The audit log is exactly the acknowledged operations: nothing missing, nothing extra (M-17).
    audit = _audit_rows(db_url)
    assert collections.Counter((r["actor"], r["changes"]["display_name"]) for r in audit
                               if r["action"] in ("add", "reactivate")) == collections.Counter(
        (f"w{e['worker']}", e["token"]) for e in acked if e["kind"] == "add")
    assert collections.Counter((r["actor"], r["slug"], r["changes"]["display_name"]) for r in audit
                               if r["action"] == "edit") == collections.Counter(
        (f"w{e['worker']}", e["slug"], e["token"]) for e in acked if e["kind"] == "edit")
    assert collections.Counter((r["actor"], r["slug"]) for r in audit if r["action"] == "delete") == (
        collections.Counter((f"w{e['worker']}", e["slug"]) for e in acked if e["kind"] == "delete"))
    assert all(r["changes"].get("api_key") == "rotated" for r in audit if r["action"] != "delete")

    # The final state is the last acknowledged write of each slug (audit ids follow commit order
    # of the writes to one row): nothing was lost or overwritten by a stale writer.
    cm = schema.custom_models
    engine = create_engine(db_url)
    with engine.connect() as conn:
        per_slug = dict(conn.execute(select(cm.c.slug, func.count()).where(cm.c.active.is_(True))
                                     .group_by(cm.c.slug)).all())
    engine.dispose()
    assert all(count == 1 for count in per_slug.values()), per_slug
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        s = reg.session(org="acme", user="w0")
        for slug in SLUGS:
            last = [r for r in audit if r["slug"] == slug][-1] if any(r["slug"] == slug for r in audit) else None
            if last is None or last["action"] == "delete":
                assert slug not in per_slug
                continue
            token = last["changes"]["display_name"]
            model = s.get_model(slug)
            assert model.display_name == token
            assert model.id == last["model_id"]
            assert hardkit.secret_of(s, slug) == f"fw_{token}_secret_padding"


@pytest.mark.slow
def test_m5_eight_simultaneous_adds_of_one_slug_one_wins_on_sqlite(db_path, master_key):
    """(The PostgreSQL twin is in test_postgres_parity.py.)"""
    db_url = f"sqlite:///{db_path}"
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        hardkit.make_acme(reg)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    hardkit.run_spawned(add_same_slug_worker,
                        [(db_url, master_key, RACE_FIELDS, barrier, results)] * WORKERS)
    outcomes = sorted(results.get(timeout=10) for _ in range(WORKERS))
    assert outcomes == ["conflict"] * (WORKERS - 1) + ["ok"], outcomes
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        audit = reg.session(org="acme", user="ana").audit_log()
        assert list(audit["action"]) == ["add"]


@pytest.mark.slow
def test_m5_eight_simultaneous_reactivations_of_one_slug_one_wins(db_url, master_key):
    """The same race on a deleted model: exactly one add reactivates it, the rest conflict."""
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        hardkit.make_acme(reg)
        ana = reg.session(org="acme", user="ana")
        first = ana.add_model(test=False, **hardkit.fireworks(slug="contended"))
        ana.delete_model("contended")
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    hardkit.run_spawned(add_same_slug_worker,
                        [(db_url, master_key, RACE_FIELDS, barrier, results)] * WORKERS)
    outcomes = sorted(results.get(timeout=10) for _ in range(WORKERS))
    assert outcomes == ["conflict"] * (WORKERS - 1) + ["ok"], outcomes
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        ana = reg.session(org="acme", user="ana")
        assert list(ana.audit_log()["action"]) == ["add", "delete", "reactivate"]
        assert ana.get_model("contended").id == first.id


def test_e2_writer_killed_mid_transaction_leaves_a_sound_database(db_path, master_key):
    """SIGKILL a process inside add_model's write transaction, after it wrote its row, its audit
    row and 1,500 padding rows (enough to spill into the WAL): the database passes
    integrity_check, every committed model is intact and none of the killed writes exist."""
    url = f"sqlite:///{db_path}"
    with byok_nb.open_registry(url, master_key=master_key) as reg:
        hardkit.make_acme(reg)
        committed = hardkit.bulk_models(reg, 200)
        reg.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="kept"))
    with hardkit.running_scenario("hold-add", url, master_key, "1500") as child:
        hardkit.wait_for_marker(child, "HOLDING")
        wal = db_path.with_name(db_path.name + "-wal")
        assert wal.exists() and wal.stat().st_size > 1_000_000   # uncommitted pages reached the WAL
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)

    with byok_nb.open_registry(url, master_key=master_key) as reg:
        with reg._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        ana = reg.session(org="acme", user="ana")
        slugs = set(ana.list_models(type="custom", include_inactive=True)["ref"])
        assert slugs == set(committed) | {"kept"}        # no "doomed", no "doomed-N"
        assert "doomed" not in set(ana.audit_log()["slug"])
        assert hardkit.secret_of(ana, "kept") == hardkit.FW_KEY
        for slug in list(committed)[::20]:
            assert hardkit.secret_of(ana, slug) == committed[slug]
        # The dead writer's lock is gone: writing works at once, the killed slug is free.
        ana.add_model(test=False, **hardkit.fireworks(slug="doomed"))


@pytest.mark.postgres
def test_e2_writer_killed_mid_transaction_on_postgresql(pg_fresh_url, master_key):
    url = pg_fresh_url
    with byok_nb.open_registry(url, master_key=master_key) as reg:
        hardkit.make_acme(reg)
        committed = hardkit.bulk_models(reg, 50)
    with hardkit.running_scenario("hold-add", url, master_key, "300") as child:
        hardkit.kill_at_marker(child, "HOLDING")
    with byok_nb.open_registry(url, master_key=master_key) as reg:
        ana = reg.session(org="acme", user="ana")
        assert set(ana.list_models(type="custom", include_inactive=True)["ref"]) == set(committed)
        ana.add_model(test=False, **hardkit.fireworks(slug="doomed"))   # the dead row lock is gone


def test_e2_a_write_lock_held_past_the_busy_timeout_is_a_registry_error(db_path, master_key, monkeypatch):
    """A writer that holds the SQLite write lock longer than the busy timeout: other writers get
    a RegistryError (503, "busy … try again"), never sqlite3's "database is locked"; readers are
    not blocked at all (WAL)."""
    from byok_nb.store import engine as store_engine

    url = f"sqlite:///{db_path}"
    with byok_nb.open_registry(url, master_key=master_key) as reg:
        hardkit.make_acme(reg)
        reg.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="kept"))
    with hardkit.running_scenario("hold-add", url, master_key, "10") as child:
        hardkit.wait_for_marker(child, "HOLDING")
        monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_MS", 300)
        with byok_nb.open_registry(url, master_key=master_key) as reg:
            ana = reg.session(org="acme", user="ana")
            assert ana.get_model("kept").slug == "kept"                 # reads go on
            assert list(ana.list_models(type="custom")["ref"]) == ["kept"]
            for call in (lambda: ana.add_model(test=False, **hardkit.fireworks(slug="new")),
                         lambda: ana.update_model("kept", display_name="x"),
                         lambda: ana.delete_model("kept"),
                         lambda: reg.create_org("initech")):
                with pytest.raises(byok_nb.RegistryError) as info:
                    call()
                assert info.value.status_code == 503
                assert "busy" in info.value.message and "try again" in info.value.message
    with byok_nb.open_registry(url, master_key=master_key) as reg:   # and afterwards all is well
        reg.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="new"))


def test_e2_unreachable_database_is_a_registry_error(master_key):
    url = "postgresql+psycopg://someone:s3cret-pw@127.0.0.1:1/nowhere"
    with pytest.raises(byok_nb.RegistryError) as info:
        byok_nb.open_registry(url, master_key=master_key)
    assert info.value.status_code == 503 and "unavailable" in info.value.message
    assert "s3cret-pw" not in info.value.message


# -- first run (M-1): several first visitors at once make exactly one org admin --------------------
FIRST_VISITORS = 6
ROUNDS = 3   # one race per empty store: a single race can pass by luck on a loaded machine


@pytest.fixture
def empty_stores(db_url, master_key, tmp_path):
    """ROUNDS empty registry databases of this test's backend, schema created (as `byok-nb serve`
    makes sure before any kernel starts)."""
    import pgkit

    urls, extra = [db_url], []
    for n in range(1, ROUNDS):
        if db_url.startswith("sqlite"):
            urls.append(f"sqlite:///{tmp_path / f'registry-{n}.db'}")
        else:
            extra.append(pgkit.create_database("byok_nb_first_run"))
            urls.append(extra[-1])
    for url in urls:
        byok_nb.open_registry(url, master_key=master_key).close()
    try:
        yield urls
    finally:
        for url in extra:
            pgkit.drop_database(url)


def _first_run_race(stores, master_key, orgs):
    from racekit import first_run_worker

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(FIRST_VISITORS), ctx.Queue()
    hardkit.run_spawned(first_run_worker, [(stores, master_key, org, f"user{n}", barrier, results)
                                           for n, org in enumerate(orgs)], timeout=180)
    outcomes = dict(results.get(timeout=10) for _ in range(FIRST_VISITORS))
    # per store: {user: outcome}
    return [{user: got[i] if i < len(got) else got[-1] for user, got in outcomes.items()}
            for i in range(len(stores))]


def _memberships(url):
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            orgs = dict(conn.execute(select(schema.orgs.c.id, schema.orgs.c.name)).all())
            members = conn.execute(select(schema.members.c.org_id, schema.members.c.user_name,
                                          schema.members.c.role)).all()
    finally:
        engine.dispose()
    return [(orgs[m.org_id], m.user_name, m.role) for m in members]


@pytest.mark.slow
def test_m1_six_first_visitors_of_the_app_at_once_make_exactly_one_org_admin(empty_stores, master_key, tmp_path):
    """Six Voila kernels bootstrapping the same org on an empty store (SQLite and PostgreSQL)."""
    races = _first_run_race([(url, str(tmp_path)) for url in empty_stores], master_key,
                            ["default"] * FIRST_VISITORS)
    for url, outcomes in zip(empty_stores, races):
        assert sorted(outcomes.values()) == ["admin"] + ["visitor"] * (FIRST_VISITORS - 1), outcomes
        admin = next(user for user, outcome in outcomes.items() if outcome == "admin")
        assert _memberships(url) == [("default", admin, "org_admin")]


@pytest.mark.slow
def test_m1_six_first_visitors_naming_different_orgs_create_exactly_one(empty_stores, master_key, tmp_path):
    """The first-run rule is "a store with no org at all": only one of them can be first."""
    races = _first_run_race([(url, str(tmp_path)) for url in empty_stores], master_key,
                            [f"org{n}" for n in range(FIRST_VISITORS)])
    for url, outcomes in zip(empty_stores, races):
        assert sorted(outcomes.values()) == ["admin"] + ["visitor"] * (FIRST_VISITORS - 1), outcomes
        (org, user, role), = _memberships(url)
        assert role == "org_admin" and outcomes[user] == "admin" and org == f"org{user[len('user'):]}"


@pytest.mark.slow
def test_m1_six_first_sessions_on_the_embedded_default_make_exactly_one_org_admin(master_key, tmp_path):
    """``open_registry().session(org, user)`` from six processes at once on a fresh embedded
    default (BYOK_NB_HOME in tmp): one creates the org and is its admin, the rest are visitors."""
    homes = [tmp_path / f"home-{n}" for n in range(ROUNDS)]
    for home in homes:   # the schema exists before the race (the race is about the first org)
        byok_nb.open_registry(f"sqlite:///{home / 'registry.db'}", master_key=master_key).close()
    races = _first_run_race([(None, str(home)) for home in homes], master_key, ["acme"] * FIRST_VISITORS)
    for home, outcomes in zip(homes, races):
        assert sorted(outcomes.values()) == ["admin"] + ["visitor"] * (FIRST_VISITORS - 1), outcomes
        admin = next(user for user, outcome in outcomes.items() if outcome == "admin")
        assert _memberships(f"sqlite:///{home / 'registry.db'}") == [("acme", admin, "org_admin")]
