"""F-7: sustained throughput of the gateway with every call's usage recorded, and the LiteLLM
proxy's in the same run.

    .venv/bin/python benchmarks/bench_gateway_throughput.py                     # 30 s per run
    .venv/bin/python benchmarks/bench_gateway_throughput.py --duration 10 --backends sqlite --workers 1 --no-litellm

Needs: ``make bench-deps litellm-proxy-env`` (nginx, wrk, the LiteLLM proxy venv) and, for
PostgreSQL, the server scripts/system_deps.sh starts. The upstream is nginx answering a static
OpenAI reply with usage (never the bottleneck: ~100,000 req/s here). The load generator is wrk
(C): ``wrk -t2 -c64 -d30s --latency`` and ``-c8``, POSTing a chat completion with a token.

After each backend's runs the gateway is stopped cleanly (SIGTERM) and the usage rows are counted
in the database: they must equal the number of requests nginx logged (each one a provider call
the gateway made), so no row was lost. The LiteLLM proxy runs with no database (no spend logs:
its figures are for the hop alone, without recording anything).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_kit as kit  # noqa: E402

import byok_nb  # noqa: E402

WRK_LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


def wrk(url: str, token: str | None, model: str, connections: int, duration: int, work: Path) -> dict:
    script = work / f"post-{connections}.lua"
    body = json.dumps({"model": model, "messages": kit.MESSAGES})
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    script.write_text(WRK_LUA.format(body=json.dumps(body), auth=auth))
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
           url + "/chat/completions"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120).stdout
    result = {"command": " ".join(cmd[:5]) + " --latency", "raw": out}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        result["rps"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in", out):
        result["requests"] = int(m.group(1))
    result["non2xx"] = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    result["errors"] = m.group(0) if (m := re.search(r"Socket errors:.*", out)) else ""
    for pct in ("50", "99"):
        if m := re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
            value = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
            result[f"p{pct}_ms"] = value
    return result


def load() -> str:
    """The machine's load average (1, 5, 15 min): printed beside every figure (a shared machine)."""
    return "load " + " ".join(open("/proc/loadavg").read().split()[:3])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes (and their reaped children) have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / tick   # utime stime cutime cstime
    return total


