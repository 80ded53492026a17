"""The gateway's batching usage writer: rows written off the event loop in batches, every queued
row written on close, the durable spool when the store refuses, a bad row never taking good ones
with it."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from byok_nb.core.errors import StoreUnavailable
from byok_nb.server import usage_writer
from byok_nb.server.usage_writer import UsageWriter
from byok_nb.services.context import Actor, Context
from byok_nb.store import read_tx, schema

pytestmark = pytest.mark.sqlite_only


def _row(i: int, model: str = "echo") -> dict:
    return {"model": model, "model_type": "custom", "provider": "openai_compatible",
            "input_cost_per_token": None, "output_cost_per_token": None, "ok": True, "latency_ms": 1.0,
            "input_tokens": i, "output_tokens": 1, "ts": dt.datetime.now(dt.UTC)}


def _count(engine) -> int:
    with read_tx(engine) as conn:
        return conn.execute(select(func.count()).select_from(schema.usage_log)).scalar_one()


@pytest.fixture
def ctx(acme):
    backend = acme.registry._backend
    return Context(backend, Actor(org="acme", org_id=acme.admin.org_id, user="cy"))


def test_g5_writer_writes_every_row_by_close(ctx):
    writer = UsageWriter(ctx.engine, ctx.spool)
    for i in range(500):
        writer.record(ctx, _row(i))
    writer.close()
    assert _count(ctx.engine) == 500 and writer.written == 500
    with read_tx(ctx.engine) as conn:
        users = set(conn.execute(select(schema.usage_log.c.user_name)).scalars())
    assert users == {"cy"}
    writer.record(ctx, _row(1))   # after close: written at once, not lost
    assert _count(ctx.engine) == 501


def test_g5_writer_spools_when_the_store_refuses_and_replays_later(ctx, monkeypatch):
    real = usage_writer.record_rows

    def refuse(*a, **k):
        raise StoreUnavailable("database is locked")

    monkeypatch.setattr(usage_writer, "record_rows", refuse)
    writer = UsageWriter(ctx.engine, ctx.spool)
    for i in range(3):
        writer.record(ctx, _row(i))
    writer.close()
    assert writer.spooled == 3 and _count(ctx.engine) == 0 and ctx.spool.pending()
    monkeypatch.setattr(usage_writer, "record_rows", real)
    writer = UsageWriter(ctx.engine, ctx.spool)
    writer.record(ctx, _row(9))   # the next successful write replays the spool
    writer.close()
    assert _count(ctx.engine) == 4 and not ctx.spool.pending()


def test_g5_writer_a_bad_row_does_not_take_the_batch_with_it(ctx):
    writer = UsageWriter(ctx.engine, ctx.spool)
    rows = [_row(1), dict(_row(2), input_tokens=-5), _row(3)]
    writer._write([dict(r, org="acme", user="cy") for r in rows])   # one batch, one bad row
    writer.close()
    assert _count(ctx.engine) == 2 and writer.rejected == 1
