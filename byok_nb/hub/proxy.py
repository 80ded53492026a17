"""Reverse proxy from the hub service to its private Voila: plain HTTP and websockets, over one
aiohttp client session.

What crosses, and what does not:

* the identity header ``X-Byok-Hub-User`` is set by the service to the authenticated hub name;
  any header of that name the visitor sent (in any case, with ``_`` for ``-``) is dropped first;
* Voila's token goes upstream as ``Authorization: token ...`` on every request and never comes
  back: the visitor's own Authorization and Cookie headers are not forwarded (Voila needs neither;
  the hub cookie is the visitor's hub token), Voila's Set-Cookie answers are dropped (a Voila login
  cookie would let its holder reach Voila without the service), and any occurrence of the token in
  a response body is blanked (Voila 0.5 embeds none; this is the net under a future one);
* Origin and Referer are not forwarded (Voila would compare Origin with its own loopback Host);
  the service checks them itself for websockets and for requests that change state;
* a kernel belongs to the visitor whose page started it: the kernel id each page carries
  (Voila's ``"kernelId"`` in the page config) is recorded with the visitor's name, and the
  kernel's routes (``api/kernels/<id>``, ``voila/api/shutdown/<id>``, ``voila/execution/<id>``)
  are refused to anyone else — an id seen by another user (a shared screenshot, a log line)
  does not let them drive someone else's session. ``voila/query/<id>``, the socket a preheated
  kernel receives its visitor on, is Voila's and its kernels' only (they reach Voila directly);
* no answer may be framed (``X-Frame-Options: DENY``, ``frame-ancestors 'none'``).
"""
from __future__ import annotations

import asyncio
import contextlib
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp

from .voila_child import IDENTITY_HEADER

__all__ = ["TokenScrubber", "VoilaProxy", "upstream_headers"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_IDENTITY = IDENTITY_HEADER.lower()
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "trailers", "transfer-encoding", "upgrade"}
_NOT_FORWARDED = _HOP_BY_HOP | {"host", "content-length", "authorization", "cookie", "origin", "referer",
                                "accept-encoding", "sec-websocket-key", "sec-websocket-version",
                                "sec-websocket-extensions", "sec-websocket-protocol", "x-forwarded-for",
                                "x-forwarded-host", "x-forwarded-proto", "x-real-ip"}
_NOT_RETURNED = _HOP_BY_HOP | {"content-length", "set-cookie", "server", "date"}
MAX_REQUEST_BODY = 16 * 2**20
_KERNEL_ID = re.compile(rb'"kernelId":\s*"([0-9a-fA-F-]{8,64})"')
_PAGE_SCAN = 512 * 1024          # bytes of a page searched for its kernel id (it is in the head)
_KERNEL_ROUTE = re.compile(r"^(?:api/kernels|voila/api/shutdown|voila/execution)/([^/?]+)")
MAX_KERNELS = 10_000             # owners remembered (oldest forgotten first; culled ones are gone)


class KernelOwners:
    """Which visitor each app kernel belongs to (see the module doc)."""

    def __init__(self) -> None:
        self._owners: OrderedDict[str, str] = OrderedDict()

    def record(self, kernel_id: str, user: str) -> None:
        self._owners[kernel_id] = user
        self._owners.move_to_end(kernel_id)
        while len(self._owners) > MAX_KERNELS:
            self._owners.popitem(last=False)

    def owner(self, kernel_id: str) -> str | None:
        return self._owners.get(kernel_id)

    @staticmethod
    def kernel_of(route: str) -> str | None:
        """The kernel id a path under the prefix addresses, if it is a kernel's route."""
        match = _KERNEL_ROUTE.match(route)
        return match.group(1) if match else None

    def allows(self, route: str, user: str) -> bool:
        """False for Voila's kernel query socket, and for a kernel route of someone else's (or an
        unknown) kernel."""
        if route.startswith("voila/query"):
            return False
        kernel = self.kernel_of(route)
        return kernel is None or self.owner(kernel) == user


def _is_identity_header(name: str) -> bool:
    return name.lower().replace("_", "-") == _IDENTITY


def upstream_headers(headers: Iterable[tuple[bytes, bytes]], user: str, voila_token: str) -> dict[str, str]:
    """The headers Voila gets for a visitor's request (rules in the module doc)."""
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name in _NOT_FORWARDED or _is_identity_header(name):
            continue
        value = raw_value.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    out["authorization"] = f"token {voila_token}"
    out["accept-encoding"] = "identity"   # bodies are scrubbed; loopback needs no compression
    out[_IDENTITY] = user
    return out


