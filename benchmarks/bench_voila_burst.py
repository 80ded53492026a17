"""Many visitors at once: ten visitors arriving one a second at ``byok-nb serve``, the admin app
beside a one-button notebook, in one run.

    .venv/bin/python benchmarks/bench_voila_burst.py [--visitors 10] [--interval 1] [--rounds 1]

For each page, a fresh Voila started with ``byok-nb serve``'s command line (preheated pool of 1,
token authentication on) serves a folder holding the admin app and the one-button notebook, on a
throwaway registry with the demo models (``byok-nb demo``'s set-up). Once the pool is filled,
headless Chromium on the same machine opens the page in a new browser context every
``--interval`` seconds and times each visit from its request to the Models table (a row of
``.byok-models-table``) or the button being visible. After the burst, with every page still open:
the CPU-seconds (user + system) and resident memory of each visit's kernel process (found by the
kernel id in its page), and the Voila server's own CPU over the burst, per visit.

Target (issue 12): the admin app's p95 within 1.5x the one-button notebook's. The browsers share
the machine's cores with Voila and the kernels, as they did when the problem was measured.
"""
from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from byok_nb.server.admin_app import app_notebook, demo_environment
from byok_nb.testing.voila import (MODELS_TABLE_SELECTOR, ONE_BUTTON_SELECTOR, VoilaServer,
                                   chromium_missing_reason, launch_chromium, write_one_button_notebook)

TARGET_RATIO = 1.5
PAGES = {  # name -> (notebook, what must be visible)
    "admin app, Models table": ("admin_app.ipynb", MODELS_TABLE_SELECTOR),
    "one-button notebook": ("one_button.ipynb", ONE_BUTTON_SELECTOR),
}
KERNEL_ID = re.compile(r'"kernelId":\s*"([0-9a-f-]{36})"')
MIB = 1024 * 1024


@dataclass
class Burst:
    seconds: list[float] = field(default_factory=list)
    kernel_cpu: list[float] = field(default_factory=list)     # per visit
    kernel_rss: list[float] = field(default_factory=list)     # MiB, per visit
    server_cpu: list[float] = field(default_factory=list)     # Voila's own, per visit
    browser_cpu: list[float] = field(default_factory=list)    # Chromium's processes, per visit
    errors: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def visit(browser, url: str, selector: str, delay: float, timeout_s: float):
    """One visitor: arrive after ``delay`` s, time request -> ``selector`` visible; return the
    seconds, the kernel id and the still-open context."""
    await asyncio.sleep(delay)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    started = time.perf_counter()
    await page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
    await page.wait_for_selector(selector, state="visible", timeout=timeout_s * 1000)
    seconds = time.perf_counter() - started
    match = KERNEL_ID.search(await page.content())
    return seconds, match.group(1) if match else None, context


