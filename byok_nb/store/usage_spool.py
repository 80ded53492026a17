"""A durable local spool for usage rows the store could not take when the provider had already
answered (the store busy past its timeout, unreachable, read-only).

The answer has gone out and was paid for, so the call must not fail and its usage must not be
lost: the row is appended to ``$BYOK_NB_HOME/usage_spool/<store>.jsonl`` (one JSON object a line,
fsynced, mode 0600; usage rows hold names and counts, never a secret) and a warning is logged. The
spool is written to the store on the next successful usage write of this registry and when a
registry on that store is opened; each spooled row carries an id that is recorded in the same
transaction as the row, so a crash between that commit and emptying the file never records a row
twice. A file lock (``fcntl.flock``) keeps appends and the replay of several processes on one host
apart.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..core.durable_files import fsync_dir
from ..core.errors import InvalidRequest, RegistryError, StoreUnavailable
from . import read_tx, schema
from .usage_log import record_rows

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Engine

__all__ = ["UsageSpool"]

log = logging.getLogger("byok_nb.usage")
SPOOL_DIR = "usage_spool"
_MARKER_PREFIX = "usage_spool:"   # schema_info key of a replayed row (its id): exactly once
# A spool holds the rows of calls made while the store was down: a few hundred bytes each. A file
# far larger than any real outage would leave is not read into memory at once; it is set aside.
MAX_SPOOL_BYTES = 64 * 2**20
# Never follow a link planted at the spool's path: another local user could point it at a file
# of ours (appends would corrupt it) or at rows of their own making (replay would record them).
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _store_name(engine: "Engine") -> str | None:
    """A file name for the store behind ``engine``; None for an in-memory database."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return None
        ident = "sqlite:" + str(Path(url.database).expanduser().resolve())
    else:   # the password plays no part in which database it is
        ident = url.render_as_string(hide_password=True)
    return hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


