"""Running the ASGI lifespan of an app mounted inside another: startup and shutdown messages are
relayed through queues, so a mounted app (the gateway flushes its usage rows at shutdown) gets
exactly what it would get from uvicorn directly."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["MountedLifespan"]

log = logging.getLogger("byok_nb.hub")

App = Callable[..., Awaitable[None]]


class MountedLifespan:
    def __init__(self, app: App) -> None:
        self.app = app
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        try:
            await self.app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                           self._inbox.get, self._outbox.put)
        except Exception as exc:  # noqa: BLE001 — an app that refuses the lifespan scope has none
            log.debug("mounted app has no lifespan: %s", type(exc).__name__)
        finally:
            # An app without lifespan support returns (or raises) at once: answer for it.
            await self._outbox.put({"type": "lifespan.unsupported"})

    async def _exchange(self, message: str) -> None:
        if self._task is None or self._task.done():
            return
        await self._inbox.put({"type": message})
        answer = await self._outbox.get()
        if answer["type"].endswith(".failed"):
            raise RuntimeError(f"a mounted app failed its {message}: {answer.get('message', '')}")

    async def startup(self) -> None:
        self._task = asyncio.create_task(self._run())
        await self._exchange("lifespan.startup")

    async def shutdown(self) -> None:
        await self._exchange("lifespan.shutdown")
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)
