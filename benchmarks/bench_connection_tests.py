"""F-3: Test Connection at scale, and the adapter's own cost per call.

(a) 200 Test Connection probes at once (a bounded pool of 64 threads sharing one ProviderHub)
    against a loopback fake provider that answers after 200 ms. Target: under 2 s wall time.
(b) Per-call overhead of the OpenAI-shape adapter (body building, egress-guarded pool, bounded
    streaming read, error mapping, parsing) over a bare ``httpx.Client.post`` to the same fake
    with no delay: medians over N calls each, interleaved so drift hits both alike.
    Target: under 1 ms.

Run:  .venv/bin/python benchmarks/bench_connection_tests.py [--probes 200] [--workers 64] [--calls 2000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from pydantic import SecretStr

from byok_nb.providers.connection_test import probe
from byok_nb.providers import ChatRequest, ProviderHub, Target
from byok_nb.testing import FakeOpenAIProvider

KEY = "fw_BenchmarkKey0000000000"


def concurrent_probes(probes: int, workers: int, delay: float) -> tuple[float, int]:
    """Wall seconds for ``probes`` probes of distinct models, and how many passed."""
    models = [f"accounts/acme/models/ft-{i:03d}" for i in range(probes)]
    with FakeOpenAIProvider("fireworks", api_key=KEY, models=models, delay=delay) as fake:
        os.environ["BYOK_NB_FIREWORKS_BASE_URL"] = fake.base_url
        with ProviderHub(timeout=30, max_connections=max(workers, 128)) as hub:

            def one(model: str) -> bool:
                adapter = hub.adapter(Target("fireworks", model, api_key=SecretStr(KEY)))
                return probe(adapter, model_id=model, max_tokens=4096, supports_json_mode=True).ok

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=workers) as pool:
                passed = sum(pool.map(one, models))
            return time.perf_counter() - started, passed


def per_call_overhead(calls: int) -> dict[str, float]:
    """Median milliseconds per call: adapter.chat, bare post, bare post + .json()."""
    import httpx

    with FakeOpenAIProvider("fireworks", api_key=KEY) as fake:
        os.environ["BYOK_NB_FIREWORKS_BASE_URL"] = fake.base_url
        request = ChatRequest(model="accounts/acme/models/x", max_tokens=64,
                              messages=[{"role": "user", "content": "Reply with {\"status\":\"ok\"}"}])
        body = {"model": request.model, "messages": request.messages, "max_tokens": request.max_tokens}
        url = fake.base_url + "/chat/completions"
        headers = {"Authorization": f"Bearer {KEY}"}
        timings: dict[str, list[float]] = {"adapter": [], "bare": [], "bare_json": []}
        with ProviderHub(timeout=30) as hub, httpx.Client() as bare:
            adapter = hub.adapter(Target("fireworks", request.model, api_key=SecretStr(KEY)))

            def run_adapter() -> None:
                adapter.chat(request)

            def run_bare() -> None:
                bare.post(url, json=body, headers=headers).raise_for_status()

            def run_bare_json() -> None:
                bare.post(url, json=body, headers=headers).json()

            runs = {"adapter": run_adapter, "bare": run_bare, "bare_json": run_bare_json}
            for fn in runs.values():       # warm up: connections open, code paths loaded
                for _ in range(50):
                    fn()
            for _ in range(calls):
                for name, fn in runs.items():
                    started = time.perf_counter()
                    fn()
                    timings[name].append(time.perf_counter() - started)
        return {name: statistics.median(values) * 1000 for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    wall, passed = concurrent_probes(args.probes, args.workers, args.delay)
    floor = -(-args.probes // args.workers) * args.delay
    print(f"(a) {args.probes} probes, {args.workers} workers, provider delay {args.delay * 1000:.0f} ms: "
          f"{wall:.2f} s wall ({passed}/{args.probes} passed; floor {floor:.2f} s) "
          f"-> {'PASS' if wall < 2 and passed == args.probes else 'FAIL'} (target < 2 s)")

    medians = per_call_overhead(args.calls)
    overhead = medians["adapter"] - medians["bare"]
    print(f"(b) median per call over {args.calls} calls: adapter {medians['adapter']:.3f} ms, "
          f"bare httpx post {medians['bare']:.3f} ms, bare post + .json() {medians['bare_json']:.3f} ms")
    print(f"    adapter overhead vs bare post: {overhead:.3f} ms "
          f"(vs post + .json(): {medians['adapter'] - medians['bare_json']:.3f} ms) "
          f"-> {'PASS' if overhead < 1 else 'FAIL'} (target < 1 ms)")


if __name__ == "__main__":
    main()
