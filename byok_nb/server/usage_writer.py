"""The gateway's usage writer: calls' usage rows are written in batches by one background thread.

A synchronous database write per request on the event loop would cap the gateway at the store's
commit rate and stall every other request while it waits. Instead :meth:`UsageWriter.record`
only puts the row on a queue (microseconds, never blocks); a daemon thread takes whatever has
gathered, writes it in one transaction with :func:`byok_nb.store.usage_log.record_rows`, and when
the store refuses (busy past its timeout, unreachable, read-only) appends the rows to the durable
usage spool (:mod:`byok_nb.store.usage_spool`), which is replayed on the next successful write and
whenever a registry on that store is opened. :meth:`close` writes everything still queued.

What a crash can lose (docs/gateway.md): rows still on the queue when the process dies without a
clean shutdown (``kill -9``, power loss) — the calls answered in the last ``LINGER_S`` (50 ms)
plus the batch being written. Rows handed to the spool are fsynced and survive.
"""
from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core.errors import InvalidRequest, RegistryError
from ..store.usage_log import record_rows

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Engine

    from ..services.context import Context
    from ..store.usage_spool import UsageSpool

__all__ = ["UsageWriter"]

log = logging.getLogger("byok_nb.gateway.usage")
MAX_BATCH = 2_000          # rows per transaction: big enough for bursts, small enough to stay short
# After the first row of a batch arrives, the writer waits this long for more before writing. A
# commit costs far more than a row (measured: a one-row transaction took ~1 ms of CPU, competing
# with the requests for the interpreter; at 50 ms, 2,000 req/s make batches of ~100 rows). It is
# also the most a crash can lose beyond the write in flight (docs/gateway.md).
LINGER_S = 0.05
_STOP = object()


class UsageWriter:
    """Batches usage rows onto the store from one background thread.

    :meth:`record` is what the gateway hands to the shared call as its ``record=``.
    """

    def __init__(self, engine: Engine, spool: UsageSpool, *, max_batch: int = MAX_BATCH,
                 linger: float = LINGER_S) -> None:
        self._engine = engine
        self._linger = linger
        self._spool = spool
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._stopping = threading.Event()
        self._gate = threading.Lock()   # a row is either queued before close() drains, or written here
        self.written = 0       # rows committed to the store by this writer
        self.spooled = 0       # rows handed to the spool because the store refused them
        self.rejected = 0      # rows the store refused as invalid (logged; they can never go in)
        self._org_ids: dict[str, int] = {}   # org name -> id, kept across batches (record_rows)
        self._thread = threading.Thread(target=self._run, name="byok-nb-usage-writer", daemon=True)
        self._thread.start()

    # -- the request side (event loop): never blocks ---------------------------------------------
    def record(self, ctx: Context, row: Mapping[str, Any]) -> None:
        """Queue one usage row (as the store takes it, ``ts`` set) of a call made in ``ctx``: the
        shared call's recorder signature (byok_nb.services.call_usage)."""
        entry = dict(row)
        entry["org"] = ctx.org
        entry.setdefault("user", ctx.user)
        with self._gate:
            if not self._closed:
                self._queue.put(entry)
                return
        self._write([entry])   # after shutdown: write it here rather than lose it

    def pending(self) -> int:
        """Rows queued and not yet taken by the writer (approximate)."""
        return self._queue.qsize()

    # -- the writer thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [] if first is _STOP else [first]
            stop = first is _STOP
            if not stop and self._linger:
                self._stopping.wait(self._linger)   # let a batch gather (cut short by close())
            # Take whatever gathered meanwhile (and while the last batch was being written).
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    continue
                batch.append(item)
            if batch:
                self._write(batch)
            if stop and self._queue.empty():
                return

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            record_rows(self._engine, batch, fixed=None, default_user="", org_ids=self._org_ids)
        except InvalidRequest:
            # One bad row must not take the batch's good rows with it: write them one by one.
            if len(batch) == 1:
                self.rejected += 1
                log.error("a usage row for model %r was refused by the registry and not recorded",
                          batch[0].get("model"))
                return
            for row in batch:
                self._write([row])
            return
        except RegistryError as exc:   # the store is busy or gone: the spool keeps the rows
            self._keep(batch, exc)
            return
        except Exception as exc:  # noqa: BLE001 — a driver error not mapped to StoreUnavailable: keep, never drop
            self._keep(batch, RegistryError(type(exc).__name__, status_code=503))
            return
        self.written += len(batch)
        if self._spool.pending():   # the store takes writes again: catch up
            self._spool.replay_quietly()

    def _keep(self, batch: list[dict[str, Any]], reason: RegistryError) -> None:
        for row in batch:
            fields = {k: v for k, v in row.items() if k not in ("org", "user")}
            ts = fields.get("ts")
            if isinstance(ts, dt.datetime):   # the spool is JSON lines
                fields["ts"] = ts.isoformat()
            try:
                self._spool.keep(fields, org=row["org"], user=row.get("user") or "", reason=reason)
                self.spooled += 1
            except RegistryError as exc:
                log.error("usage of a call to %r in org %r is lost: %s", row.get("model"), row["org"],
                          exc.message)

    # -- shutdown ---------------------------------------------------------------------------------
    def close(self, timeout: float | None = None) -> None:
        """Write every queued row, then stop the thread (the gateway's clean shutdown)."""
        if self._closed:
            return
        self._queue.put(_STOP)
        self._stopping.set()
        self._thread.join(timeout)
        with self._gate:
            self._closed = True
        # Rows queued after the stop marker was taken (a request finishing during shutdown).
        rest = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                rest.append(item)
        if rest:
            self._write(rest)