class UsageSpool:
    """The spool of one store, as seen from this host's ``BYOK_NB_HOME``."""

    def __init__(self, engine: "Engine", home: Path) -> None:
        self._engine = engine
        name = _store_name(engine)
        self.path: Path | None = home / SPOOL_DIR / f"{name}.jsonl" if name else None
        self._memory: list[dict[str, Any]] = []   # an in-memory store: nothing outlives it anyway

    # -- keeping a row ----------------------------------------------------------------------------
    def keep(self, row: Mapping[str, Any], *, org: str, user: str, reason: RegistryError) -> None:
        """Append one usage row (as analytics records it, without ``org``) for later."""
        entry = {key: _jsonable(value) for key, value in row.items()}
        entry.update(org=org, user=user, spool_id=uuid.uuid4().hex,
                     ts=entry.get("ts") or dt.datetime.now(dt.timezone.utc).isoformat())
        if self.path is None:
            self._memory.append(entry)
            where = "memory"
        else:
            try:
                with self._locked():
                    self._append(entry)
            except OSError as exc:
                raise StoreUnavailable(
                    f"the provider answered, but the call's usage could not be recorded: "
                    f"{reason.message}; and the local usage spool {self.path} is not writable "
                    f"({exc if isinstance(exc, _Untrusted) else exc.strerror or type(exc).__name__})") from None
            where = str(self.path)
        # The reason is the driver's first line (no SQL, no parameters); the row names no secret.
        log.warning("usage of a call to %r in org %r could not be written to the registry (%s); it "
                    "is kept in %s and will be recorded on the next successful write or open",
                    entry.get("model"), org, reason.message, where)

    def _append(self, entry: dict[str, Any]) -> None:
        assert self.path is not None
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW, 0o600)
        try:
            _require_private(fd, self.path)
            os.write(fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.path.parent)

    @contextlib.contextmanager
    def _locked(self, *, blocking: bool = True) -> Iterator[bool]:
        assert self.path is not None
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _require_private(None, self.path.parent)
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)   # closing releases the lock

    # -- writing it to the store ------------------------------------------------------------------
    def pending(self) -> bool:
        if self.path is None:
            return bool(self._memory)
        return self.path.exists()

    def replay(self) -> int:
        """Write the spooled rows to the store, exactly once; returns how many were written.

        Store errors propagate (the rows stay spooled). Another process replaying at this moment
        is left to it (returns 0).
        """
        if self.path is None:
            rows, self._memory = self._memory, []
            try:
                return self._record(rows)
            except BaseException:
                self._memory[:0] = rows
                raise
        if not self.path.exists():
            return 0
        with self._locked(blocking=False) as acquired:
            if not acquired or not self.path.exists():
                return 0
            try:
                rows = self._read()
            except _Untrusted as exc:
                aside = self.path.with_name(f"{self.path.stem}.refused-{uuid.uuid4().hex[:8]}.jsonl")
                os.replace(self.path, aside)   # renames the link or file itself, never its target
                log.error("the usage spool %s was not replayed (%s); moved to %s", self.path, exc, aside)
                return 0
            try:
                written = self._record(rows) if rows else 0
            except InvalidRequest as exc:
                # A row the store refuses will never go in: set the file aside (kept for an
                # operator to look at) rather than retry it on every call.
                aside = self.path.with_name(f"{self.path.stem}.rejected-{uuid.uuid4().hex[:8]}.jsonl")
                os.replace(self.path, aside)
                log.error("spooled usage rows were refused by the registry (%s); moved to %s",
                          exc.message, aside)
                return 0
            self.path.unlink()
            fsync_dir(self.path.parent)
        if written:
            log.info("recorded %d spooled usage row(s) from %s", written, self.path)
        return written

    def replay_quietly(self) -> int:
        """:meth:`replay`, logging instead of raising when the store still refuses."""
        try:
            return self.replay()
        except (RegistryError, OSError) as exc:
            reason = (exc.message if isinstance(exc, RegistryError)
                      else str(exc) if isinstance(exc, _Untrusted) else (exc.strerror or type(exc).__name__))
            log.warning("spooled usage rows in %s are not recorded yet (%s); they will be retried",
                        self.path or "memory", reason)
            return 0

    def _read(self) -> list[dict[str, Any]]:
        assert self.path is not None
        rows = []
        try:
            fd = os.open(self.path, os.O_RDONLY | _NOFOLLOW)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _Untrusted("it is a symbolic link") from None
            raise
        try:
            _require_private(fd, self.path)
            if os.fstat(fd).st_size > MAX_SPOOL_BYTES:
                raise _Untrusted(f"it is larger than {MAX_SPOOL_BYTES} bytes")
            with os.fdopen(os.dup(fd), "rb") as stream:
                text = stream.read(MAX_SPOOL_BYTES + 1).decode("utf-8", "replace")
        finally:
            os.close(fd)
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:   # a line torn by a crash mid-append: it was never acknowledged
                log.warning("skipping unreadable line %d of the usage spool %s", number, self.path)
                continue
            if isinstance(entry, dict) and isinstance(entry.get("spool_id"), str):
                rows.append(entry)
        return rows

    def _record(self, rows: list[dict[str, Any]]) -> int:
        si = schema.schema_info
        keys = [_MARKER_PREFIX + row["spool_id"] for row in rows]
        with read_tx(self._engine) as conn:
            done = {k for (k,) in conn.execute(select(si.c.key).where(si.c.key.in_(keys)))}
        fresh = [row for row, key in zip(rows, keys) if key not in done]
        if not fresh:
            return 0
        markers = [{"key": _MARKER_PREFIX + row["spool_id"], "value": row["ts"]} for row in fresh]

        def mark(conn: Any) -> None:
            conn.execute(si.insert(), markers)

        usage_rows = [{k: v for k, v in row.items() if k != "spool_id"} for row in fresh]
        return record_rows(self._engine, usage_rows, fixed=None, default_user="", also=mark)


class _Untrusted(OSError):
    """The spool file is not one this user alone could have written."""


def _require_private(fd: int | None, path: Path) -> None:
    """Refuse a spool (file or directory) another local user owns or may write to."""
    st = os.fstat(fd) if fd is not None else os.stat(path, follow_symlinks=False)
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise _Untrusted(f"{path} belongs to another user")
    if st.st_mode & 0o022:
        raise _Untrusted(f"{path} can be written by other users (mode {st.st_mode & 0o777:o})")