def show(label: str, r: dict) -> None:
    cpu = f"  CPU {r['cpu_us']:6.0f} us/req" if "cpu_us" in r else ""
    print(f"{label:34} {r.get('rps', float('nan')):9.0f} req/s  p50 {r.get('p50_ms', float('nan')):7.2f} ms"
          f"  p99 {r.get('p99_ms', float('nan')):7.2f} ms  non-2xx {r['non2xx']}{cpu}  {r['errors']}  "
          f"[{load()}]", flush=True)


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes with ``--workers``)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def run_gateway(backend: str, workers: int, upstream: str, access: Path, work: Path, args) -> dict:
    home = work / f"gw-{backend}-{workers}"
    home.mkdir()
    label = f"gateway {backend}" + (f" x{workers} workers" if workers > 1 else "")
    with ExitStack() as stack:
        url = (f"sqlite:///{home / 'registry.db'}" if backend == "sqlite"
               else stack.enter_context(kit.postgres_database()))
        key = byok_nb.generate_master_key()
        reg, _, token = kit.make_registry(url, key, home, upstream)
        reg.close()
        before_rows, before_calls = kit.count_usage_rows(url), kit.access_lines(access)
        extra = ("--workers", str(workers)) if workers > 1 else ()
        with kit.gateway(url, key, home, token, *extra) as (base, proc):
            # Warm every worker (first-use imports, the provider pool) outside the measured runs.
            wrk(base + "/v1", token, kit.SLUG, 8 * workers, 2, work)
            spy = None
            if args.py_spy:     # sample the gateway during the first run (collapsed stacks, one a line)
                spy = subprocess.Popen([args.py_spy, "record", "--format", "raw", "--rate", "250",
                                        "--duration", str(args.duration), "--nonblocking", "--subprocesses",
                                        "-o", f"{args.profile_prefix}-{backend}-{workers}.txt", "-p", str(proc.pid)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            results = {}
            for c in args.connections:
                pids = family(proc.pid)
                cpu_before = cpu_seconds(pids)
                r = results[c] = wrk(base + "/v1", token, kit.SLUG, c, args.duration, work)
                if r.get("requests"):   # CPU per request: a figure the machine's other load barely moves
                    r["cpu_us"] = (cpu_seconds(pids) - cpu_before) / r["requests"] * 1e6
                show(f"{label}, {c} connections", r)
            if spy is not None:
                spy.wait(timeout=120)
        time.sleep(1.5)          # nginx flushes its access log buffer every second
        rows = kit.count_usage_rows(url) - before_rows
        calls = kit.access_lines(access) - before_calls
        # Rows the store refused go to the durable spool (replayed later): kept, but not yet in the store.
        spooled = sum(1 for f in (home / "usage_spool").glob("*.jsonl") for _ in open(f)) \
            if (home / "usage_spool").is_dir() else 0
        verdict = "none lost" if rows == calls else f"{calls - rows} LOST"
        print(f"  {label}: usage rows {rows}, provider calls (nginx log) {calls}, spooled {spooled}: {verdict}",
              flush=True)
        if rows != calls:
            for log in home.glob("gateway-*.log"):
                print("  gateway log (tail):\n" + log.read_text()[-3000:], flush=True)
        return {"results": results, "rows": rows, "calls": calls}


def run_litellm(upstream: str, work: Path, args) -> None:
    home = work / "litellm"
    home.mkdir()
    with kit.litellm_proxy(upstream, home) as base:
        wrk(base + "/v1", kit.LITELLM_MASTER_KEY, kit.SLUG, 8, 2, work)   # warmed as the gateway is
        for c in args.connections:
            show(f"LiteLLM proxy (no DB), {c} connections", wrk(base + "/v1", kit.LITELLM_MASTER_KEY, kit.SLUG, c, args.duration, work))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=30, help="seconds per wrk run (default 30)")
    ap.add_argument("--connections", type=int, nargs="+", default=[64, 8])
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="gateway processes (byok-nb gateway --workers N), each measured (default 1 2)")
    ap.add_argument("--no-litellm", action="store_true", help="leave the LiteLLM proxy out")
    ap.add_argument("--py-spy", metavar="PATH", help="py-spy binary: profile the gateway during the first run")
    ap.add_argument("--profile-prefix", default="gateway-profile", help="py-spy output: PREFIX-<backend>-<workers>.txt")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: run `make bench-deps` (scripts/system_deps.sh --bench)")
    print(f"F-7 gateway throughput, wrk -t2 -d{args.duration}s, {os.cpu_count()} CPUs, {load()}", flush=True)
    summary = []
    with tempfile.TemporaryDirectory(prefix="byok_bench_f7_") as tmp:
        work = Path(tmp)
        with kit.nginx_upstream(work) as (upstream, access):
            alone = upstream.replace("/v1", "/alone/v1")   # not in the access log that counts calls
            baseline = wrk(alone, kit.PROVIDER_KEY, kit.UPSTREAM_MODEL, 64, min(5, args.duration), work)
            show("nginx alone (the upstream), 64 conn", baseline)
            for backend in args.backends:
                for workers in args.workers:
                    summary.append((backend, workers, run_gateway(backend, workers, upstream, access, work, args)))
            if not args.no_litellm:
                run_litellm(upstream, work, args)
    print("\nsummary (targets: >= 2,000 req/s SQLite, >= 1,000 PostgreSQL at 64 connections; p99 < 25 ms at 8;"
          " no usage row lost)")
    for backend, workers, got in summary:
        res = got["results"]
        rps = res.get(64, {}).get("rps", float("nan"))
        p99 = res.get(8, {}).get("p99_ms", float("nan"))
        lost = got["calls"] - got["rows"]
        print(f"  {backend:10} workers {workers}: {rps:6.0f} req/s @64   p99 {p99:6.2f} ms @8   "
              f"rows {got['rows']} of {got['calls']} calls ({'none lost' if lost == 0 else f'{lost} LOST'})")
    print(f"  {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
