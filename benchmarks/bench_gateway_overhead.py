"""F-6: what the gateway adds to a call, beside what the LiteLLM proxy adds, in the same run.

    .venv/bin/python benchmarks/bench_gateway_overhead.py            # 2,000 calls per path
    .venv/bin/python benchmarks/bench_gateway_overhead.py --calls 500 --no-litellm

Needs: ``make bench-deps litellm-proxy-env`` (the LiteLLM proxy venv). One zero-delay loopback
fake provider (its own process) serves every path; each path is timed with sequential calls on
one keep-alive connection, in interleaved rounds (so a burst of load from elsewhere on the
machine hits every path alike), and reported as the median:

* ``direct``   — ``Session.chat(slug, messages)`` in this process (records usage);
* ``gateway``  — POST /v1/chat/completions to ``byok-nb gateway`` with a ``byok_`` token;
* ``raw``      — the same client straight to the fake (no hop at all);
* ``litellm``  — the same client to the LiteLLM proxy (one worker, no database, its master key as token).

Gateway overhead = gateway − direct (the F-6 target: < 1 ms); LiteLLM's hop = litellm − raw; the
ratio of the two is the "at least 5x lower" target.
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


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000, help="calls per path (default 2000)")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--no-litellm", action="store_true", help="leave the LiteLLM proxy out")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="byok_bench_f6_") as tmp, ExitStack() as stack:
        home = Path(tmp)
        upstream = stack.enter_context(kit.fake_provider())
        key = byok_nb.generate_master_key()
        url = f"sqlite:///{home / 'registry.db'}"
        reg, session, token = kit.make_registry(url, key, home, upstream)
        stack.callback(reg.close)
        base, _ = stack.enter_context(kit.gateway(url, key, home, token))

        paths = {"direct": lambda: session.chat(kit.SLUG, kit.MESSAGES)}
        gw = kit.Client(base + "/v1", token, kit.SLUG)
        body = gw.body()
        paths["gateway"] = lambda: gw.post(body)
        raw = kit.Client(upstream, kit.PROVIDER_KEY, kit.UPSTREAM_MODEL)
        raw_body = raw.body()
        paths["raw"] = lambda: raw.post(raw_body)
        if not args.no_litellm:
            proxy_base = stack.enter_context(kit.litellm_proxy(upstream, home))
            lite = kit.Client(proxy_base + "/v1", kit.LITELLM_MASTER_KEY, kit.SLUG)
            lite_body = lite.body()
            paths["litellm"] = lambda: lite.post(lite_body)

        answer = session.chat(kit.SLUG, kit.MESSAGES)
        print(f"direct answer: {answer.text!r}; gateway answer: "
              f"{gw.post(body)['choices'][0]['message']['content']!r}")
        for fn in paths.values():
            for _ in range(args.warmup):
                fn()
        times: dict[str, list[float]] = {name: [] for name in paths}
        per_round = max(1, args.calls // args.rounds)
        for _ in range(args.rounds):
            for name, fn in paths.items():
                times[name].extend(timed(fn) for _ in range(per_round))

        med = {name: statistics.median(t) for name, t in times.items()}
        p90 = {name: statistics.quantiles(t, n=10)[-1] for name, t in times.items()}
        # A shared machine: the load average goes with every figure.
        print("load average (1, 5, 15 min): " + " ".join(open("/proc/loadavg").read().split()[:3]))
        print(f"\n{per_round * args.rounds} sequential calls per path, {args.rounds} interleaved rounds")
        print(f"{'path':10} {'median ms':>10} {'p90 ms':>8}")
        for name in paths:
            print(f"{name:10} {med[name]:10.3f} {p90[name]:8.3f}")
        overhead = med["gateway"] - med["direct"]
        print(f"\ngateway overhead over direct Session.chat: {overhead:+.3f} ms (target < 1 ms)")
        print(f"gateway hop over the raw call:             {med['gateway'] - med['raw']:+.3f} ms")
        if "litellm" in med:
            hop = med["litellm"] - med["raw"]
            print(f"LiteLLM proxy hop over the raw call:       {hop:+.3f} ms")
            if overhead > 0:
                print(f"LiteLLM hop / gateway overhead:            {hop / overhead:.1f}x (target >= 5x)")
            else:
                print("LiteLLM hop / gateway overhead:            the gateway adds nothing over direct chat")
            print(f"LiteLLM hop / gateway hop (both over raw): {hop / (med['gateway'] - med['raw']):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
