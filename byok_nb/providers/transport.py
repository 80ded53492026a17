"""HTTP plumbing shared by the httpx adapters: one guarded client, one JSON POST, error mapping.

Everything that can go wrong between "we built a body" and "we have the provider's JSON" becomes a
``ProviderError`` here, with secrets scrubbed and at most 4,000 characters of a body shown (P-5):

* transport failures (DNS, refused, TLS, timeout) -> status 502 and a message naming the kind;
* redirects (3xx) -> status 502 naming the status and ``Location``; they are never followed (P-6);
* error statuses -> the provider's status and the provider's own message, found in the
  OpenAI shape ``{"error": {"message": ...}}``, HF's ``{"error": "..."}``, ``{"message": ...}``,
  ``{"detail": ...}``, or else the raw body.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ProviderError
from .egress import EgressPolicy, guarded_network_backend

MAX_SHOWN_CHARS = 4000           # P-5: at most this much of a provider body is shown
MAX_RESPONSE_BYTES = 16 * 2**20  # a reply larger than this is refused instead of buffered
USER_AGENT = "byok_nb"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Secrets and key-shaped tokens out of ``text`` (delegates to ``byok_nb.secrets.scrub``)."""
    from ..secrets import scrub as scrub_secrets

    return scrub_secrets(text, secrets)


def shorten(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """The first ``limit`` characters of ``text``, marked when cut."""
    return text if len(text) <= limit else text[:limit] + " …[truncated]"


_ssl_context: Any = None
_ssl_lock = threading.Lock()


def default_ssl_context() -> Any:
    """One verifying SSL context (certifi's CAs) for the process: loading the CA bundle costs
    ~20 ms, and a context is safe to share between clients and threads."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            import httpx

            _ssl_context = httpx.create_ssl_context(trust_env=False)
        return _ssl_context


def build_http_client(*, timeout: float, policy: EgressPolicy, max_connections: int = 128) -> Any:
    """One pooled ``httpx.Client`` whose every new connection passes the egress policy.

    Redirects are off (P-6, T-8); ``trust_env`` is off so no ambient proxy or ``.netrc`` sneaks in
    (a proxy would also hide the real destination from the egress check).
    """
    import httpcore
    import httpx

    limits = httpx.Limits(max_connections=max_connections,
                          max_keepalive_connections=max_connections, keepalive_expiry=30.0)
    transport = httpx.HTTPTransport(limits=limits, trust_env=False)
    # httpx has no public hook for the network backend, so we swap in a pool built with ours.
    # If a future httpx renames the attribute, fail loudly rather than run unguarded.
    if not isinstance(getattr(transport, "_pool", None), httpcore.ConnectionPool):
        raise RuntimeError("httpx transport layout changed: cannot install the egress guard")
    transport._pool = httpcore.ConnectionPool(
        ssl_context=default_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=guarded_network_backend(policy),
    )
    return httpx.Client(transport=transport, timeout=httpx.Timeout(timeout),
                        follow_redirects=False, trust_env=False)


@dataclass
class HttpReply:
    status: int
    headers: Any          # httpx.Headers
    content: bytes

    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def post_json(client: Any, url: str, *, headers: dict[str, str], body: bytes, label: str,
              secrets: Iterable[str], timeout: float) -> HttpReply:
    """POST ``body`` (already JSON-encoded) and return the reply; raise ``ProviderError`` for
    transport failures and redirects. Error statuses are returned, not raised: the caller knows
    the provider and maps them with :func:`error_from_reply`.

    The whole call — connect, send, and every chunk read — is bounded by ``timeout`` seconds, so a
    server that drips bytes cannot hold a Test Connection open past it (T-8).
    """
    import httpx

    deadline = time.monotonic() + timeout
    try:
        request = client.build_request("POST", url, headers=headers, content=body)
        response = client.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise ProviderError(
                        f"{label} sent a reply larger than {MAX_RESPONSE_BYTES // 2**20} MiB; refused.",
                        status_code=502, provider=label)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("reply not complete within the timeout")
        finally:
            response.close()
    except httpx.HTTPError as exc:
        raise transport_error(exc, url=url, label=label, secrets=secrets, timeout=timeout) from None
    content = b"".join(chunks)
    reply = HttpReply(response.status_code, response.headers, content)
    if 300 <= reply.status < 400:
        location = reply.headers.get("location", "(no Location header)")
        raise ProviderError(
            scrub(f"{label} answered HTTP {reply.status} redirecting to {location}; byok_nb never "
                  f"follows redirects — use the final URL instead.", secrets),
            status_code=502, provider=label)
    return reply


def transport_error(exc: Exception, *, url: str, label: str, secrets: Iterable[str],
                    timeout: float) -> ProviderError:
    """A ``ProviderError`` (status 502) that says what kind of transport failure happened."""
    import httpx

    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        kind = f"timed out after {timeout:g} s"
    elif isinstance(exc, httpx.ConnectError):
        if detail.startswith("DNS lookup failed"):
            kind = "could not be resolved"
        elif "SSL" in detail or "certificate" in detail.lower():
            kind = "failed the TLS handshake"
        elif "refused" in detail.lower():
            kind = "refused the connection"
        else:
            kind = "could not be reached"
    elif isinstance(exc, httpx.RemoteProtocolError):
        kind = "closed the connection or broke the HTTP protocol"
    elif isinstance(exc, httpx.UnsupportedProtocol):
        kind = "is not an http(s) URL"
    else:
        kind = "failed"
    message = f"{label} endpoint {url} {kind}: {detail}"
    return ProviderError(scrub(message, secrets), status_code=502,
                         provider_message=scrub(detail, secrets), provider=label)


def provider_message_from_body(body: bytes | str) -> str:
    """The provider's own error text out of an error body (see module doc), untruncated."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error.get("msg")
            if message:
                return _as_text(message)
            return json.dumps(error)
        if isinstance(error, str) and error:
            return error
        for key in ("message", "Message", "detail"):
            if data.get(key):
                return _as_text(data[key])
    return text.strip()


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def error_from_reply(reply: HttpReply, *, label: str, secrets: Iterable[str]) -> ProviderError:
    """A ``ProviderError`` carrying the provider's status and its own (scrubbed, shortened) text."""
    provider_message = provider_message_from_body(reply.content) or _reason(reply.status)
    provider_message = shorten(scrub(provider_message, secrets))
    extra = ""
    retry_after = reply.headers.get("retry-after")
    if reply.status == 429 and retry_after:
        extra = f" (Retry-After: {retry_after} s)"
    return ProviderError(f"{label} returned HTTP {reply.status}: {provider_message}{extra}",
                         status_code=reply.status, provider_message=provider_message, provider=label)


def malformed_reply(reply: HttpReply, *, label: str, secrets: Iterable[str], why: str) -> ProviderError:
    """A 2xx reply we cannot read: status 502, the first 4,000 characters shown."""
    shown = shorten(scrub(reply.text(), secrets))
    return ProviderError(f"{label} returned a malformed reply (HTTP {reply.status}, {why}): {shown}",
                         status_code=502, provider_message=shown, provider=label)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
