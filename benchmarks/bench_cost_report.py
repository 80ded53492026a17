"""F-2: cost_report over N recorded usage rows, end to end from the store, beside its baselines.

    .venv/bin/python benchmarks/bench_cost_report.py --rows 10000000          # full size (minutes)
    .venv/bin/python benchmarks/bench_cost_report.py --rows 1000000 --keep    # keep the DB file
    .venv/bin/python benchmarks/bench_cost_report.py --db /tmp/b.db --reuse   # re-measure a kept DB

What it does, in one run:

1. records N usage rows through the public ``analytics.record_usage_batch`` in batches (one
   transaction per batch) and reports the recording rate (rows/s; target >= 20,000);
2. times ``Session.cost_report(by=...)`` — a fresh read from the store each call, nothing warm in
   Python — median of ``--repeat`` runs (target < 0.5 s at 10 M rows);
3. the baselines over the same raw rows: SQLite's own GROUP BY, pandas ``read_sql`` + groupby,
   and DuckDB over an in-memory frame (the frame is loaded once, outside the timing: the floor);
4. checks that the report's per-model calls/tokens/cost agree with the SQLite baseline.

The data: one org, 90 days, 5 projects x 4 workflows x 2 fields, 12 models (platform models at
catalogue prices, custom models priced, free, unpriced, and one whose price changes half-way).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

import byok_nb
from byok_nb.services import analytics

PLATFORM = ["openai/gpt-4o", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4.5", "google/gemini-2.5-flash",
            "meta-llama/llama-3.1-8b-instruct", "deepseek/deepseek-chat-v3-0324", "x-ai/grok-3-mini",
            "meta-llama/llama-3.3-70b-instruct:free"]
CUSTOM = [  # slug, provider, input price, output price
    ("ft-llama-v4", "fireworks", "0.0000002", "0.0000002"),
    ("tog-qwen", "together", "0.00000088", "0.00000088"),
    ("vllm-local", "openai_compatible", None, None),       # unpriced: untracked calls
    ("free-local", "openai_compatible", "0", "0"),          # free: cost 0
]
PRICE_CHANGE = ("ft-llama-v4", "0.0000003", "0.0000003")   # the second half of the period
DAYS = 90
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def median_time(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def setup(db: Path):
    reg = byok_nb.open_registry(f"sqlite:///{db}", master_key=KEY)
    reg.create_org("acme")
    for p in range(5):
        reg.create_project("acme", f"proj{p}")
    reg.add_member("acme", "ana", role="org_admin")
    s = reg.session(org="acme", user="ana")
    creds = {"fireworks": {"api_key": "fw_bench_key_000000000001"},
             "together": {"api_key": "tg_bench_key_000000000001"},
             "openai_compatible": {"base_url": "http://127.0.0.1:9/v1"}}
    for slug, provider, pin, pout in CUSTOM:
        s.add_model(provider=provider, provider_model_id=f"acct/{slug}", display_name=slug, slug=slug,
                    input_cost_per_token=pin, output_cost_per_token=pout, test=False, **creds[provider])
    return reg, s


def generate_rows(reg, total: int, batch: int, order: str = "random") -> float:
    """Record ``total`` rows through record_usage_batch; returns the recording rate (rows/s).

    ``order="random"`` spreads every batch over the whole period (the worst case for the log's
    (org, ts) index); ``"time"`` records in time order, as a live system does."""
    rng = np.random.default_rng(42)
    models = [(m, "platform", "openrouter") for m in PLATFORM] + [(c[0], "custom", c[1]) for c in CUSTOM]
    prices = {}
    from byok_nb.catalog import get_platform_model
    for m in PLATFORM:
        pm = get_platform_model(m)
        prices[m] = (pm.input_cost_per_token, pm.output_cost_per_token)
    for slug, _, pin, pout in CUSTOM:
        prices[slug] = (pin, pout)
    fields = [(f"proj{p}", f"wf{p}_{w}", f"field{k}") for p in range(5) for w in range(4) for k in range(2)]
    # Each field uses 3 of the 12 models.
    field_models = [rng.choice(len(models), size=3, replace=False) for _ in fields]
    start_s = START.timestamp()
    half = start_s + DAYS * 86400 / 2
    spent = 0.0
    done = 0
    while done < total:
        n = min(batch, total - done)
        if order == "time":
            ts = start_s + (done + np.sort(rng.random(n)) * n) / total * DAYS * 86400
        else:
            ts = start_s + rng.random(n) * DAYS * 86400
        fidx = rng.integers(0, len(fields), n)
        pick = rng.integers(0, 3, n)
        tin = rng.integers(10, 4000, n)
        tout = rng.integers(1, 1000, n)
        lat = rng.random(n) * 900
        ok = rng.random(n) > 0.01
        rows = []
        for i in range(n):
            f = fields[fidx[i]]
            m = models[field_models[fidx[i]][pick[i]]]
            pin, pout = prices[m[0]]
            if m[0] == PRICE_CHANGE[0] and ts[i] >= half:
                pin, pout = PRICE_CHANGE[1], PRICE_CHANGE[2]
            rows.append({"org": "acme", "ts": float(ts[i]), "project": f[0], "workflow": f[1], "field": f[2],
                         "model": m[0], "model_type": m[1], "provider": m[2],
                         "input_tokens": int(tin[i]), "output_tokens": int(tout[i]) if ok[i] else 0,
                         "latency_ms": float(lat[i]), "ok": bool(ok[i]),
                         "input_cost_per_token": pin, "output_cost_per_token": pout})
        t0 = time.perf_counter()
        analytics.record_usage_batch(reg, rows)
        spent += time.perf_counter() - t0
        done += n
        if done % (batch * 10) == 0 or done == total:
            print(f"  recorded {done:,} rows ({done / spent:,.0f} rows/s in record_usage_batch)", flush=True)
    return total / spent


SQLITE_GROUP_BY = """
SELECT model, COUNT(*) AS calls, SUM(input_tokens), SUM(output_tokens),
       SUM(CASE WHEN input_cost_per_token IS NOT NULL AND output_cost_per_token IS NOT NULL
                THEN input_tokens * CAST(input_cost_per_token AS REAL)
                   + output_tokens * CAST(output_cost_per_token AS REAL) END) AS cost_usd,
       SUM(input_cost_per_token IS NULL OR output_cost_per_token IS NULL) AS untracked_calls
