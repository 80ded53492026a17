"""An ASGI request's body, read whole under a size limit: what the gateway's routes and the remote
registry API (``byok_nb.connect``) both take before parsing JSON."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .errors import InvalidRequest

__all__ = ["MAX_BODY", "read_body"]

# Bytes: a chat request with images inline, or a seeding CSV (1 MiB at most), stays well under it.
MAX_BODY = 32 * 2**20


async def read_body(receive: Callable[[], Awaitable[dict[str, Any]]], limit: int = MAX_BODY) -> bytes:
    """The body's bytes; ``InvalidRequest`` (413) past ``limit``, (400) when the client went away
    before sending all of it."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("the client went away before sending the request body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise InvalidRequest(f"the request body is larger than {limit // 2**20} MiB", status_code=413)
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)
