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
from .transport import default_ssl_context, install_http_log_scrubbing

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
        return verbatim_session_class()(connector=guarded_connector(policy, max_connections=max_connections),
                                        trust_env=False)

    transport = AiohttpTransport(client=session, verify=default_ssl_context(), trust_env=False)
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(timeout),
                             follow_redirects=False, trust_env=False)
