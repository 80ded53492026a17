"""A store from before per-user costs (schema 4: no ``attempts`` in the log, a rollup without the
user) opens, and its rollup is rebuilt from the log: totals unchanged, now split by user."""
from __future__ import annotations

import sqlalchemy as sa

import byok_nb
from byok_nb.services.analytics import record_usage_batch
from byok_nb.store import schema

ROWS = [
    {"org": "acme", "user": "ana", "model": "openai/gpt-4o", "input_tokens": 1000, "output_tokens": 100,
     "ts": "2026-11-03T10:00:00"},
    {"org": "acme", "user": "ana", "model": "openai/gpt-4o", "input_tokens": 500, "output_tokens": 50,
     "ts": "2026-11-03T11:00:00", "ok": False},
    {"org": "acme", "user": "cy", "model": "openai/gpt-4o", "input_tokens": 2000, "output_tokens": 0,
     "ts": "2026-11-03T12:00:00"},
    {"org": "acme", "user": "cy", "model": "openai/gpt-4o", "usage_unknown": True, "ts": "2026-11-04T12:00:00"},
]


def _downgrade_to_4(url: str) -> None:
    """Make the store look as schema 4 left it: the old rollup (same totals, no user) and a log
    without ``attempts``."""
    engine = sa.create_engine(url)
    old = sa.MetaData()
    keys = ["org_id", "day", "project", "workflow", "field", "model", "model_type", "provider",
            "input_cost_per_token", "output_cost_per_token"]
    rollup = sa.Table("usage_rollup", old, sa.Column("id", sa.Integer, primary_key=True),
                      *(sa.Column(k, sa.Integer if k == "org_id" else sa.String, nullable=False) for k in keys),
                      *(sa.Column(v, sa.BigInteger, nullable=False)
                        for v in ("calls", "failed_calls", "input_tokens", "output_tokens")),
                      sa.UniqueConstraint(*keys, name="uq_usage_rollup_key"))
    with engine.begin() as conn:
        current = conn.execute(sa.select(schema.usage_rollup)).mappings().all()
        conn.exec_driver_sql("DROP TABLE usage_rollup")
        rollup.create(conn)
        merged: dict[tuple, list[int]] = {}
        for r in current:
            t = merged.setdefault(tuple(r[k] for k in keys), [0, 0, 0, 0])
            for i, v in enumerate(("calls", "failed_calls", "input_tokens", "output_tokens")):
                t[i] += r[v]
        conn.execute(rollup.insert(), [dict(zip(keys, k), calls=t[0], failed_calls=t[1], input_tokens=t[2],
                                            output_tokens=t[3]) for k, t in merged.items()])
        conn.exec_driver_sql("ALTER TABLE usage_log DROP COLUMN attempts")
        conn.exec_driver_sql("UPDATE schema_info SET value = '4' WHERE key = 'schema_version'")
    engine.dispose()


def test_g4_old_store_opens_and_reports_cost_by_user(tmp_path, master_key):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with byok_nb.open_registry(url, master_key=master_key) as reg:
        reg.create_org("acme")
        reg.add_member("acme", "ana", role="org_admin")
        reg.add_member("acme", "cy", role="org_admin")
        assert record_usage_batch(reg, ROWS) == 4
        before = reg.session(org="acme", user="ana").cost_report(by=["day", "model"])
    _downgrade_to_4(url)
    with byok_nb.open_registry(url, master_key=master_key) as reg:
        s = reg.session(org="acme", user="ana")
        after = s.cost_report(by=["day", "model"])
        assert after.equals(before)
        by_user = s.cost_report(by="user").set_index("user")
        assert by_user.loc["ana", "calls"] == 2 and by_user.loc["ana", "failed_calls"] == 1
        assert by_user.loc["ana", "input_tokens"] == 1500
        assert by_user.loc["cy", "calls"] == 2 and by_user.loc["cy", "untracked_calls"] == 1
        assert by_user.loc["cy", "input_tokens"] == 2000
        usage = s.usage()
        assert list(usage["attempts"]) == [1, 1, 1, 1]   # logged before retries: one attempt each
        assert list(usage["user"]) == ["ana", "ana", "cy", "cy"]
