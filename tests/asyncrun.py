"""Run a coroutine to completion on a fresh event loop in a thread of its own.

Playwright's sync API (the browser tests' session-wide Chromium) keeps an event loop marked as
running in the main thread of its xdist worker, so a plain asyncio.run in any later test on that
worker would fail with "cannot be called from a running event loop". A new thread has no loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
