"""Scrubbing a text that arrives in pieces: a streamed answer's deltas.

Scrubbing each piece on its own misses a key that a provider echoes across two pieces (``...sk-ab``
then ``cd12...``): neither piece holds it. :class:`StreamScrubber` carries over, from one piece to
the next, only the end of what it was given that could still be the beginning of a secret — the
longest suffix that is a prefix of one (in any letter case, as :func:`~.secrets.scrub` matches) —
and releases it, scrubbed, as soon as the next piece shows whether it was one, or at the end
(:meth:`StreamScrubber.flush`). Ordinary text is therefore not delayed at all, and text that merely
ends like the first characters of a key waits only for the next piece.

What is released goes through :func:`~.secrets.scrub` (without its key-shape rule, as whole answers
are scrubbed), so every form it knows — encodings, fragments of 12 characters or more — still goes
within a piece; the carry-over covers the key written as it is, which is what an echo across a
chunk boundary looks like.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from .secrets import scrub

__all__ = ["StreamScrubber"]

_MIN_SECRET = 4   # scrub() ignores shorter "secrets"; so does the carry-over


class StreamScrubber:
    """``feed(piece) -> text safe to hand over now``; ``flush() -> the rest`` at the end."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = [s for s in dict.fromkeys(secrets) if isinstance(s, str) and len(s) >= _MIN_SECRET]
        self._lowered = [s.lower() for s in self._secrets]
        self._whole = [re.compile(re.escape(s), re.IGNORECASE) for s in self._secrets]
        self._longest = max((len(s) for s in self._secrets), default=0)
        self._held = ""

    @property
    def holding(self) -> str:
        """The text held back for now (for tests and debugging; it may begin a secret)."""
        return self._held

    def feed(self, piece: str) -> str:
        """The part of ``held + piece`` that cannot be the start of a secret, scrubbed; the rest
        is held until the next piece or :meth:`flush`."""
        if not self._secrets:
            return piece
        pending = self._held + piece
        cut = self._hold_from(pending)
        self._held = pending[cut:]
        return scrub(pending[:cut], self._secrets, shapes=False) if cut else ""

    def flush(self) -> str:
        """Everything still held, scrubbed: the stream ended, so it is not the start of a key."""
        held, self._held = self._held, ""
        return scrub(held, self._secrets, shapes=False) if held else ""

    def _hold_from(self, text: str) -> int:
        """Where the held tail starts: the earliest position whose suffix is a proper prefix of a
        secret (letter case ignored), never inside a whole secret already there (that one is
        scrubbed now), else ``len(text)``."""
        start = max(0, len(text) - self._longest + 1)
        for whole in self._whole:          # a whole key near the end goes out now, redacted
            for match in whole.finditer(text, max(0, start - self._longest)):
                start = max(start, match.end())
        for i in range(start, len(text)):
            tail = text[i:].lower()
            if any(len(tail) < len(s) and s.startswith(tail) for s in self._lowered):
                return i
        return len(text)
