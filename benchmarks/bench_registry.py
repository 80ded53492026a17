"""F-1: the registry on a SQLite file with 10,000 custom models across 100 orgs.

    .venv/bin/python benchmarks/bench_registry.py                 # 100 orgs x 100 models
    .venv/bin/python benchmarks/bench_registry.py --orgs 10 --models-per-org 100 --repeat 50

Medians, for one org: ``list_models()`` (platform + custom, as a DataFrame), ``picker(workflow,
field)``, ``get_model(slug)`` (targets 5 ms each) and ``add_model(..., test=False)`` (target 10 ms).
Every model is added through the public ``add_model`` (secrets encrypted, audit rows written), so
the store is shaped as in real use.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import byok_nb
from byok_nb import LLMField

TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
PROVIDERS = [
    ("fireworks", lambda i: {"api_key": f"fw_bench_key_{i:012d}"}),
    ("together", lambda i: {"api_key": f"tg_bench_key_{i:012d}"}),
    ("openai_compatible", lambda i: {"base_url": "http://127.0.0.1:9/v1", "api_key": f"sk-bench-{i:012d}"}),
    ("huggingface", lambda i: {"api_key": f"hf_bench_token_{i:012d}",
                               "endpoint_url": "https://bench.us-east-1.aws.endpoints.huggingface.cloud"}),
    ("bedrock", lambda i: {"aws_region": "us-east-1", "auth_method": "iam",
                           "aws_access_key_id": f"AKIABENCH{i:011d}",
                           "aws_secret_access_key": f"bench/secret/{i:028d}"}),
]


def add(session, i: int, rnd: random.Random, slug: str | None = None):
    provider, creds = PROVIDERS[i % len(PROVIDERS)]
    return session.add_model(provider=provider, provider_model_id=f"acct/models/m{i}",
                             display_name=f"Model {i} ({provider})", slug=slug, max_tokens=4096,
                             supports_tool_use=rnd.random() < 0.7, supports_vision=rnd.random() < 0.3,
                             input_cost_per_token="0.0000002", output_cost_per_token="0.0000004",
                             test=False, **creds(i))


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orgs", type=int, default=100)
    ap.add_argument("--models-per-org", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--db", type=Path, default=None, help="SQLite file (default: a temporary directory)")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="byok_nb_bench_")
    db = args.db or Path(tmp.name) / "registry.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    os.environ.setdefault("BYOK_NB_HOME", tmp.name)
    total = args.orgs * args.models_per_org
    print(f"F-1 registry benchmark: {total:,} custom models across {args.orgs} orgs, SQLite file {db}, "
          f"{os.cpu_count()} CPU(s), Python {sys.version.split()[0]}")
    reg = byok_nb.open_registry(f"sqlite:///{db}", master_key=byok_nb.generate_master_key())
    rnd = random.Random(1)
    t0 = time.perf_counter()
    sessions = []
    for o in range(args.orgs):
        org = f"org{o:03d}"
        reg.create_org(org)
        reg.create_project(org, "search")
        reg.add_member(org, "admin", role="org_admin")
        reg.add_member(org, "cy", role="contributor", project="search")
        s = reg.session(org=org, user="admin")
        sessions.append(s)
        for m in range(args.models_per_org):
            add(s, o * args.models_per_org + m, rnd)
    setup_s = time.perf_counter() - t0
    print(f"  populated in {setup_s:,.1f} s ({total / setup_s:,.0f} add_model/s)")

    admin = sessions[args.orgs // 2]
    user = reg.session(org=admin.org, user="cy")
    admin.create_workflow("triage", "search", fields=[LLMField("classify", tools=[TOOL])])
    slugs = list(admin.list_models(type="custom")["ref"])
    assert len(slugs) == args.models_per_org
    picked = user.picker("triage", "classify")
    results = {
        "list_models() for one org": (median_ms(lambda: user.list_models(), args.repeat), 5.0),
        "picker(workflow, field)": (median_ms(lambda: user.picker("triage", "classify"), args.repeat), 5.0),
        "get_model(slug)": (median_ms(lambda: user.get_model(rnd.choice(slugs)), args.repeat), 5.0),
    }
    print(f"  one org: {len(slugs)} custom models; list_models rows {len(user.list_models())}; picker shows "
          f"{len(picked['Platform'])} platform + {len(picked['Custom'])} custom")
    counter = iter(range(10**9))
    results["add_model(test=False)"] = (
        median_ms(lambda: add(admin, 10**7 + next(counter), rnd), args.repeat), 10.0)
    print()
    print(f"{'measurement':30s} {'median ms':>10s} {'target ms':>10s}  verdict")
    ok = True
    for name, (ms, target) in results.items():
        verdict = "PASS" if ms < target else "FAIL"
        ok &= ms < target
        print(f"{name:30s} {ms:10.3f} {target:10.1f}  {verdict}")
    reg.close()
    tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
