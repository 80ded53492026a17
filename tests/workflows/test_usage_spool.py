"""A provider call whose usage the store cannot take (W-9, A-1): the completion is returned, the
usage row goes to the durable local spool with a scrubbed warning, and it reaches the store — once
— on the next successful write or the next open."""
from __future__ import annotations

import json
import logging
import shutil
import sqlite3

import pytest

import byok_nb
from byok_nb import LLMField
from byok_nb.store import engine as store_engine

from .conftest import FIREWORKS_KEY


@pytest.fixture
def busy_setup(world, db_path, master_key, monkeypatch):
    """The world's SQLite registry reopened with a short busy timeout, a workflow on ft-llama, and a
    helper that holds the write lock from another connection."""
    world.admin.create_workflow("triage", "search", fields=[LLMField("chat", model="ft-llama")])
    monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_MS", 300)
    reg = byok_nb.open_registry(f"sqlite:///{db_path}", master_key=master_key)
    yield world, reg, db_path
    reg.close()


class WriteLock:
    """Another process's long write transaction, as far as SQLite can tell."""

    def __init__(self, path):
        self.conn = sqlite3.connect(path, isolation_level=None)

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc):
        self.conn.execute("ROLLBACK")
        self.conn.close()


def _spooled(reg) -> list[dict]:
    path = reg.usage_spool.path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_w9_usage_of_a_call_made_while_the_store_is_locked_is_spooled_not_lost(busy_setup, caplog):
    world, reg, db_path = busy_setup
    ana = reg.session(org="acme", user="ana")
    caplog.set_level(logging.WARNING, logger="byok_nb.usage")
    with WriteLock(db_path):
        completion = ana.generate("triage", "chat", "Hello")          # the answer is not lost
        assert completion.text and completion.model == "ft-llama"
        spooled = _spooled(reg)
        assert [(r["org"], r["user"], r["model"], r["ok"], r["input_tokens"]) for r in spooled] == [
            ("acme", "ana", "ft-llama", True, completion.input_tokens)]
        assert reg.usage_spool.path.stat().st_mode & 0o777 == 0o600
    # Said so, in a log line that names the store's trouble and the spool but no secret.
    warning = [r.getMessage() for r in caplog.records if r.name == "byok_nb.usage"]
    assert len(warning) == 1 and "could not be written" in warning[0] and "busy" in warning[0]
    assert str(reg.usage_spool.path) in warning[0]
    assert FIREWORKS_KEY not in warning[0] and FIREWORKS_KEY not in reg.usage_spool.path.read_text()
    assert ana.usage().empty                                          # not in the store yet

    # The next call that records usage writes the spooled row too, and empties the spool.
    ana.generate("triage", "chat", "Again")
    usage = ana.usage()
    assert len(usage) == 2 and usage["model"].tolist() == ["ft-llama", "ft-llama"]
    assert usage["input_tokens"].iloc[0] == completion.input_tokens
    assert not reg.usage_spool.path.exists()
    report = ana.cost_report(by="model")
    assert int(report["calls"].sum()) == 2                            # the rollup counts it too


def test_w9_spooled_usage_is_recorded_when_the_registry_is_next_opened(busy_setup, master_key):
    world, reg, db_path = busy_setup
    with WriteLock(db_path):
        reg.session(org="acme", user="cy").generate("triage", "chat", "Hello")
    assert len(_spooled(reg)) == 1
    reg.close()
    with byok_nb.open_registry(f"sqlite:///{db_path}", master_key=master_key) as again:
        usage = again.session(org="acme", user="ana").usage()
        assert usage["model"].tolist() == ["ft-llama"]
        assert not again.usage_spool.path.exists()