def kernel_processes(server_pid: int) -> dict[str, psutil.Process]:
    """Kernel id -> process, for the kernels Voila started (``... -f .../kernel-<id>.json``)."""
    found = {}
    for child in psutil.Process(server_pid).children(recursive=True):
        try:
            match = re.search(r"kernel-([0-9a-f-]{36})\.json", " ".join(child.cmdline()))
        except psutil.Error:
            continue
        if match:
            found[match.group(1)] = child
    return found


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def browser_cpu_seconds() -> float:
    """CPU of every Chromium process under this one (Playwright's driver starts them)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            if "chrom" in child.name().lower():
                total += cpu_seconds(child)
        except psutil.Error:
            continue
    return total


async def wait_for_pool(server: VoilaServer, notebook: str, timeout: float = 120.0) -> None:
    """Until Voila logs that the notebook's pool is filled (its kernel started and running the
    notebook up to the wait for a visitor), then a little more for that run to finish."""
    deadline = time.monotonic() + timeout
    filled = re.compile(rf"Kernel pool of \S*{re.escape(notebook)} is filled")
    while not filled.search(server.log_text()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the kernel pool of {notebook} did not fill:\n{server.log_text()[-3000:]}")
        await asyncio.sleep(0.25)


async def burst(browser, folder: Path, env: dict[str, str], notebook: str, selector: str, *,
                visitors: int, interval: float, settle: float, timeout_s: float) -> Burst:
    result = Burst()
    log = folder / f"voila-{notebook}-{time.time():.0f}.log"
    with VoilaServer(folder, env=env, log_path=log) as server:
        await wait_for_pool(server, notebook)
        await asyncio.sleep(settle)                 # the preheated kernel reaches its wait, caches settle
        voila = psutil.Process(server._proc.pid)
        server_cpu_before, browser_cpu_before = cpu_seconds(voila), browser_cpu_seconds()
        outcomes = await asyncio.gather(
            *(visit(browser, server.render_url(notebook), selector, i * interval, timeout_s)
              for i in range(visitors)), return_exceptions=True)
        server_cpu = cpu_seconds(voila) - server_cpu_before
        browser_cpu = browser_cpu_seconds() - browser_cpu_before
        await asyncio.sleep(1.0)                    # let the last comm messages land
        kernels = kernel_processes(voila.pid)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                # Counted at the timeout (a lower bound), so p50/p95 never flatter a failed burst.
                result.seconds.append(timeout_s)
                result.errors.append(f"{type(outcome).__name__}: {str(outcome).splitlines()[0][:160]}")
                continue
            seconds, kernel_id, _context = outcome
            result.seconds.append(seconds)
            process = kernels.get(kernel_id)
            if process is None:
                result.errors.append(f"no kernel process for kernel id {kernel_id}")
                continue
            result.kernel_cpu.append(cpu_seconds(process))
            result.kernel_rss.append(process.memory_info().rss / MIB)
        result.server_cpu.append(server_cpu / max(1, len(result.seconds)))
        result.browser_cpu.append(browser_cpu / max(1, len(result.seconds)))
        for outcome in outcomes:
            if not isinstance(outcome, BaseException):
                await outcome[2].close()
    return result


def merge(into: Burst, other: Burst) -> None:
    for name in ("seconds", "kernel_cpu", "kernel_rss", "server_cpu", "browser_cpu", "errors"):
        getattr(into, name).extend(getattr(other, name))


def report(results: dict[str, Burst], visitors: int, interval: float, rounds: int) -> None:
    print(f"Voila burst: {visitors} visitors arriving {interval:g} s apart, {rounds} round(s); byok-nb serve's "
          f"command line (preheated pool of 1, token on); headless Chromium on this machine "
          f"({psutil.cpu_count()} cores)")
    header = (f"  {'page':<25} {'p50 s':>7} {'p95 s':>7} {'max s':>7}   {'kernel CPU-s/visit':>18} "
              f"{'kernel MiB/visit':>16} {'Voila CPU-s/visit':>17} {'Chromium CPU-s/visit':>20}")
    print(header)
    for name, r in results.items():
        if not r.seconds:
            print(f"  {name:<25} no visit finished")
            continue
        cpu = statistics.median(r.kernel_cpu) if r.kernel_cpu else float("nan")
        rss = statistics.median(r.kernel_rss) if r.kernel_rss else float("nan")
        print(f"  {name:<25} {statistics.median(r.seconds):7.2f} {percentile(r.seconds, 0.95):7.2f} "
              f"{max(r.seconds):7.2f}   {cpu:18.2f} {rss:16.0f} {statistics.mean(r.server_cpu):17.2f} "
              f"{statistics.mean(r.browser_cpu):20.2f}")
        for error in sorted(set(r.errors)):
            print(f"    {r.errors.count(error)} visit(s) failed (counted at the timeout): {error}")
    app, button = results["admin app, Models table"], results["one-button notebook"]
    if app.seconds and button.seconds:
        ratio = percentile(app.seconds, 0.95) / percentile(button.seconds, 0.95)
        verdict = ("not judged: some visitors failed" if app.errors or button.errors
                   else "met" if ratio <= TARGET_RATIO else "NOT met")
        print(f"  p95 ratio admin app / one-button: {ratio:.2f}x  (target <= {TARGET_RATIO}x: {verdict})")
    print("  (kernel CPU and memory: medians over visits, read with every page still open)")


async def run(args: argparse.Namespace) -> dict[str, Burst]:
    from playwright.async_api import async_playwright

    folder = Path(tempfile.mkdtemp(prefix="byok_nb_bench_burst_"))
    results = {name: Burst() for name in PAGES}
    try:
        shutil.copy(args.admin_notebook or app_notebook(), folder / "admin_app.ipynb")
        write_one_button_notebook(folder / "one_button.ipynb")
        with demo_environment() as env:
            async with async_playwright() as playwright:
                browser = await launch_chromium(playwright)
                try:
                    for round_no in range(args.rounds):
                        order = list(PAGES.items())
                        if round_no % 2:
                            order.reverse()
                        for name, (notebook, selector) in order:
                            merge(results[name], await burst(
                                browser, folder, env, notebook, selector, visitors=args.visitors,
                                interval=args.interval, settle=args.settle, timeout_s=args.timeout))
                finally:
                    await browser.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between arrivals")
    parser.add_argument("--rounds", type=int, default=1, help="bursts per page (pages alternate)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds after the pool is filled before the first visitor")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds a visitor waits at most")
    parser.add_argument("--admin-notebook", default=None,
                        help="serve this notebook in the admin app's place (to measure a variant)")
    args = parser.parse_args(argv)
    reason = chromium_missing_reason()
    if reason:
        print(f"bench_voila_burst: skipped: {reason}")
        return 0
    report(asyncio.run(run(args)), args.visitors, args.interval, args.rounds)
    return 0   # a missed target is reported above, not a failure of the benchmark run


if __name__ == "__main__":
    sys.exit(main())
