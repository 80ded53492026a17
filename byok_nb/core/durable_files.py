"""Small helpers for files that must survive a crash (key files, the usage spool)."""
from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: str | os.PathLike[str] | Path) -> None:
    """Flush a directory entry (a rename or a new file in it) to disk, where the platform allows:
    without it a crash right after ``os.replace`` can bring the old name back."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
