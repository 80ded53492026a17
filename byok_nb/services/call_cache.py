"""What a call is checked against, kept in memory and proven current on every request.

A call needs the caller's token and membership, the model (its limits, flags and prices) and its
call target with the decrypted credential. Reading those from the store for every request is
most of what a busy server would do; yet a revoked token, a removed member or an edited model must
be refused or seen on the very next request. So a server keeps them in a :class:`View` — the
memory of one store *generation* (:mod:`byok_nb.store.generation`: a counter that database
triggers move in the same transaction as every write to those tables) — and before each request
reads the generation once. Unchanged: the memory is current. Moved: it is dropped and what the
request needs is read again.

The per-request read never blocks the event loop (:meth:`CallCache.aview`): a request waits for a
read that *started after it arrived* — so any write committed before the request came is seen.
One read serves every request waiting for it: on PostgreSQL a round trip on an asyncio
connection, one in flight at a time (the requests that arrive meanwhile wait for the next); on
SQLite a few microseconds of shared memory, read on the loop once per loop turn.

Code that reads through a view (``access.roles``, ``workflows.lookup_model``,
``models.call_target``) runs unchanged whether the value is in memory or not. On the event loop a
value that is not yet in memory must not be read there: :func:`resolve` runs such code so that a
miss raises :class:`CacheMiss` instead, reads the value in a thread, and runs the code again.

Credentials held here are only ever in memory (``SecretStr`` inside their call targets); a
view's repr shows its generation and size, never an entry.
"""
from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from ..store.generation import AsyncGenerationReader, GenerationReader

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Engine

__all__ = ["CacheMiss", "CallCache", "View", "resolve"]

T = TypeVar("T")
# Entries one view holds at most (models a bad client names that do not exist are remembered as
# "none" too); past it, the view starts empty again rather than grow.
MAX_ENTRIES = 50_000
# A resolve that keeps missing (a view emptied by others meanwhile) reads in place after this many.
_MAX_DEFERRED = 8
_DEFER: contextvars.ContextVar[bool] = contextvars.ContextVar("byok_nb_defer_store_reads", default=False)


class CacheMiss(Exception):
    """Raised inside :func:`resolve` where a value is not in memory; :meth:`fill` reads it."""

    def __init__(self, view: View, key: Hashable, load: Callable[[], Any], keep_none: bool) -> None:
        super().__init__("a value is not in memory yet")
        self._args = (view, key, load, keep_none)

    def fill(self) -> None:
        view, key, load, keep_none = self._args
        view.fill(key, load, keep_none)


class View:
    """The memory of one store generation. ``get(key, load)`` is the value, read with ``load``
    on first use. Shared by every request that proved this generation current."""

    __slots__ = ("_entries", "generation")

    def __init__(self, generation: int | None) -> None:
        self.generation = generation
        self._entries: dict[Hashable, Any] = {}

    def __repr__(self) -> str:
        return f"View(generation={self.generation}, entries={len(self._entries)})"

    def get(self, key: Hashable, load: Callable[[], T], *, keep_none: bool = True) -> T:
        """The value for ``key``; on a miss ``load()`` now, or :class:`CacheMiss` inside
        :func:`resolve`. ``keep_none=False``: a None is not remembered (unknown tokens: a guesser
        must not fill the memory)."""
        try:
            value: T = self._entries[key]
            return value
        except KeyError:
            pass
        if _DEFER.get():
            raise CacheMiss(self, key, load, keep_none)
        return self.fill(key, load, keep_none)

    def fill(self, key: Hashable, load: Callable[[], T], keep_none: bool = True) -> T:
        # The value is read after this generation was: it is at least as new (never older).
        value = load()
        if value is not None or keep_none:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = value
        return value


async def resolve(fn: Callable[[], T]) -> T:
    """``fn()`` on the event loop with every store read it needs done in a thread (module doc).
    Exceptions a read raises (a model deleted, a store unavailable) come out of here as they
    would out of ``fn``."""
    for _ in range(_MAX_DEFERRED):
        token = _DEFER.set(True)
        try:
            return fn()
        except CacheMiss as exc:
            miss = exc
        finally:
            _DEFER.reset(token)
        await asyncio.get_running_loop().run_in_executor(None, miss.fill)
    return fn()