FROM usage_log WHERE +org_id = ? GROUP BY model
"""
# "+org_id": a table scan. With every row in one org, SQLite's planner would otherwise walk the
# (org_id, ts) index and fetch each row by rowid in time order — random I/O, ~5x slower here.
RAW_COLUMNS = ("SELECT model, input_tokens, output_tokens, input_cost_per_token, output_cost_per_token "
               "FROM usage_log WHERE +org_id = ?")


def sqlite_group_by(db: Path, org_id: int):
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return con.execute(SQLITE_GROUP_BY, (org_id,)).fetchall()
    finally:
        con.close()


def pandas_frame(db: Path, org_id: int):
    import sqlite3

    import pandas as pd

    con = sqlite3.connect(db)
    try:
        return pd.read_sql(RAW_COLUMNS, con, params=(org_id,))
    finally:
        con.close()


def pandas_group(frame):
    priced = frame["input_cost_per_token"].notna() & frame["output_cost_per_token"].notna()
    pin = frame["input_cost_per_token"].astype("float64")
    pout = frame["output_cost_per_token"].astype("float64")
    frame = frame.assign(cost_usd=frame["input_tokens"] * pin + frame["output_tokens"] * pout,
                         untracked_calls=~priced, calls=1)
    return frame.groupby("model").agg(calls=("calls", "sum"), input_tokens=("input_tokens", "sum"),
                                      output_tokens=("output_tokens", "sum"), cost_usd=("cost_usd", "sum"),
                                      untracked_calls=("untracked_calls", "sum"))


def pandas_read_sql_groupby(db: Path, org_id: int):
    return pandas_group(pandas_frame(db, org_id))


DUCKDB_QUERY = """
SELECT model, COUNT(*) AS calls, SUM(input_tokens), SUM(output_tokens),
       SUM(input_tokens * pin + output_tokens * pout) AS cost_usd,
       SUM(CASE WHEN pin IS NULL OR pout IS NULL THEN 1 ELSE 0 END)
