"""F-8: time to the first streamed chunk through the gateway, beside a direct streamed
``Session.chat``, on the same zero-delay loopback fake provider.

    .venv/bin/python benchmarks/bench_gateway_stream.py              # 1,000 streams per path
    .venv/bin/python benchmarks/bench_gateway_stream.py --calls 300

The time is from the call (or the request being sent) to the first chunk that carries text; each
stream is then read to its end (so usage is recorded and the connection is reused). Sequential,
interleaved rounds, medians. The target: gateway within 2 ms of direct.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_kit as kit  # noqa: E402

import byok_nb  # noqa: E402


def direct_first_chunk(session) -> float:
    start = time.perf_counter()
    first = None
    stream = session.chat(kit.SLUG, kit.MESSAGES, stream=True)
    for chunk in stream:
        if first is None and chunk.delta:
            first = time.perf_counter() - start
    if first is None:
        raise RuntimeError("the direct stream carried no text")
    return first * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1000, help="streams per path (default 1000)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=50)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="byok_bench_f8_") as tmp, ExitStack() as stack:
        home = Path(tmp)
        upstream = stack.enter_context(kit.fake_provider())
        key = byok_nb.generate_master_key()
        url = f"sqlite:///{home / 'registry.db'}"
        reg, session, token = kit.make_registry(url, key, home, upstream)
        stack.callback(reg.close)
        base, _ = stack.enter_context(kit.gateway(url, key, home, token))
        gw = kit.Client(base + "/v1", token, kit.SLUG)
        body = gw.body(stream=True, stream_options={"include_usage": True})
        raw = kit.Client(upstream, kit.PROVIDER_KEY, kit.UPSTREAM_MODEL)
        raw_body = raw.body(stream=True, stream_options={"include_usage": True})
        paths = {"direct": lambda: direct_first_chunk(session),
                 "gateway": lambda: gw.first_chunk(body) * 1000,
                 "raw": lambda: raw.first_chunk(raw_body) * 1000}
        for fn in paths.values():
            for _ in range(args.warmup):
                fn()
        times: dict[str, list[float]] = {name: [] for name in paths}
        per_round = max(1, args.calls // args.rounds)
        for _ in range(args.rounds):
            for name, fn in paths.items():
                times[name].extend(fn() for _ in range(per_round))
        med = {name: statistics.median(t) for name, t in times.items()}
        # A shared machine: the load average goes with every figure.
        print("load average (1, 5, 15 min): " + " ".join(open("/proc/loadavg").read().split()[:3]))
        print(f"{per_round * args.rounds} streams per path, {args.rounds} interleaved rounds")
        print(f"{'path':10} {'median ms to first text chunk':>30}")
        for name in paths:
            print(f"{name:10} {med[name]:30.3f}")
        print(f"\ngateway - direct: {med['gateway'] - med['direct']:+.3f} ms (target within 2 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
