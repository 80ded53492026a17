"""Team deployment through JupyterHub (issue 15): the Models page for a burst of visitors through
the hub, memory per open visit and the culling of closed visits, and the gateway's overhead
through the hub — in one run, through a real JupyterHub with configurable-http-proxy on loopback.

    .venv/bin/python benchmarks/bench_hub.py [--visitors 10] [--interval 1] [--calls 1000]

Set-up: a throwaway SQLite registry (org ``acme``, project ``search``; ``ana`` org admin, nine
more users contributors; one custom model ``bench-chat`` on a zero-delay loopback fake provider
in a process of its own), and ``tests/hub/hubkit.RunningHub``: JupyterHub (SharedPassword
authenticator) + configurable-http-proxy + the byok service as ``byok_nb.hub.configure`` sets it
up, every port on 127.0.0.1, with ``cull_idle_seconds=--cull-idle`` (20 s).

1. **Burst.** For each page a fresh hub: the admin app (the service as deployed), then the
   one-button notebook served by the same service at the same prefix
   (``configure(c, notebook=...)``, i.e. ``BYOK_NB_HUB_NOTEBOOK``). Ten fresh Chromium contexts
   each log in through the hub's login form and get the service's OAuth cookie (on a service
   path that starts no kernel) *before* the timed part; once the preheated pool is filled, one
   visitor a second navigates to ``/services/byok/`` and is timed to a row of the Models table
   (or the button) being visible. p50/p95, target p95(admin app) <= 1.5 x p95(one-button).
2. **Memory per open visit**, all pages still open: each visit's kernel (found by the kernel id
   in its page) RSS and USS, and the service's and Voila's RSS growth over the burst, per visit.
   Then the pages are closed and the kernel count is polled until the closed visits' kernels
   are culled (the preheated kernel stays).
3. **Gateway overhead** (admin hub, after culling): medians of sequential
   ``POST .../chat/completions`` on one keep-alive connection, interleaved rounds, to (a)
   ``byok-nb gateway`` directly, (b) the service's own port, (c) the hub's public proxy URL;
   (b) and (c) with a ``byok_`` token and with the user's hub API token.

Every figure is printed with the load average when it was taken. Needs configurable-http-proxy
on PATH and Debian's Chromium (``make test``'s set-up installs both).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests" / "hub"))
import gateway_kit as kit
from bench_voila_burst import browser_cpu_seconds, cpu_seconds, percentile   # the burst's own measures
import hubkit

import byok_nb
from byok_nb.testing.voila import (
    MODELS_TABLE_SELECTOR,
    ONE_BUTTON_SELECTOR,
    chromium_missing_reason,
    launch_chromium,
    write_one_button_notebook,
)

TARGET_RATIO = 1.5
ORG, PROJECT = kit.ORG, "search"
KERNEL_ID = re.compile(r'"kernelId":\s*"([0-9a-f-]{36})"')
KERNEL_FILE = re.compile(r"kernel-([0-9a-f-]{36})\.json")
POOL_FILLED = re.compile(r"Kernel pool of \S+ is filled")
MIB = 1024 * 1024
ADMIN_PAGE, BUTTON_PAGE = "admin app, Models table", "one-button notebook"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}/{fifteen:.2f}"


def visitors(n: int) -> list[str]:
    """ana (org admin), cy (kit's contributor), then u02, u03, ... (contributors)."""
    return [kit.ADMIN, kit.USER, *(f"u{i:02d}" for i in range(2, n))][:n]


# -- the hub ------------------------------------------------------------------------------------
def allow_users(names: list[str]) -> None:
    """hubkit's config lets ana, bo and cy in: let the benchmark's other visitors in too (the
    config text gets one more line; nothing else of the hub changes)."""
    original = hubkit._config_text
    extra = sorted(set(names) - {hubkit.ADMIN, hubkit.MEMBER, hubkit.OTHER})

    def config_text(hub: hubkit.RunningHub) -> str:
        return original(hub) + f"\nc.Authenticator.allowed_users = c.Authenticator.allowed_users | {set(extra)!r}\n"

    hubkit._config_text = config_text


@dataclass
class Tree:
    service: psutil.Process
    voila: psutil.Process

    def kernels(self) -> dict[str, psutil.Process]:
        found = {}
        for child in self.voila.children(recursive=True):
            try:
                match = KERNEL_FILE.search(" ".join(child.cmdline()))
            except psutil.Error:
                continue
            if match:
                found[match.group(1)] = child
        return found


def service_tree(hub: hubkit.RunningHub) -> Tree:
    procs = hub.processes()
    service = next(p for p in procs if "byok_nb.hub.service" in " ".join(p.cmdline()))
    voila = next(p for p in service.children(recursive=True) if p.cmdline()[1:3] == ["-m", "voila"])
    return Tree(service, voila)


async def wait_for_pool(hub: hubkit.RunningHub, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not POOL_FILLED.search(hub.log_tail(2_000_000)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service's Voila pool did not fill:\n{hub.log_tail()}")
        await asyncio.sleep(0.25)






# -- the visitors -------------------------------------------------------------------------------
async def logged_in(browser: Any, hub: hubkit.RunningHub, user: str) -> tuple[Any, Any]:
    """A fresh context logged in through the hub's form, holding the service's OAuth cookie
    (fetched on a service path that starts no kernel). Returns (context, page)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(hub.url + "hub/login?next=%2Fhub%2Fhome")
    await page.fill("#username_input", user)
    await page.fill("#password_input", hubkit.ADMIN_PASSWORD if user == hubkit.ADMIN else hubkit.USER_PASSWORD)
    async with page.expect_navigation():
        await page.click("#login_submit")
    if "/hub/login" in page.url:
        raise RuntimeError(f"{user} was not logged in: {(await page.inner_text('body'))[:300]}")
    # Through the service's login round (hub authorize -> oauth_callback -> back here).
    await page.goto(hub.service_url + "voila/static/__ready__")
    if not any(c["name"] == "service-byok" for c in await context.cookies()):
        raise RuntimeError(f"{user} got no service cookie (at {page.url})")
    return context, page


async def visit(page: Any, url: str, selector: str, delay: float, timeout_s: float) -> tuple[float, str | None]:
    await asyncio.sleep(delay)
    started = time.perf_counter()
    await page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
    try:
        await page.wait_for_selector(selector, state="visible", timeout=timeout_s * 1000)
    except Exception as exc:  # noqa: BLE001 — any failure: say what the visitor saw instead
        text = " ".join((await page.inner_text("body"))[:200].split())
        raise RuntimeError(f"{type(exc).__name__} at {page.url}; the page says: {text!r}") from None
    seconds = time.perf_counter() - started
    match = KERNEL_ID.search(await page.content())
    return seconds, match.group(1) if match else None


@dataclass
class Burst:
    page: str
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    kernel_rss: list[float] = field(default_factory=list)
    kernel_uss: list[float] = field(default_factory=list)
    kernel_cpu: list[float] = field(default_factory=list)
    service_growth: float = float("nan")     # MiB per visit
    voila_growth: float = float("nan")
    service_rss: float = float("nan")        # MiB, with every page open
    voila_rss: float = float("nan")
    service_cpu: float = float("nan")        # CPU-s per visit over the burst
    voila_cpu: float = float("nan")
    browser_cpu: float = float("nan")
    load_before: str = ""
    load_after: str = ""
    load_memory: str = ""
    kernels_open: int = 0
    kernels_after: int = 0
    cull_first_s: float = float("nan")
    cull_all_s: float = float("nan")
    load_cull: str = ""


async def burst(browser: Any, hub: hubkit.RunningHub, page_name: str, selector: str, args: argparse.Namespace) -> Burst:
    result = Burst(page_name)
    names = visitors(args.visitors)
    sessions = [await logged_in(browser, hub, user) for user in names]
    await wait_for_pool(hub)
    await asyncio.sleep(args.settle)
    tree = service_tree(hub)
    pool = len(tree.kernels())
    rss_before = tree.service.memory_info().rss, tree.voila.memory_info().rss
    cpu_before = cpu_seconds(tree.service), cpu_seconds(tree.voila), browser_cpu_seconds()
    result.load_before = load()
    outcomes = await asyncio.gather(
        *(visit(page, hub.service_url, selector, i * args.interval, args.timeout)
          for i, (_context, page) in enumerate(sessions)), return_exceptions=True)
    result.load_after = load()
    n = len(outcomes)
    result.service_cpu = (cpu_seconds(tree.service) - cpu_before[0]) / n
    result.voila_cpu = (cpu_seconds(tree.voila) - cpu_before[1]) / n
    result.browser_cpu = (browser_cpu_seconds() - cpu_before[2]) / n
    await asyncio.sleep(2.0)      # the last comm messages land, the pool refills
    kernels = tree.kernels()
    result.load_memory = load()
    result.service_growth = (tree.service.memory_info().rss - rss_before[0]) / MIB / n
    result.voila_growth = (tree.voila.memory_info().rss - rss_before[1]) / MIB / n
    result.service_rss = tree.service.memory_info().rss / MIB
    result.voila_rss = tree.voila.memory_info().rss / MIB
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            result.seconds.append(args.timeout)   # counted at the timeout: never flatters
            result.errors.append(f"{type(outcome).__name__}: {str(outcome).splitlines()[0][:160]}")
            continue
        seconds, kernel_id = outcome
        result.seconds.append(seconds)
        process = kernels.get(kernel_id)
        if process is None:
            result.errors.append(f"no kernel process for kernel id {kernel_id}")
            continue
        result.kernel_rss.append(process.memory_info().rss / MIB)
        result.kernel_uss.append(process.memory_full_info().uss / MIB)
        result.kernel_cpu.append(cpu_seconds(process))
    result.kernels_open = len(kernels)
    # Close the visits; poll until only the preheated pool is left.
    for context, _page in sessions:
        await context.close()
    closed = time.monotonic()
    deadline = closed + args.cull_idle * 6 + 60
    while True:
        count = len(tree.kernels())
        if count < result.kernels_open and result.cull_first_s != result.cull_first_s:   # first one gone
            result.cull_first_s = time.monotonic() - closed
        if count <= pool or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    result.kernels_after = len(tree.kernels())
    if result.kernels_after <= pool:
        result.cull_all_s = time.monotonic() - closed
    result.load_cull = load()
    return result


def print_burst(results: list[Burst], args: argparse.Namespace) -> None:
    print(f"\n1. Models page through the hub: {args.visitors} visitors arriving {args.interval:g} s apart, "
          f"each logged in through the hub's form (and holding the service's cookie) before the timed part; "
          f"{psutil.cpu_count()} cores")
    print(f"  {'page':<25} {'p50 s':>6} {'p95 s':>6} {'max s':>6}  {'service CPU-s/visit':>19} "
          f"{'Voila CPU-s/visit':>17} {'Chromium CPU-s/visit':>20}  load before -> after")
    for r in results:
        print(f"  {r.page:<25} {statistics.median(r.seconds):6.2f} {percentile(r.seconds, 0.95):6.2f} "
              f"{max(r.seconds):6.2f}  {r.service_cpu:19.2f} {r.voila_cpu:17.2f} {r.browser_cpu:20.2f}  "
              f"{r.load_before} -> {r.load_after}")
        for error in sorted(set(r.errors)):
            print(f"    {r.errors.count(error)} visit(s) failed (counted at the timeout): {error}")
    app, button = results[0], results[1]
    ratio = percentile(app.seconds, 0.95) / percentile(button.seconds, 0.95)
    verdict = ("not judged: some visitors failed" if app.errors or button.errors
               else "met" if ratio <= TARGET_RATIO else "NOT met")
    print(f"  p95 ratio admin app / one-button: {ratio:.2f}x  (target <= {TARGET_RATIO}x: {verdict})")

    print("\n2. Memory per open visit (all pages open; kernel figures are medians over visits)")
    print(f"  {'page':<25} {'kernel RSS MiB':>14} {'kernel USS MiB':>14} {'kernel CPU-s':>12} "
          f"{'service +MiB/visit':>18} {'Voila +MiB/visit':>16} {'service, Voila RSS MiB':>22}  load")
    for r in results:
        med = (lambda v: statistics.median(v) if v else float("nan"))
        print(f"  {r.page:<25} {med(r.kernel_rss):14.0f} {med(r.kernel_uss):14.0f} {med(r.kernel_cpu):12.2f} "
              f"{r.service_growth:18.1f} {r.voila_growth:16.1f} {r.service_rss:11.0f}, {r.voila_rss:8.0f}  {r.load_memory}")
    print(f"  culling of closed visits (cull idle {args.cull_idle} s):")
    for r in results:
        done = (f"all culled {r.cull_all_s:.0f} s after the pages closed (first at {r.cull_first_s:.0f} s)"
                if r.cull_all_s == r.cull_all_s else "NOT all culled before the deadline")
        print(f"  {r.page:<25} kernels with pages open {r.kernels_open} -> after {r.kernels_after}: {done}  {r.load_cull}")


# -- the gateway --------------------------------------------------------------------------------
def gateway_overhead(hub: hubkit.RunningHub, direct_base: str, token: str, args: argparse.Namespace) -> None:
    hub_token = hub.new_token(kit.USER, note="bench")
    service_port = f"http://127.0.0.1:{hub.service_port}/services/byok/v1"
    proxied = hub.service_url + "v1"
    paths = {
        "(a) byok-nb gateway direct, byok_ token": kit.Client(direct_base + "/v1", token, kit.SLUG),
        "(b) service's own port, byok_ token": kit.Client(service_port, token, kit.SLUG),
        "(b) service's own port, hub API token": kit.Client(service_port, hub_token, kit.SLUG),
        "(c) hub proxy (public URL), byok_ token": kit.Client(proxied, token, kit.SLUG),
        "(c) hub proxy (public URL), hub API token": kit.Client(proxied, hub_token, kit.SLUG),
    }
    bodies = {name: client.body() for name, client in paths.items()}
    for name, client in paths.items():
        answer = client.post(bodies[name])["choices"][0]["message"]["content"]
        assert answer, name
        for _ in range(args.warmup):
            client.post(bodies[name])
    times: dict[str, list[float]] = {name: [] for name in paths}
    loads: dict[str, list[str]] = {name: [] for name in paths}
    per_round = max(1, args.calls // args.rounds)
    for _ in range(args.rounds):
        for name, client in paths.items():
            body = bodies[name]
            for _ in range(per_round):
                start = time.perf_counter()
                client.post(body)
                times[name].append((time.perf_counter() - start) * 1000)
            loads[name].append(load())
    for client in paths.values():
        client.close()
    print(f"\n3. Gateway overhead: {per_round * args.rounds} sequential POST /chat/completions per path, "
          f"{args.rounds} interleaved rounds, one keep-alive connection, zero-delay loopback fake")
    print(f"  {'path':<44} {'median ms':>9} {'p90 ms':>7}  load at the end of its first / last round")
    medians = {}
    for name, values in times.items():
        medians[name] = statistics.median(values)
        print(f"  {name:<44} {medians[name]:9.2f} {percentile(values, 0.9):7.2f}  {loads[name][0]} / {loads[name][-1]}")
    names = list(paths)
    a, b_tok, b_hub, c_tok, c_hub = (medians[n] for n in names)
    print(f"  service port - direct (byok_ token): {b_tok - a:+.2f} ms; hub proxy - service port: "
          f"{c_tok - b_tok:+.2f} ms (byok_), {c_hub - b_hub:+.2f} ms (hub token); "
          f"hub proxy - direct: {c_tok - a:+.2f} ms (byok_), {c_hub - a:+.2f} ms (hub token); "
          f"hub token - byok_ token at the service port: {b_hub - b_tok:+.2f} ms")


# -- the run ------------------------------------------------------------------------------------
def make_registry(url: str, key: str, home: Path, upstream: str, names: list[str]) -> str:
    reg, _session, token = kit.make_registry(url, key, home, upstream)
    try:
        for name in names:
            if name not in (kit.ADMIN, kit.USER):   # members already (a returning team, no join at the visit)
                reg.add_member(ORG, name, role="contributor", project=PROJECT)
    finally:
        reg.close()
    return token


def start_hub(base: Path, url: str, key: str, cull_idle: int, notebook: Path | None) -> hubkit.RunningHub:
    configure_kwargs: dict[str, Any] = {"cull_idle_seconds": cull_idle}
    if notebook is not None:
        configure_kwargs["notebook"] = str(notebook)
    return hubkit.RunningHub(base, registry_url=url, master_key=key, admins=(kit.ADMIN,), org=ORG,
                             project=PROJECT, configure_kwargs=configure_kwargs)


async def run(args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    names = visitors(args.visitors)
    allow_users(names)
    with tempfile.TemporaryDirectory(prefix="byok_bench_hub_") as tmp, ExitStack() as stack:
        base = Path(tmp)
        upstream = stack.enter_context(kit.fake_provider())
        key = byok_nb.generate_master_key()
        url = f"sqlite:///{base / 'registry.db'}"
        token = make_registry(url, key, base, upstream, names)
        write_one_button_notebook(base / "one_button.ipynb")
        print(f"bench_hub: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {load()}, visitors {', '.join(names)}")
        results = []
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            try:
                pages = ((ADMIN_PAGE, None, MODELS_TABLE_SELECTOR),
                         (BUTTON_PAGE, base / "one_button.ipynb", ONE_BUTTON_SELECTOR))
                for page_name, notebook, selector in pages[:1] if args.only_gateway else pages:
                    hub = start_hub(base / f"hub-{len(results)}", url, key, args.cull_idle, notebook)
                    with hub:
                        if not args.only_gateway:
                            results.append(await burst(browser, hub, page_name, selector, args))
                            print(f"  ({page_name}: burst done, {load()})", flush=True)
                        if notebook is None and not args.no_gateway:
                            with kit.gateway(url, key, base, token) as (direct_base, _proc):
                                gateway_overhead(hub, direct_base, token, args)
                        if args.keep_logs:
                            Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
                            shutil.copy(hub.log_path, Path(args.keep_logs) / f"jupyterhub-{len(results)}.log")
                    if hub.leftovers:
                        print(f"  processes left after the hub stopped (killed): {hub.leftovers}")
            finally:
                await browser.close()
        if results:
            print_burst(results, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between arrivals")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the pool is filled")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds a visitor waits at most")
    parser.add_argument("--cull-idle", type=int, default=60,
                        help="the service's cull idle time, seconds (long enough for the burst's pages "
                             "to connect: a kernel whose page has not connected yet counts as idle)")
    parser.add_argument("--calls", type=int, default=1000, help="gateway calls per path")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved gateway rounds")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--keep-logs", default=None, help="copy each hub's log (service and Voila) here")
    parser.add_argument("--only-gateway", action="store_true", help="only the gateway part (no browsers)")
    parser.add_argument("--no-gateway", action="store_true", help="leave the gateway part out")
    args = parser.parse_args(argv)
    reason = chromium_missing_reason() or hubkit.proxy_missing_reason()
    if reason:
        print(f"bench_hub: skipped: {reason}")
        return 0
    asyncio.run(run(args))
    return 0   # a missed target is reported above, not a failure of the run


if __name__ == "__main__":
    sys.exit(main())
