"""The async HTTP client: ``httpx.AsyncClient`` on the httpx-aiohttp transport, egress-guarded.

httpx's own async transport (anyio + httpcore) adds about a millisecond a request and tops out
far below what the gateway must serve; aiohttp's connection pool does not. The
client keeps httpx's API, so the adapters' async code reads like their sync code.

The egress policy is enforced as the sync client enforces it — at connect time, on the
addresses actually connected to: the aiohttp connector's host resolution is wrapped so that a
metadata host name is refused before any lookup and every address a name resolves to (or an IP
literal spells) is checked; the connector then connects to exactly those vetted addresses, so
DNS rebinding between check and connect cannot slip through. A refusal surfaces as
:class:`~.egress.EgressRefused`, as on the sync client. As a second line, the socket factory
refuses a refused address too (should aiohttp ever connect without resolving through us).
Redirects are never followed and no ambient proxy or ``.netrc`` is read (``trust_env`` off).

The URL goes on the wire exactly as httpx built it: aiohttp would otherwise requote it, turning
``%3A`` in a Bedrock model id into ``:`` — a different path from the one that was signed.
"""
from __future__ import annotations

import functools
import socket
import warnings
from typing import Any

from .egress import EgressPolicy
from .transport import cookieless_jar, default_ssl_context, install_http_log_scrubbing

KEEPALIVE_EXPIRY = 30.0


def guarded_connector(policy: EgressPolicy, *, max_connections: int) -> Any:
    """An ``aiohttp.TCPConnector`` that vets every address before it connects (module doc)."""
    import aiohttp

    # aiohttp has no public hook for "the addresses of this host": fail loudly if the private
    # method we wrap is ever renamed, rather than run unguarded.
    if not callable(getattr(aiohttp.TCPConnector, "_resolve_host", None)):
        raise RuntimeError("aiohttp connector layout changed: cannot install the egress guard")

    class GuardedConnector(aiohttp.TCPConnector):
        async def _resolve_host(self, host: str, port: int, traces: Any = None) -> Any:
            policy.check_host_name(host)
            results = await super()._resolve_host(host, port, traces=traces)
            for result in results:
                policy.check_address(str(result["host"]), host=host)
            return results

    def vetted_socket(addr_info: Any) -> socket.socket:
        family, type_, proto, _canon, address = addr_info
        if policy.refusal_reason(str(address[0])) is not None:
            raise OSError(f"egress refused: {address[0]}")
        return socket.socket(family=family, type=type_, proto=proto)

    return GuardedConnector(limit=max_connections, keepalive_timeout=KEEPALIVE_EXPIRY,
                            ssl=default_ssl_context(), socket_factory=vetted_socket)


@functools.cache
def verbatim_session_class() -> Any:
    """An ``aiohttp.ClientSession`` that sends a URL given as text without requoting it."""
    import aiohttp
    import yarl

    with warnings.catch_warnings():   # aiohttp discourages subclassing; this adds no state
        warnings.simplefilter("ignore", DeprecationWarning)

        class VerbatimSession(aiohttp.ClientSession):
            def request(self, method: str, url: Any, **kwargs: Any) -> Any:
                if isinstance(url, str):
                    url = yarl.URL(url, encoded=True)
                return super().request(method, url, **kwargs)

    return VerbatimSession


def build_async_http_client(*, timeout: float, policy: EgressPolicy, max_connections: int = 128) -> Any:
    """One pooled ``httpx.AsyncClient`` for the running event loop (see module doc). The aiohttp
    session is made on first use, inside the loop that uses it."""
    import aiohttp
    import httpx
    from httpx_aiohttp import AiohttpTransport

    install_http_log_scrubbing()

    def session() -> aiohttp.ClientSession:
        # No cookie jar: a provider's cookie is never sent on a later call (perhaps with another
        # model's key), and no request pays for filtering or storing cookies.
        return verbatim_session_class()(connector=guarded_connector(policy, max_connections=max_connections),
                                        trust_env=False, cookie_jar=aiohttp.DummyCookieJar())

    sessions = _SessionHolder(session)
    transport = sessions.transport = AiohttpTransport(client=sessions, verify=default_ssl_context(),
                                                      trust_env=False)
    client = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(timeout),
                               follow_redirects=False, trust_env=False, cookies=cookieless_jar())
    client.byok_direct = DirectSender(sessions)   # what direct_sender() finds
    return client


