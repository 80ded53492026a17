"""Server-sent events, decoded incrementally (the WHATWG event-stream format).

Providers send ``data: {...}`` lines separated by blank lines, comments (``: OPENROUTER
PROCESSING``) to keep a connection alive, sometimes ``event:`` names (TGI's ``event: error``), and
lines ending in ``\\n``, ``\\r\\n`` or ``\\r``. Bytes arrive in arbitrary pieces (a line or even a
UTF-8 character may be split), so the decoder keeps what is not yet a whole line.

One event's data may not grow past ``MAX_EVENT_BYTES``: a server streaming one endless line must
not make us buffer it all.
"""
from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass

MAX_EVENT_BYTES = 4 * 2**20
# Only these end a line (str.splitlines would also split on U+2028 and others, which JSON text
# may carry raw).
_LINE_END = re.compile(r"\r\n|\r|\n")


class EventTooLarge(ValueError):
    """One event (or one line) grew past ``MAX_EVENT_BYTES``."""


@dataclass
class Event:
    data: str
    event: str = "message"


class SSEDecoder:
    """Feed bytes, get complete :class:`Event` s; comments and empty events are skipped."""

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""          # the start of a line not yet ended
        self._data: list[str] = []
        self._size = 0
        self._event = ""
        self._limit = limit
        self._cr = False            # the last piece ended in "\r": a following "\n" belongs to it

    def feed(self, data: bytes) -> Iterator[Event]:
        text = self._text.decode(data)
        if not text:
            return
        if self._cr and text.startswith("\n"):   # the "\n" of a "\r\n" split between pieces
            text = text[1:]
        self._cr = text.endswith("\r")
        parts = _LINE_END.split(text)   # only the new text: a long line is not rescanned
        parts[0] = self._pending + parts[0]
        *lines, self._pending = parts
        if len(self._pending) > self._limit:
            raise EventTooLarge("a line of the event stream is too long")
        for line in lines:
            event = self._line(line)
            if event is not None:
                yield event

    def close(self) -> Iterator[Event]:
        """The last event when the stream ended without its blank line."""
        tail = self._pending + self._text.decode(b"", final=True)
        self._pending = ""
        if tail:
            event = self._line(tail)
            if event is not None:
                yield event
        event = self._line("")
        if event is not None:
            yield event

    def _line(self, line: str) -> Event | None:
        if not line:                          # a blank line dispatches the event
            if not self._data:
                self._event = ""
                return None
            event = Event("\n".join(self._data), self._event or "message")
            self._data, self._size, self._event = [], 0, ""
            return event
        if line.startswith(":"):              # a comment (keep-alive)
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._size += len(value) + 1
            if self._size > self._limit:
                raise EventTooLarge("an event of the event stream is too large")
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None                           # id / retry / unknown fields are ignored
