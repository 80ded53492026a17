"""The gateway's usage writer: CPU per row of a batch written with ``record_rows``, as the writer
thread writes them (org ids kept across batches), on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/bench_usage_batches.py                    # both stores, 50 and 100 a batch
    .venv/bin/python benchmarks/bench_usage_batches.py --backends sqlite --rows 20000

The writer shares the gateway's interpreter with the requests, so its CPU per row is taken from
every request's budget (F-7). PostgreSQL needs the server scripts/system_deps.sh starts.
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_kit as kit  # noqa: E402

import byok_nb  # noqa: E402
from byok_nb.store.usage_log import record_rows  # noqa: E402


def gateway_row() -> dict:
    """A row as the gateway's shared call hands it to the writer."""
    return {"org": kit.ORG, "user": kit.USER, "model": kit.SLUG, "model_type": "custom",
            "provider": "openai_compatible", "input_cost_per_token": "0.000001",
            "output_cost_per_token": "0.000002", "ok": True, "latency_ms": 1.2, "attempts": 1,
            "input_tokens": 14, "output_tokens": 7, "usage_unknown": False,
            "ts": dt.datetime.now(dt.timezone.utc)}


def measure(engine, batch: int, rows: int) -> tuple[float, float]:
    """(CPU µs a row, wall µs a row) over ``rows`` rows in batches of ``batch``."""
    row = gateway_row()
    try:   # as the writer calls it; a version before the org-id cache (for comparisons) takes none
        write = functools.partial(record_rows, engine, fixed=None, default_user="", org_ids={})
        write([dict(row) for _ in range(batch)])   # warm
    except TypeError:
        write = functools.partial(record_rows, engine, fixed=None, default_user="")
        write([dict(row) for _ in range(batch)])
    written, cpu, wall = 0, time.process_time(), time.perf_counter()
    while written < rows:
        write([dict(row) for _ in range(batch)])
        written += batch
    return (time.process_time() - cpu) / written * 1e6, (time.perf_counter() - wall) / written * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    ap.add_argument("--batches", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--rows", type=int, default=10_000, help="rows per measurement (default 10,000)")
    args = ap.parse_args()
    for backend in args.backends:
        with ExitStack() as stack:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            url = (f"sqlite:///{home / 'registry.db'}" if backend == "sqlite"
                   else stack.enter_context(kit.postgres_database()))
            reg, _, _ = kit.make_registry(url, byok_nb.generate_master_key(), home, "http://127.0.0.1:9/v1")
            try:
                for batch in args.batches:
                    cpu, wall = measure(reg._backend.engine, batch, args.rows)
                    print(f"{backend:10} {batch:4} rows a batch: CPU {cpu:6.1f} us a row, wall {wall:6.1f} us a row",
                          flush=True)
            finally:
                reg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