class _SessionHolder:
    """The one aiohttp session behind a client — the httpx transport's and the direct sender's —
    made on first use, inside the loop that uses it."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self.session: Any = None
        self.transport: Any = None

    def __call__(self) -> Any:
        if self.session is None:
            self.session = self._make()
            # The transport closes the session it holds when the client closes: make it this one
            # even when only the direct sender has used it.
            self.transport.client = self.session
        return self.session


def direct_sender(client: Any) -> DirectSender | None:
    """The :class:`DirectSender` of an open client made by :func:`build_async_http_client`,
    else None (the caller then goes through httpx)."""
    sender = getattr(client, "byok_direct", None)
    return sender if sender is not None and not client.is_closed else None


class DirectSender:
    """Sends a whole-reply request straight on the client's aiohttp session.

    httpx's request and response objects (URL merging, header normalising, cookie handling) cost
    as much CPU per call as aiohttp's whole exchange; a server making thousands of calls a second
    spends it for nothing. Same session, so the same connection pool and egress guard; aiohttp's
    errors become the httpx errors the transport raises (``map_aiohttp_exceptions``), redirects
    are not followed and bodies arrive undecoded, as through httpx. A header value httpx would
    refuse (not ASCII) and a URL httpx cannot parse are refused here the same way, before any
    I/O."""

    def __init__(self, sessions: _SessionHolder) -> None:
        import aiohttp

        self._sessions = sessions
        # No timers of aiohttp's own: its one caller (http_streams.aexchange) bounds the whole
        # exchange — connect, send, every read — by ``timeout`` already, so a per-read timer (re-armed
        # on every chunk received) would only add work to every request.
        self._timeout = aiohttp.ClientTimeout()

    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> DirectResponse:
        from httpx_aiohttp.transport import map_aiohttp_exceptions

        url = _wire_url(url)
        for name, value in headers.items():
            name.encode("ascii")     # UnicodeEncodeError, as httpx raises it
            value.encode("ascii")
        with map_aiohttp_exceptions():
            response = await self._sessions().request(
                method, url, headers=headers, data=body or None, allow_redirects=False,
                auto_decompress=False, compress=False, timeout=self._timeout)
        return DirectResponse(response)


@functools.lru_cache(maxsize=1024)
def _wire_url(url: str) -> str:
    """The URL as the httpx transport puts it on the wire (``str(request.url)``), or
    httpx.InvalidURL as httpx raises it (each model's URL is parsed once)."""
    import httpx

    return str(httpx.URL(url))


class DirectResponse:
    """The part of ``httpx.Response`` the whole-reply readers use: ``status_code``, ``headers``
    (read as ``httpx.Headers`` are), ``aiter_raw()``, ``read_whole()`` and ``aclose()``."""

    __slots__ = ("_response", "headers", "status_code")

    def __init__(self, response: Any) -> None:
        self._response = response
        self.status_code = response.status
        self.headers = ReplyHeaders(response)

    def plain_length(self) -> int | None:
        """The body's length when the reply says it (Content-Length) and the body is sent as is
        (no Content-Encoding, not chunked): what :meth:`read_whole` may read in one go."""
        response = self._response
        if response.headers.get("Content-Encoding"):
            return None
        length = response.content_length
        return length if isinstance(length, int) and length >= 0 else None

    async def read_whole(self) -> bytes:
        """The whole body in one read (for a reply whose :meth:`plain_length` is known and
        acceptable: aiohttp reads exactly that many bytes)."""
        from httpx_aiohttp.transport import map_aiohttp_exceptions

        with map_aiohttp_exceptions():
            return bytes(await self._response.read())

    async def aiter_raw(self) -> Any:
        from httpx_aiohttp.transport import map_aiohttp_exceptions

        with map_aiohttp_exceptions():
            async for chunk in self._response.content.iter_chunked(16 * 1024):
                yield chunk

    async def aclose(self) -> None:
        from httpx_aiohttp.transport import map_aiohttp_exceptions

        with map_aiohttp_exceptions():
            await self._response.__aexit__(None, None, None)


class ReplyHeaders:
    """``httpx.Headers``' reading API (``get``, ``get_list``, ``[]``, ``in``) straight over
    aiohttp's case-insensitive headers of a reply: building an ``httpx.Headers`` for every reply
    cost more than reading the two headers a reply is asked for. Anything else builds the
    ``httpx.Headers`` once and asks it."""

    __slots__ = ("_built", "_response")

    def __init__(self, response: Any) -> None:
        self._response = response
        self._built: Any = None

    def get(self, key: str, default: Any = None) -> Any:
        values = self._response.headers.getall(key, None)
        return default if values is None else ", ".join(values)

    def get_list(self, key: str, split_commas: bool = False) -> list[str]:
        values = self._response.headers.getall(key, [])
        if not split_commas:
            return list(values)
        return [part.strip() for value in values for part in value.split(",")]

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return str(value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._response.headers

    def _full(self) -> Any:
        """The reply's ``httpx.Headers``, built on first need."""
        if self._built is None:
            import httpx

            self._built = httpx.Headers(self._response.raw_headers)
        return self._built

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._full(), name)

    def __iter__(self) -> Any:
        return iter(self._full())

    def __repr__(self) -> str:   # names only: a header value may be anything a provider sent
        return f"ReplyHeaders({sorted(set(k.lower() for k in self._response.headers))!r})"