def _answer(waiters: list[asyncio.Future[View]], view: View | None, error: BaseException | None) -> None:
    for waiter in waiters:
        if waiter.done():      # its request went away
            continue
        if error is None:
            waiter.set_result(view)   # type: ignore[arg-type]
        else:
            waiter.set_exception(error)


class CallCache:
    """One backend's views and the per-request generation read (module doc)."""

    def __init__(self, engine: Engine) -> None:
        self._reader = GenerationReader(engine)
        self._view = View(None)
        self._dialect = getattr(getattr(engine, "dialect", None), "name", None)
        # PostgreSQL: an asyncio connection of its own, one read in flight, shared (below).
        self._areader: Any = AsyncGenerationReader(engine) if self._dialect == "postgresql" else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: list[asyncio.Future[View]] = []   # arrived while a read was running
        self._served: list[asyncio.Future[View]] = []    # waiting on the read that is running
        self._reading = False
        self._touched: dict[int, dt.datetime] = {}

    def view(self) -> View:
        """The current view, reading the generation now (synchronous callers)."""
        return self._at(self._reader.read())

    async def aview(self) -> View:
        """The current view as of a generation read that started after this call.

        Requests wait for the next read, which serves all of them at once. SQLite: the read is
        a few microseconds of shared memory that never wait on a writer (store/generation.py),
        so it runs on the loop, in a callback after the requests of this loop turn have arrived
        (a hop to a thread would cost far more than the read: interpreter-lock hand-offs under
        load). PostgreSQL: a network round trip on an asyncio connection, one at a time; the
        requests that arrive while one is in flight wait for the next."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:   # a new event loop (a restarted server): nothing carries over
            self._loop, self._waiting, self._served, self._reading = loop, [], [], False
            if self._areader is not None:
                self._areader = AsyncGenerationReader(self._reader.engine)
        waiter: asyncio.Future[View] = loop.create_future()
        self._waiting.append(waiter)
        if not self._reading:
            self._start(loop)
        return await waiter

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._reading = True
        if self._areader is None:
            loop.call_soon(self._read_in_place)
            return
        # Everyone waiting now arrived before this read starts: it serves them all.
        self._served, self._waiting = self._waiting, []
        loop.create_task(self._areader.read()).add_done_callback(self._done)

    def _read_in_place(self) -> None:
        served, self._waiting = self._waiting, []   # all arrived before this read starts
        self._reading = False
        try:
            view, error = self._at(self._reader.read()), None
        except Exception as exc:  # noqa: BLE001 — the requests waiting get it (StoreUnavailable)
            view, error = None, exc
        _answer(served, view, error)

    def _done(self, read: asyncio.Future[int]) -> None:
        served, self._served = self._served, []
        self._reading = False
        error = read.exception() if not read.cancelled() else asyncio.CancelledError()
        _answer(served, self._at(read.result()) if error is None else None, error)
        if self._waiting and self._loop is not None and not self._loop.is_closed():
            self._start(self._loop)

    def _at(self, generation: int) -> View:
        view = self._view
        if view.generation != generation:
            view = self._view = View(generation)
        return view

    def touch_due(self, token_id: int, last_used: dt.datetime | None, now: dt.datetime,
                  every: dt.timedelta) -> bool:
        """Whether this process should record a use of the token now (at most once per
        ``every``; the stored time is what the view read, the later ones are remembered here)."""
        seen = self._touched.get(token_id, last_used)
        if seen is not None and now - seen < every:
            return False
        self._touched[token_id] = now
        return True

    async def aclose(self) -> None:
        """Close the event loop's generation connection (a server's shutdown)."""
        if self._areader is not None:
            await self._areader.aclose()

    def close(self) -> None:
        """Close the generation reader's connection (it reopens on demand)."""
        self._view = View(None)
        self._reader.close()