class TokenScrubber:
    """Blanks ``secret`` in a byte stream cut into arbitrary chunks (a match may span two)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.blank = b"x" * len(self.secret)   # same length: a Content-Length stays right
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        data = (self._held + chunk).replace(self.secret, self.blank)
        keep = len(self.secret) - 1
        self._held, out = (data[-keep:], data[:-keep]) if keep and len(data) >= keep else (data, b"")
        return out

    def finish(self) -> bytes:
        rest, self._held = self._held, b""
        return rest


class VoilaProxy:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url          # http://127.0.0.1:<port>
        self.token = token
        self.session: aiohttp.ClientSession | None = None
        self.kernels = KernelOwners()

    def __repr__(self) -> str:
        return f"VoilaProxy({self.base_url!r})"

    def client(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(
                auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=None))
        return self.session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def _target(self, scope: Scope, scheme: str = "http") -> str:
        raw = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        base = self.base_url if scheme == "http" else "ws" + self.base_url[len("http"):]
        return base + raw.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")

    def _location(self, value: str) -> bytes:
        # A redirect naming Voila's private address goes to the same path through the service.
        if value.startswith(self.base_url):
            value = value[len(self.base_url):] or "/"
        return value.encode("latin-1")

    # -- HTTP -----------------------------------------------------------------------------------------
    async def http(self, scope: Scope, receive: Receive, send: Send, user: str) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_REQUEST_BODY:
                return await _plain(send, 413, "request body too large")
            if not message.get("more_body"):
                break
        headers = upstream_headers(scope["headers"], user, self.token)
        try:
            async with self.client().request(scope["method"], self._target(scope), headers=headers,
                                             data=bytes(body) if body else None,
                                             allow_redirects=False) as answer:
                out = [(k.lower().encode("latin-1"), self._location(v) if k.lower() == "location" else
                        v.encode("latin-1"))
                       for k, v in answer.headers.items() if k.lower() not in _NOT_RETURNED]
                # The app is never framed, not even by a page of the same origin (another hub
                # user's server on the hub's domain could otherwise read it through an iframe).
                out += [(b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'")]
                if "Content-Length" in answer.headers:
                    out.append((b"content-length", answer.headers["Content-Length"].encode()))
                await send({"type": "http.response.start", "status": answer.status, "headers": out})
                scrub = TokenScrubber(self.token)
                page = bytearray() if answer.content_type == "text/html" else None
                async for chunk in answer.content.iter_any():
                    if page is not None:
                        page += chunk
                        found = _KERNEL_ID.search(page)
                        if found:
                            self.kernels.record(found.group(1).decode(), user)
                        if found or len(page) > _PAGE_SCAN:
                            page = None
                    cleaned = scrub.feed(chunk)
                    if cleaned:
                        await send({"type": "http.response.body", "body": cleaned, "more_body": True})
                await send({"type": "http.response.body", "body": scrub.finish()})
        except (TimeoutError, aiohttp.ClientError, OSError):
            await _plain(send, 502, "the app is not answering; try again in a moment")

    # -- websockets -----------------------------------------------------------------------------------
    async def websocket(self, scope: Scope, receive: Receive, send: Send, user: str) -> None:
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return
        headers = upstream_headers(scope["headers"], user, self.token)
        protocols = [p.strip() for p in _header(scope, b"sec-websocket-protocol").split(",") if p.strip()]
        try:
            upstream = await self.client().ws_connect(self._target(scope, "ws"), headers=headers,
                                                      protocols=protocols, autoping=True,
                                                      max_msg_size=0, compress=0)
        except (TimeoutError, aiohttp.ClientError, OSError):
            await send({"type": "websocket.close", "code": 1011})
            return
        async with upstream:
            await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
            to_voila = asyncio.create_task(_client_to_upstream(receive, upstream))
            try:
                await _upstream_to_client(upstream, send)
            finally:
                to_voila.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await to_voila


async def _client_to_upstream(receive: Receive, upstream: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            await upstream.close()
            return
        if message.get("text") is not None:
            await upstream.send_str(message["text"])
        elif message.get("bytes") is not None:
            await upstream.send_bytes(message["bytes"])


async def _upstream_to_client(upstream: aiohttp.ClientWebSocketResponse, send: Send) -> None:
    async for message in upstream:
        if message.type == aiohttp.WSMsgType.TEXT:
            await send({"type": "websocket.send", "text": message.data})
        elif message.type == aiohttp.WSMsgType.BINARY:
            await send({"type": "websocket.send", "bytes": message.data})
        else:
            break
    with contextlib.suppress(Exception):   # the visitor may be gone already
        await send({"type": "websocket.close", "code": upstream.close_code or 1000})


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
