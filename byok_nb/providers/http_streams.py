"""HTTP for streamed and async replies, bounded as :func:`transport.exchange` bounds a whole reply.

* :func:`open_stream` / :func:`aopen_stream` send a request and return the reply once its status
  line and headers are in — within ``timeout`` for the whole of connect, TLS, send and headers.
  The body is then read by the caller, each read bounded by the client's own read timeout (a
  stream may rightly run longer than any one deadline; the caller can close it at any time).
  Bodies are asked for unencoded (``identity``): a stream is decoded as it arrives.
* :func:`read_error_body` / :func:`aread_error_body`: the first ``MAX_ERROR_BODY_BYTES`` of an
  error reply, decoded with :class:`~transport.BoundedDecoder`, within ``timeout``.
* :func:`aexchange`: the async twin of :func:`transport.exchange` (whole reply, size-capped).

Transport failures are raised as the ``httpx`` errors they are, or ``TimeoutError`` for the
async deadline; callers word them.
"""
from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any

from ..core.errors import InvalidRequest
from .async_http import DirectResponse, direct_sender
from .retry import attempt_deadline
from .transport import (
    ACCEPT_ENCODING,
    MAX_ERROR_BODY_BYTES,
    MAX_RESPONSE_BYTES,
    BoundedDecoder,
    HttpReply,
    _call_deadline,
    _call_secrets,
    _sent_secrets,
    _unsendable_header_message,
    clean_error,
)

STREAM_ENCODING = "identity"


def _request(client: Any, call: Any, encoding: str) -> Any:
    """``client``'s request for ``call`` (method, url, headers, body); ``InvalidRequest`` for a
    header HTTP cannot carry, without the header's value."""
    unsendable = None
    try:
        request = client.build_request(call.method, call.url, headers=call.headers, content=call.body)
    except UnicodeEncodeError as exc:
        unsendable = exc
    if unsendable is not None:   # raised outside the except: no __context__ holding the value
        raise InvalidRequest(_unsendable_header_message(unsendable))
    request.headers["Accept-Encoding"] = encoding
    return request


def open_stream(client: Any, call: Any, *, timeout: float) -> Any:
    """Send ``call`` on the sync ``httpx`` client; the streaming response, headers read."""
    deadline = _call_deadline.set(attempt_deadline(timeout))
    secrets = _call_secrets.set(_sent_secrets(call.headers))
    try:
        return client.send(_request(client, call, STREAM_ENCODING), stream=True)
    finally:
        _call_deadline.reset(deadline)
        _call_secrets.reset(secrets)


async def aopen_stream(client: Any, call: Any, *, timeout: float) -> Any:
    """:func:`open_stream` on an ``httpx.AsyncClient``."""
    async with asyncio.timeout(timeout):
        return await client.send(_request(client, call, STREAM_ENCODING), stream=True)


def read_error_body(response: Any, *, timeout: float) -> bytes:
    """The first ``MAX_ERROR_BODY_BYTES`` of an error reply (decoded), read within ``timeout``."""
    import httpx

    deadline = attempt_deadline(timeout)
    decoder = _decoder(response)
    kept = bytearray()
    try:
        for raw in response.iter_raw():
            for piece in decoder.feed(raw):
                kept += piece
            if len(kept) >= MAX_ERROR_BODY_BYTES:
                break
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("reply not complete within the timeout")
        else:
            for piece in decoder.flush():
                kept += piece
    except zlib.error:
        return b""
    return bytes(kept[:MAX_ERROR_BODY_BYTES])


async def aread_error_body(response: Any, *, timeout: float) -> bytes:
    """:func:`read_error_body` for an async response."""
    decoder = _decoder(response)
    kept = bytearray()
    try:
        async with asyncio.timeout(timeout):
            ended = True
            async for raw in response.aiter_raw():
                for piece in decoder.feed(raw):
                    kept += piece
                if len(kept) >= MAX_ERROR_BODY_BYTES:
                    ended = False
                    break
            if ended:
                for piece in decoder.flush():
                    kept += piece
    except zlib.error:
        return b""
    return bytes(kept[:MAX_ERROR_BODY_BYTES])


async def aexchange(client: Any, call: Any, *, timeout: float, label: str) -> HttpReply:
    """Send ``call`` on an ``httpx.AsyncClient`` and read the whole reply within ``timeout``:
    a reply over ``MAX_RESPONSE_BYTES`` (decoded) is refused, of an error reply the first
    ``MAX_ERROR_BODY_BYTES`` are kept — as :func:`transport.exchange` does."""
    async with asyncio.timeout(timeout):
        response = await _asend_whole(client, call)
        try:
            status = response.status_code
            if status >= 400:
                body = await aread_error_body(response, timeout=timeout)
                return HttpReply(status, response.headers, body)
            length = response.plain_length() if isinstance(response, DirectResponse) else None
            if length is not None and length <= MAX_RESPONSE_BYTES:
                # Sent as is with its length: one read of exactly that many bytes.
                return HttpReply(status, response.headers, await response.read_whole())
            decoder = _decoder(response)
            chunks: list[bytes] = []
            size = 0
            undecodable = False
            try:
                async for raw in response.aiter_raw():
                    for piece in decoder.feed(raw):
                        chunks.append(piece)
                        size += len(piece)
                        if size > MAX_RESPONSE_BYTES:
                            raise clean_error(
                                f"{label} sent a reply larger than {MAX_RESPONSE_BYTES // 2**20} MiB "
                                f"(HTTP {status}, counted decoded); refused.", (),
                                status_code=502, provider=label, transient=False)
                chunks.extend(decoder.flush())
            except zlib.error:
                undecodable = True
            if undecodable:
                raise clean_error(f"{label} sent a reply (HTTP {status}) whose Content-Encoding "
                                  f"could not be decoded.", (), status_code=502, provider=label,
                                  transient=False)
            return HttpReply(status, response.headers, b"".join(chunks))
        finally:
            await response.aclose()


async def _asend_whole(client: Any, call: Any) -> Any:
    """Send ``call`` for a whole reply: straight on aiohttp when ``client`` is the hub's
    (async_http.DirectSender: the same pool, guard and errors, without httpx's per-request
    cost), else through httpx."""
    direct = direct_sender(client)
    if direct is None:
        return await client.send(_request(client, call, ACCEPT_ENCODING), stream=True)
    headers = dict(call.headers)
    headers["Accept-Encoding"] = ACCEPT_ENCODING
    unsendable = None
    try:
        return await direct.send(call.method, call.url, headers, call.body)
    except UnicodeEncodeError as exc:
        unsendable = exc
    raise InvalidRequest(_unsendable_header_message(unsendable))


def _decoder(response: Any) -> BoundedDecoder:
    return BoundedDecoder(response.headers.get_list("content-encoding", split_commas=True))
