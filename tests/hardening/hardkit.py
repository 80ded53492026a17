"""Helpers of the hardening suite: drafts, a v1 database builder, the workers of the
multi-process tests (importable by spawned children, which import only byok_nb and this module)
and the scripts the crash tests run in a subprocess and kill (``python hardkit.py SCENARIO ...``).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

FW_KEY = "fw_hardening_Fireworks_Secret_8Kq2Lm4Z"
FW_KEY_2 = "fw_hardening_Second_Secret_3Rt7Yp1X"
OAI_KEY = "sk-hardening-OpenAICompat-Secret-6Wd9"
AWS_SECRET = "hardening/AwsSecretAccessKey+Zz8Qq1Ww2Ee"
AWS_ACCESS_KEY_ID = "AKIAHARDENINGEXAMPLE"


def fireworks(**overrides: Any) -> dict[str, Any]:
    return {"provider": "fireworks", "api_key": FW_KEY,
            "provider_model_id": "accounts/acme/models/llama-ft", "display_name": "Llama FT",
            **overrides}


def openai_compatible(**overrides: Any) -> dict[str, Any]:
    return {"provider": "openai_compatible", "api_key": OAI_KEY, "base_url": "http://127.0.0.1:9/v1",
            "provider_model_id": "qwen2.5-7b", "display_name": "Self-hosted Qwen", **overrides}


def bedrock_iam(**overrides: Any) -> dict[str, Any]:
    return {"provider": "bedrock", "auth_method": "iam", "aws_region": "us-west-2",
            "aws_access_key_id": AWS_ACCESS_KEY_ID, "aws_secret_access_key": AWS_SECRET,
            "provider_model_id": "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "display_name": "Claude on Bedrock", **overrides}


def secret_of(session, slug: str) -> str:
    """The decrypted secret of a model, through the same path generation uses."""
    _, target = session._call_target(slug)
    wrapped = target.api_key or target.aws_secret_access_key
    return wrapped.get_secret_value()


def make_acme(reg, admins: tuple[str, ...] = ("ana",)) -> None:
    reg.create_org("acme")
    reg.create_project("acme", "search")
    for user in admins:
        reg.add_member("acme", user, role="org_admin")


def bulk_models(reg, n: int, *, org: str = "acme", prefix: str = "bulk") -> dict[str, str]:
    """Insert ``n`` Fireworks models straight into the store, encrypted exactly as the registry
    encrypts (its SecretBox; record id, field and the row's bound columns as associated data): much faster than n add_model
    calls. Returns slug -> secret."""
    from sqlalchemy import select

    from byok_nb.core.secrets import mask_secret
    from byok_nb.store import schema, write_tx

    now = dt.datetime.now(dt.timezone.utc)
    box = reg._backend.box
    out, rows = {}, []
    with write_tx(reg._engine) as conn:
        org_id = conn.execute(select(schema.orgs.c.id).where(schema.orgs.c.name == org)).scalar_one()
        for i in range(n):
            record_id, slug = uuid.uuid4().hex, f"{prefix}-{i:05d}"
            secret = f"fw_{prefix}{i:05d}_{uuid.uuid4().hex}"
            out[slug] = secret
            rows.append(dict(
                id=record_id, org_id=org_id, slug=slug, provider="fireworks", provider_model_id="m",
                display_name="", max_tokens=4096, supports_json_mode=True, supports_vision=False,
                supports_tool_use=True, supports_reasoning=False, reasoning_parameter="max_tokens",
                secret_key_id=box.key_id, secret_masked=mask_secret(secret), active=True,
                created_at=now, updated_at=now, created_by="bulk"))
            rows[-1]["secret_ciphertext"] = box.seal_row(secret, rows[-1])
        conn.execute(schema.custom_models.insert(), rows)
    return out


def stored_secrets(url: str) -> dict[str, tuple[str, bytes, str | None, tuple]]:
    """"org/slug" (+ "#deleted") -> (record id, ciphertext, key id, bound column values) of every
    stored secret, straight from the store."""
    from sqlalchemy import create_engine, select

    from byok_nb.core.secrets import BOUND_COLUMNS
    from byok_nb.store import schema

    cm, orgs = schema.custom_models, schema.orgs
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(orgs.c.name, cm.c.slug, cm.c.active, cm.c.id, cm.c.secret_ciphertext, cm.c.secret_key_id,
                       *(cm.c[name] for name in BOUND_COLUMNS))
                .select_from(cm.join(orgs, orgs.c.id == cm.c.org_id))
                .where(cm.c.secret_ciphertext.is_not(None))).mappings()
            return {f"{r['name']}/{r['slug']}" + ("" if r["active"] else "#deleted"):
                    (r["id"], bytes(r["secret_ciphertext"]), r["secret_key_id"],
                     tuple((name, r[name]) for name in BOUND_COLUMNS)) for r in rows}
    finally:
        engine.dispose()


def readable_by(key: str, stored: dict[str, tuple[str, bytes, str | None]]) -> set[str]:
    """The slugs whose ciphertext ``key`` decrypts (the GCM tag decides; key ids are ignored)."""
    from byok_nb.core.secrets import SecretBox, UnreadableSecret, decode_master_key

    box = SecretBox(decode_master_key(key))
    out = set()
    for slug, (record_id, blob, _, bound) in stored.items():
        try:
            box.decrypt(blob, record_id=record_id, field="secret", bound=dict(bound))
        except UnreadableSecret:
            continue
        out.add(slug)
    return out


# -- schema version 1 --------------------------------------------------------------------------
V1_SECRETS = {"fw-prod": FW_KEY, "fw-old": FW_KEY_2, "bedrock-claude": AWS_SECRET, "qwen": OAI_KEY}


def build_v1_database(url: str, master_key: str) -> dict[str, Any]:
    """A database as byok_nb 0.1 left it: the frozen v1 tables only, version 1 recorded, and
    data in every table, secrets encrypted the way 0.1 encrypted them (associated data: record id
    and field only). Returns what was written."""
    from sqlalchemy import create_engine

    import schema_v1 as v1
    from byok_nb.core.secrets import SecretBox, decode_master_key, legacy_associated_data, mask_secret

    box = SecretBox(decode_master_key(master_key))
    now = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    engine = create_engine(url)
    ids: dict[str, str] = {}
    try:
        with engine.begin() as conn:
            v1.metadata.create_all(conn)
            conn.execute(v1.schema_info.insert().values(key="schema_version", value="1"))
            org_id = conn.execute(v1.orgs.insert().values(name="acme", created_at=now)).inserted_primary_key[0]
            other_id = conn.execute(v1.orgs.insert().values(name="globex", created_at=now)).inserted_primary_key[0]
            project_id = conn.execute(v1.projects.insert().values(
                org_id=org_id, name="search", created_at=now)).inserted_primary_key[0]
            conn.execute(v1.members.insert(), [
                {"org_id": org_id, "user_name": "ana", "role": "org_admin", "project_id": 0},
                {"org_id": org_id, "user_name": "cy", "role": "contributor", "project_id": project_id},
                {"org_id": other_id, "user_name": "gil", "role": "org_admin", "project_id": 0},
            ])
            rows = [
                ("fw-prod", "fireworks", True, {}),
                ("fw-old", "fireworks", False, {}),
                ("bedrock-claude", "bedrock", True,
                 {"auth_method": "iam", "aws_region": "us-west-2", "aws_access_key_id": AWS_ACCESS_KEY_ID}),
                ("qwen", "openai_compatible", True, {"base_url": "http://127.0.0.1:9/v1"}),
            ]
            for slug, provider, active, extra in rows:
                record_id = uuid.uuid4().hex
                ids[slug] = record_id
                secret = V1_SECRETS[slug]
                conn.execute(v1.custom_models.insert().values(
                    id=record_id, org_id=org_id, slug=slug, provider=provider,
                    provider_model_id=f"model-of-{slug}", display_name=f"Display {slug}", max_tokens=2048,
                    supports_json_mode=True, supports_vision=False, supports_tool_use=True,
                    supports_reasoning=False, reasoning_parameter="max_tokens",
                    input_cost_per_token="0.0000003", output_cost_per_token="0.0000006", price_source="user",
                    secret_ciphertext=box.encrypt_with(secret, legacy_associated_data(record_id, "secret")),
                    secret_key_id=box.key_id, secret_masked=mask_secret(secret), active=active,
                    created_at=now, updated_at=now, created_by="ana", **extra))
                conn.execute(v1.audit_log.insert().values(
                    org_id=org_id, ts=now, actor="ana", action="add", slug=slug, model_id=record_id,
                    changes={"provider": provider, "api_key": "rotated"}))
            wf_id = conn.execute(v1.workflows.insert().values(
                org_id=org_id, project_id=project_id, name="triage", active=True,
                created_at=now)).inserted_primary_key[0]
            conn.execute(v1.workflow_fields.insert().values(
                workflow_id=wf_id, name="summary", model_ref="fw-prod", tools=[], image_inputs=False,
                structured_output=False, reasoning_budget=None, reasoning_effort=None))
    finally:
        engine.dispose()
    return {"ids": ids, "secrets": dict(V1_SECRETS)}


# -- multi-process workers (spawn) ---------------------------------------------------------------
def churn_worker(url: str, master_key: str, worker: int, n_ops: int, slugs: list[str], barrier,
                 out_dir: str) -> None:
    """Add, edit and delete random overlapping slugs as admin ``w<worker>``; log every outcome.

    Each acknowledged add or edit sets a unique display name and secret (its token), so the
    parent can match the final state and the audit log against the acknowledged operations.
    """
    log: list[dict[str, Any]] = []
    try:
        import byok_nb

        rng = random.Random(1000 + worker)
        reg = byok_nb.open_registry(url, master_key=master_key)
        session = reg.session(org="acme", user=f"w{worker}")
        from racekit import warm_up   # tests/ is on the spawned child's sys.path too

        warm_up(session)
        barrier.wait(timeout=120)
        for i in range(n_ops):
            slug = rng.choice(slugs)
            kind = rng.choice(("add", "add", "edit", "delete"))
            token = f"w{worker}-op{i}"
            entry = {"worker": worker, "op": i, "kind": kind, "slug": slug, "token": token}
            try:
                if kind == "add":
                    model = session.add_model(test=False, **fireworks(
                        slug=slug, display_name=token, api_key=f"fw_{token}_secret_padding"))
                    entry["model_id"] = model.id
                elif kind == "edit":
                    model = session.update_model(slug, display_name=token,
                                                 api_key=f"fw_{token}_secret_padding")
                    entry["model_id"] = model.id
                else:
                    session.delete_model(slug)
                entry["outcome"] = "ok"
            except (byok_nb.Conflict, byok_nb.NotFound) as exc:
                entry["outcome"] = type(exc).__name__
            except byok_nb.RegistryError as exc:
                entry["outcome"] = "unexpected"
                entry["error"] = repr(exc)
            except BaseException as exc:  # noqa: BLE001 - what the test is looking for
                entry["outcome"] = "escaped"
                entry["error"] = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
            log.append(entry)
        reg.close()
    except BaseException as exc:  # noqa: BLE001
        log.append({"worker": worker, "outcome": "setup", "error": f"{type(exc).__name__}: {exc}"})
    Path(out_dir, f"worker-{worker}.json").write_text(json.dumps(log))


def run_spawned(target, args_per_process: list[tuple], timeout: float = 120.0) -> None:
    """Start one spawn process per argument tuple and wait for all; fail loudly on a hang."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for args in args_per_process]
    for proc in procs:
        proc.start()
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(max(0.1, deadline - time.monotonic()))
    hung = [p for p in procs if p.is_alive()]
    for proc in hung:
        proc.kill()
        proc.join()
    assert not hung, f"{len(hung)} worker(s) still running after {timeout:.0f} s"


def open_worker(url: str, master_key: str, barrier, results) -> None:
    """Open (creating or upgrading) the registry at the same moment as the other workers."""
    try:
        import byok_nb

        barrier.wait(timeout=120)
        reg = byok_nb.open_registry(url, master_key=master_key)
        reg.close()
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001
        results.put(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")


# -- crash scenarios: run in a subprocess, killed with SIGKILL by the test ------------------------
def start_scenario(*args: str) -> subprocess.Popen:
    """Run ``python hardkit.py ARGS`` with stdout piped; the test waits for its marker line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(HERE / "hardkit.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_for_marker(proc: subprocess.Popen, marker: str, timeout: float = 60.0) -> None:
    """Block until the child prints ``marker`` (or fail with its stderr)."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=max(0.0, deadline - time.monotonic())):
            line = proc.stdout.readline()
            if line.strip() == marker:
                return
            if line == "":
                break
    proc.kill()
    _, err = proc.communicate(timeout=10)
    raise AssertionError(f"child never printed {marker!r}; rc={proc.returncode}; stderr:\n{err[-4000:]}")


@contextlib.contextmanager
def running_scenario(*args: str) -> Iterator[subprocess.Popen]:
    """:func:`start_scenario`, with the child killed (if still running) and its pipes closed after."""
    child = start_scenario(*args)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()


def kill_at_marker(child: subprocess.Popen, marker: str) -> None:
    """SIGKILL the child as soon as it prints ``marker`` (mid-transaction), and reap it."""
    wait_for_marker(child, marker)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)


def _scenario_hold_add(url: str, master_key: str, padding_rows: str) -> None:
    """A real add_model of slug "doomed" that, inside its transaction (after the insert and the
    audit row), writes many more rows, says HOLDING and waits to be killed."""
    import byok_nb
    from byok_nb.services import models as models_module
    from byok_nb.store import schema

    original = models_module._audit

    def audit_then_hang(ctx, action, slug, model_id, changes, conn=None):
        original(ctx, action, slug, model_id, changes, conn)
        if conn is None or slug != "doomed":
            return
        now = dt.datetime.now(dt.timezone.utc)
        blob = os.urandom(2048)   # big enough for the write set to spill into the WAL file
        conn.execute(schema.custom_models.insert(), [dict(
            id=uuid.uuid4().hex, org_id=ctx.org_id, slug=f"doomed-{n}", provider="fireworks",
            provider_model_id="x", display_name="", max_tokens=1, supports_json_mode=True,
            supports_vision=False, supports_tool_use=True, supports_reasoning=False,
            reasoning_parameter="max_tokens", secret_ciphertext=blob, active=True,
            created_at=now, updated_at=now, created_by="killer") for n in range(int(padding_rows))])
        print("HOLDING", flush=True)
        time.sleep(600)

    models_module._audit = audit_then_hang
    reg = byok_nb.open_registry(url, master_key=master_key)
    reg.session(org="acme", user="ana").add_model(test=False, **fireworks(slug="doomed", display_name="Doomed"))


def _scenario_rotate_hang(url: str, old_key: str, new_key: str) -> None:
    """A rotation that writes its first chunk of new ciphertexts, says MID and waits to be killed."""
    import byok_nb
    from byok_nb.services import rotation

    original = rotation._write_chunk
    calls = {"n": 0}

    def write_then_hang(conn, chunk):
        original(conn, chunk)
        calls["n"] += 1
        if calls["n"] == 2:   # two chunks re-encrypted, uncommitted
            print("MID", flush=True)
            time.sleep(600)

    rotation._write_chunk = write_then_hang
    reg = byok_nb.open_registry(url, master_key=old_key)
    reg.rotate_master_key(new_key)


SCENARIOS = {"hold-add": _scenario_hold_add, "rotate-hang": _scenario_rotate_hang}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](*sys.argv[2:])