def test_w9_a_spooled_row_is_recorded_exactly_once_even_if_the_spool_survives_its_replay(busy_setup):
    """A crash between the replay's commit and removing the file leaves the file behind: replaying
    it again records nothing twice (each row's id is committed with it)."""
    world, reg, db_path = busy_setup
    with WriteLock(db_path):
        reg.session(org="acme", user="ana").generate("triage", "chat", "Hello")
    path = reg.usage_spool.path
    copy = path.with_name("copy.jsonl")
    shutil.copy(path, copy)
    assert reg.usage_spool.replay() == 1
    shutil.copy(copy, path)                      # as if the process died before unlinking
    assert reg.usage_spool.replay() == 0
    assert len(reg.session(org="acme", user="ana").usage()) == 1
    assert not path.exists()


def test_w9_a_failed_call_while_the_store_is_locked_still_raises_and_is_spooled(busy_setup):
    world, reg, db_path = busy_setup
    world.fakes.fireworks.fail_status = 503
    try:
        with WriteLock(db_path):
            with pytest.raises(byok_nb.ProviderError):
                reg.session(org="acme", user="ana").generate("triage", "chat", "Hello")
    finally:
        world.fakes.fireworks.fail_status = None
    assert [(r["ok"], r["model"], r["error"]) for r in _spooled(reg)] == [(False, "ft-llama", "ProviderError 503")]


def test_w9_an_unwritable_spool_makes_the_call_say_its_usage_was_not_recorded(busy_setup):
    world, reg, db_path = busy_setup
    reg.usage_spool.path.parent.mkdir(parents=True, exist_ok=True)
    reg.usage_spool.path.mkdir()                 # the spool file cannot be opened for appending
    with WriteLock(db_path):
        with pytest.raises(byok_nb.StoreUnavailable) as info:
            reg.session(org="acme", user="ana").generate("triage", "chat", "Hello")
    assert "provider answered" in info.value.message and "not writable" in info.value.message
    assert FIREWORKS_KEY not in info.value.message


def test_w9_a_spool_the_store_refuses_is_set_aside_not_retried_forever(busy_setup, caplog):
    world, reg, db_path = busy_setup
    with WriteLock(db_path):
        reg.session(org="acme", user="ana").generate("triage", "chat", "Hello")
    path = reg.usage_spool.path
    bad = [dict(row, input_tokens="lots") for row in _spooled(reg)]
    path.write_text("".join(json.dumps(row) + "\n" for row in bad))
    caplog.set_level(logging.ERROR, logger="byok_nb.usage")
    assert reg.usage_spool.replay_quietly() == 0
    assert not path.exists()
    aside = list(path.parent.glob("*.rejected-*.jsonl"))
    assert len(aside) == 1 and json.loads(aside[0].read_text())["input_tokens"] == "lots"
    assert any("moved to" in r.getMessage() for r in caplog.records)
    reg.session(org="acme", user="ana").generate("triage", "chat", "Again")   # and calls go on
    assert len(reg.session(org="acme", user="ana").usage()) == 1


def test_w9_spooled_usage_reaches_either_backend_exactly_once(world, monkeypatch, registry_backend):
    """The store refuses the usage write once (as an unreachable PostgreSQL or a busy SQLite would):
    the row is spooled, then replayed into that backend with its id, and a second replay of the
    same file adds nothing."""
    from byok_nb.store import usage_log
    from byok_nb.core.errors import StoreUnavailable

    world.admin.create_workflow("triage", "search", fields=[LLMField("chat", model="ft-llama")])
    original = usage_log._write
    calls = {"n": 0}

    def unavailable_once(conn, rows):
        calls["n"] += 1
        if calls["n"] == 1:
            raise StoreUnavailable("the registry database is unavailable; try again (server closed the connection)")
        return original(conn, rows)

    monkeypatch.setattr(usage_log, "_write", unavailable_once)
    reg = world.registry
    completion = world.contributor.generate("triage", "chat", "Hello")
    assert completion.text and len(_spooled(reg)) == 1
    saved = reg.usage_spool.path.read_text()
    assert reg.usage_spool.replay() == 1
    reg.usage_spool.path.write_text(saved)
    assert reg.usage_spool.replay() == 0
    usage = world.admin.usage()
    assert usage[["model", "ok"]].values.tolist() == [["ft-llama", True]]
    assert usage["input_tokens"].iloc[0] == completion.input_tokens