FROM frame GROUP BY model
"""


def duckdb_frame(frame):
    """The frame as an analyst would keep it warm: prices as float64, the model as a category."""
    return frame.assign(model=frame["model"].astype("category"),
                        pin=frame["input_cost_per_token"].astype("float64"),
                        pout=frame["output_cost_per_token"].astype("float64"))[
        ["model", "input_tokens", "output_tokens", "pin", "pout"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--db", type=Path, default=Path("/tmp/byok_nb_bench_cost_report.db"))
    ap.add_argument("--reuse", action="store_true", help="measure an existing DB (made with --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the DB file afterwards")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--slow-repeat", type=int, default=3, help="repeats of the multi-second baselines")
    ap.add_argument("--skip-pandas", action="store_true", help="skip the pandas and DuckDB baselines")
    ap.add_argument("--order", choices=("random", "time"), default="random",
                    help="timestamps of generated rows: random over the period, or in time order")
    args = ap.parse_args(argv)

    print(f"F-2 cost_report benchmark: {args.rows:,} rows ({args.order} order), SQLite file {args.db}, "
          f"{os.cpu_count()} CPU(s), Python {sys.version.split()[0]}")
    global KEY
    key_file = args.db.with_suffix(".key")
    if args.reuse:
        KEY = key_file.read_text()
        reg = byok_nb.open_registry(f"sqlite:///{args.db}", master_key=KEY)
        s = reg.session(org="acme", user="ana")
        rate = None
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{args.db}{suffix}").unlink(missing_ok=True)
        KEY = byok_nb.generate_master_key()
        key_file.write_text(KEY)
        reg, s = setup(args.db)
        t0 = time.perf_counter()
        rate = generate_rows(reg, args.rows, args.batch, args.order)
        print(f"  generated in {time.perf_counter() - t0:,.0f} s (row building included)")
    with reg._engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        n_rows = conn.exec_driver_sql("SELECT COUNT(*) FROM usage_log").scalar_one()
        n_rollup = conn.exec_driver_sql("SELECT COUNT(*) FROM usage_rollup").scalar_one()
    org_id = s.org_id
    print(f"usage_log rows: {n_rows:,}; usage_rollup rows: {n_rollup:,}; "
          f"DB size {args.db.stat().st_size / 1e9:.2f} GB")

    results = {}
    for by in ("model", "day", "workflow", "project", "provider"):
        t, report = median_time(lambda: s.cost_report(by=by), args.repeat)
        results[f"cost_report(by={by!r})"] = t
        if by == "model":
            model_report = report
    t_sql, sql_rows = median_time(lambda: sqlite_group_by(args.db, org_id), args.slow_repeat)
    results["SQLite GROUP BY over raw rows"] = t_sql
    duck = None
    if not args.skip_pandas:
        t_pd, _ = median_time(lambda: pandas_read_sql_groupby(args.db, org_id), args.slow_repeat)
        results["pandas read_sql + groupby"] = t_pd
        try:
            import duckdb
        except ImportError:  # pragma: no cover
            print("duckdb not installed (pip install byok_nb[bench]); skipping that baseline")
        else:
            frame = duckdb_frame(pandas_frame(args.db, org_id))  # loaded once, outside the timing
            con = duckdb.connect()
            con.register("frame", frame)
            t_duck, duck = median_time(lambda: con.execute(DUCKDB_QUERY).fetchall(), args.repeat)
            results["DuckDB over an in-memory frame"] = t_duck

    # Agreement: the report against SQLite's float GROUP BY.
    by_model = {r[0]: r for r in sql_rows}
    for _, row in model_report.iterrows():
        ref = by_model[row["model"]]
        assert row["calls"] == ref[1] and row["input_tokens"] == ref[2] and row["output_tokens"] == ref[3]
        assert row["untracked_calls"] == ref[5]
        if ref[4] is not None:
            assert abs(row["cost_usd"] - ref[4]) <= 1e-6 * max(1.0, ref[4]), (row, ref)
        else:
            assert np.isnan(row["cost_usd"])
    total = sum((d for d in model_report["cost_usd_exact"] if d is not None), Decimal(0))
    print(f"report agrees with SQLite's GROUP BY per model; total cost ${total} "
          f"({int(model_report['untracked_calls'].sum()):,} untracked calls)")

    print()
    print(f"{'measurement':42s} {'median s':>10s} {'vs cost_report(model)':>22s}")
    base = results["cost_report(by='model')"]
    for name, t in results.items():
        print(f"{name:42s} {t:10.4f} {t / base:21.1f}x")
    if rate is not None:
        print(f"{'recording rate (record_usage_batch)':42s} {rate:10,.0f} rows/s (target >= 20,000)")
    verdict = "PASS" if base < 0.5 else "FAIL"
    print(f"F-2 target cost_report < 0.5 s median at {n_rows:,} rows: {verdict} ({base * 1000:.1f} ms)")
    reg.close()
    if not args.keep and not args.reuse:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{args.db}{suffix}").unlink(missing_ok=True)
        key_file.unlink(missing_ok=True)
    return 0


KEY = ""

if __name__ == "__main__":
    raise SystemExit(main())
