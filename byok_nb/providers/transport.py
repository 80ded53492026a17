"""HTTP plumbing shared by the httpx adapters: one guarded client, one JSON POST, error mapping.

Everything that can go wrong between "we built a body" and "we have the provider's JSON" becomes a
``ProviderError`` here, with secrets scrubbed and at most 4,000 characters of a body shown:

* transport failures (DNS, refused, TLS, timeout) -> status 502 and a message naming the kind;
* redirects (3xx) -> status 502 naming the status and ``Location``; they are never followed;
* error statuses -> the provider's status and the provider's own message, found in the
  OpenAI shape ``{"error": {"message": ...}}``, HF's ``{"error": "..."}``, ``{"message": ...}``,
  ``{"detail": ...}``, or else the raw body. OpenRouter's ``error.metadata.raw`` (what the
  upstream provider said; its own message is only "Provider returned error") is added to it.
  The status is printed once, even when the provider's text starts with it. ``Retry-After``
  becomes the error's ``retry_after`` (seconds).

Whether an error is worth retrying (``ProviderError.transient``): a failure to connect or a
timeout is; a status says so itself (429, 5xx); a reply that came but cannot be used (a redirect,
a malformed or oversized body) is not — asking again would get the same.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

from ..core.errors import InvalidRequest, ProviderError
from ..core.secrets import scrub
from .egress import EgressPolicy, guarded_network_backend
from .retry import attempt_deadline, retry_after_from_headers, within_total

MAX_SHOWN_CHARS = 4000           # P-5: at most this much of a provider body is shown
MAX_RESPONSE_BYTES = 16 * 2**20  # a reply larger than this is refused instead of buffered
MAX_ERROR_BODY_BYTES = 2**20     # of an error reply only this much is read (4,000 chars are shown)
USER_AGENT = "byok_nb"
ACCEPT_ENCODING = "gzip, deflate"
# The monotonic time by which the current call must be over. httpx timeouts are per operation (a
# server sending one byte per second never trips a 30 s read timeout), so every socket operation
# of a call is also bounded by what is left of this deadline (see _DeadlineStream).
_call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "byok_nb_call_deadline", default=None)


# The secrets the call in progress sent (its bearer token), for the log filter below.
_call_secrets: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "byok_nb_call_secrets", default=())


class ScrubbingLogFilter(logging.Filter):
    """Rewrites a log record whose text holds one of ``secrets()`` or a key-shaped token.

    httpcore's DEBUG trace logs every response header, so a provider that echoes the key it got
    in a header (a redirect's ``Location``, ...) would put it in the operator's debug log, and
    botocore's logs the request it signs: the operator chooses whether those loggers print, this
    filter makes sure what they print is clean."""

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot format is left for logging to report
            return True
        cleaned = scrub(text, self._secrets())
        if cleaned != text:
            record.msg, record.args = cleaned, ()
        return True


_HTTP_LOG_SCRUBBER = ScrubbingLogFilter(_call_secrets.get)   # the current call's secrets


def install_http_log_scrubbing() -> None:
    """Attach the filter to every httpx/httpcore logger (a filter sees only its own logger's
    records, not its children's); they all exist once the two packages are imported."""
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".", 1)[0] in ("httpx", "httpcore")]
    for name in {"httpx", "httpcore", *names}:
        logger = logging.getLogger(name)
        if _HTTP_LOG_SCRUBBER not in logger.filters:
            logger.addFilter(_HTTP_LOG_SCRUBBER)


def _sent_secrets(headers: dict[str, str]) -> tuple[str, ...]:
    """The bearer token among ``headers`` (the only secret byok_nb puts on the wire)."""
    for name, value in headers.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if name.lower() == "authorization" and isinstance(value, str) and value[:7].lower() == "bearer ":
            return (value[7:].strip(),)
    return ()


def shorten(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """The first ``limit`` characters of ``text``, marked when cut."""
    return text if len(text) <= limit else text[:limit] + " …[truncated]"


def shown(text: str, secrets: Iterable[str], limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` scrubbed and shortened for an error message.

    Only a prefix a little longer than what is shown is scrubbed: scrubbing a 16 MB body costs
    seconds, and everything past the prefix is cut anyway. The margin covers a secret (or
    key-shaped token) that starts inside the shown part and ends past it.
    """
    secrets = [s for s in secrets if s]
    margin = 1024 + max((len(s) for s in secrets), default=0)
    return shorten(scrub(text[:limit + margin], secrets), limit)


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


def _bounded(timeout: float | None, timeout_error: type[Exception]) -> float | None:
    """``timeout`` shortened to what is left of the call's deadline; raise when none is left."""
    now = time.monotonic()
    deadline = _call_deadline.get()
    if timeout is not None:
        deadline = now + timeout if deadline is None else min(deadline, now + timeout)
    deadline = within_total(deadline)   # an attempt of a call with a total deadline: that too
    if deadline is None:
        return timeout
    left = deadline - now
    if left <= 0:
        raise timeout_error("the call did not complete within its time limit")
    return left


def deadline_network_backend(inner: Any) -> Any:
    """An ``httpcore`` network backend whose every connect, read, write and TLS handshake is
    bounded by the current call's deadline as well as by its own timeout."""
    import httpcore

    class DeadlineStream(httpcore.NetworkStream):
        def __init__(self, stream: Any) -> None:
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._stream.read(max_bytes, timeout=_bounded(timeout, httpcore.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._stream.write(buffer, timeout=_bounded(timeout, httpcore.WriteTimeout))

        def close(self) -> None:
            self._stream.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                      timeout: float | None = None) -> Any:
            return DeadlineStream(self._stream.start_tls(
                ssl_context, server_hostname=server_hostname,
                timeout=_bounded(timeout, httpcore.ConnectTimeout)))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class DeadlineBackend(httpcore.NetworkBackend):
        def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                        local_address: str | None = None, socket_options: Any = None) -> Any:
            return DeadlineStream(inner.connect_tcp(
                host, port, timeout=_bounded(timeout, httpcore.ConnectTimeout),
                local_address=local_address, socket_options=socket_options))

        def connect_unix_socket(self, path: str, timeout: float | None = None,
                                socket_options: Any = None) -> Any:
            return DeadlineStream(inner.connect_unix_socket(
                path, timeout=_bounded(timeout, httpcore.ConnectTimeout), socket_options=socket_options))

        def sleep(self, seconds: float) -> None:
            inner.sleep(seconds)

    return DeadlineBackend()


def build_http_client(*, timeout: float, policy: EgressPolicy, max_connections: int = 128) -> Any:
    """One pooled ``httpx.Client`` whose every new connection passes the egress policy.

    Redirects are off; ``trust_env`` is off so no ambient proxy or ``.netrc`` sneaks in
    (a proxy would also hide the real destination from the egress check).
    """
    import httpcore
    import httpx

    install_http_log_scrubbing()
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
        network_backend=deadline_network_backend(guarded_network_backend(policy)),
    )
    return httpx.Client(transport=transport, timeout=httpx.Timeout(timeout),
                        follow_redirects=False, trust_env=False, cookies=cookieless_jar())


def cookieless_jar() -> CookieJar:
    """A cookie jar that keeps nothing, for the provider clients: a cookie one provider endpoint
    sets is never sent on a later call (perhaps another model's, with another key). httpx copies
    a ``Cookies`` object into a jar of its own, so the jar itself is what the client is given."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


@dataclass
class HttpReply:
    status: int
    headers: Any          # httpx.Headers
    content: bytes
    truncated: bool = False   # an error body longer than MAX_ERROR_BODY_BYTES, cut there

    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def exchange(client: Any, method: str, url: str, *, headers: dict[str, str], body: bytes,
             label: str, timeout: float) -> HttpReply:
    """Send one request and read the whole reply, bounded in time and size; transport failures
    are raised as the ``httpx`` errors they are (callers word them, see :func:`transport_error`).

    The whole call — connect, TLS, send, the status line and headers, and every chunk of the
    body — ends within ``timeout`` seconds: a server that drips bytes cannot hold a Test
    Connection open past it. A reply over ``MAX_RESPONSE_BYTES`` — counted after
    ``Content-Encoding`` is undone, as it is undone (:class:`BoundedDecoder`) — is refused after reading
    that much (``ProviderError``, 502), never buffered whole; of an error reply (4xx/5xx) the first
    ``MAX_ERROR_BODY_BYTES`` are kept and the rest is not read, so the provider's status stands.
    """
    import httpx

    deadline = attempt_deadline(timeout)
    token = _call_deadline.set(deadline)
    secrets_token = _call_secrets.set(_sent_secrets(headers))
    try:
        bad_url = None
        try:
            request = client.build_request(method, url, headers=headers, content=body)
            # Only the encodings BoundedDecoder undoes (httpx would also offer br/zstd when their
            # packages happen to be installed, and decode them unbounded).
            request.headers["Accept-Encoding"] = ACCEPT_ENCODING
        except UnicodeEncodeError as exc:
            unsendable = exc
        except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
            unsendable, bad_url = None, _url_problem(exc)
        else:
            unsendable = None
        if unsendable is not None:   # raised outside the except: no __context__ holding the value
            raise InvalidRequest(_unsendable_header_message(unsendable))
        if bad_url is not None:
            raise InvalidRequest(f"{label} URL {_printable(url)} cannot be called: {bad_url}; "
                                 f"correct the model's URL")
        try:
            response = client.send(request, stream=True)
        except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
            # The resolver's IDNA codec or httpx's URL handling refusing a host that slipped
            # past the save-time checks (a URL stored by an older version, an override).
            bad_url = _url_problem(exc)
        if bad_url is not None:
            raise clean_error(f"{label} URL {_printable(url)} cannot be called: {bad_url}", (),
                              status_code=502, provider=label, transient=False)
        try:
            status = response.status_code
            is_error = status >= 400
            cap = MAX_ERROR_BODY_BYTES if is_error else MAX_RESPONSE_BYTES
            decoder = BoundedDecoder(response.headers.get_list("content-encoding", split_commas=True))
            chunks: list[bytes] = []
            size = 0
            truncated = False
            try:
                for piece in decoder.decode_stream(response.iter_raw()):
                    # Counted as they come out of the decoder, a bounded piece at a time: a few KB of
                    # stacked gzip never gets to inflate to gigabytes before the cap applies.
                    chunks.append(piece)
                    size += len(piece)
                    if size > cap:
                        if is_error:
                            truncated = True
                            break
                        raise clean_error(
                            f"{label} sent a reply larger than {MAX_RESPONSE_BYTES // 2**20} MiB "
                            f"(HTTP {status}, counted decoded); refused.", (),
                            status_code=502, provider=label, transient=False)
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("reply not complete within the timeout")
            except zlib.error:
                undecodable = True
            else:
                undecodable = False
            if undecodable:   # raised outside the except: zlib's message quotes nothing, but stay plain
                raise clean_error(f"{label} sent a reply (HTTP {status}) whose Content-Encoding "
                                  f"could not be decoded.", (), status_code=502, provider=label,
                                  transient=False)
        finally:
            response.close()
    finally:
        _call_deadline.reset(token)
        _call_secrets.reset(secrets_token)
    content = b"".join(chunks)
    if truncated:
        content = content[:MAX_ERROR_BODY_BYTES]
    return HttpReply(response.status_code, response.headers, content, truncated=truncated)


def _printable(url: str) -> str:
    return url if url.isprintable() else repr(url)


def _url_problem(exc: BaseException) -> str:
    """What is wrong with a URL, from the client's exception (its text names the URL's parts,
    never a header: headers are encoded separately, see :func:`_unsendable_header_message`)."""
    detail = _printable(str(exc).strip() or type(exc).__name__)
    return f"the URL is malformed ({detail[:200]})"


DECODE_STEP = 64 * 1024   # bytes a decoder layer may produce per step


class BoundedDecoder:
    """Undoes ``Content-Encoding`` (gzip, deflate, stacked in any order and number) a step of at
    most ``DECODE_STEP`` bytes at a time, so whoever iterates can stop at a size cap.

    httpx's own decoders inflate each received chunk whole, through every layer: 3.5 KB of
    ``gzip, gzip`` becomes gigabytes in one call. Encodings we do not know (only ``gzip`` and
    ``deflate`` are asked for, see :func:`exchange`) are left as they are, as httpx does; the body
    then fails to parse as JSON and is reported as a malformed reply.
    """

    def __init__(self, encodings: list[str]) -> None:
        names = [e.strip().lower() for e in encodings if e.strip()]
        # Applied in the order listed, so undone in reverse.
        self._layers = [_Layer(name) for name in reversed(names) if name in ("gzip", "x-gzip", "deflate")]

    def decode_stream(self, raw_chunks: Iterable[bytes]) -> Iterable[bytes]:
        for chunk in raw_chunks:
            yield from self.feed(chunk)
        yield from self.flush()

    def feed(self, chunk: bytes) -> Iterable[bytes]:
        """The decoded pieces of one received chunk (for callers that receive asynchronously)."""
        return self._through(0, chunk)

    def flush(self) -> Iterable[bytes]:
        """What the layers still hold once the body has ended."""
        for index in range(len(self._layers)):
            yield from self._through(index, b"")

    def _through(self, index: int, data: bytes) -> Iterable[bytes]:
        if index == len(self._layers):
            if data:
                yield data
            return
        for piece in self._layers[index].steps(data):
            yield from self._through(index + 1, piece)


class _Layer:
    """One ``zlib`` decompressor fed bounded steps (gzip, or deflate with or without the zlib
    wrapper, as httpx accepts both)."""

    def __init__(self, name: str) -> None:
        self._inflater: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if name != "deflate" else None

    def steps(self, data: bytes) -> Iterable[bytes]:
        if self._inflater is None:
            if not data:
                return
            zlib_wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        inflater = self._inflater
        while not inflater.eof:
            out = inflater.decompress(data, DECODE_STEP)
            data = inflater.unconsumed_tail
            if out:
                yield out
            elif not data:
                return


def _unsendable_header_message(exc: UnicodeEncodeError) -> str:
    """Why a header could not be encoded, without the header: httpx's ``UnicodeEncodeError``
    carries the whole value (``Bearer <key>``) in its ``args``/``object``."""
    value = exc.object if isinstance(exc.object, str) else ""
    bearer = value[:7].lower() == "bearer "
    position = exc.start - (7 if bearer else 0)
    char = value[exc.start] if 0 <= exc.start < len(value) else "?"
    what = "the API key" if bearer else "a request header"
    return (f"{what} contains a character HTTP headers cannot carry (U+{ord(char):04X} at position "
            f"{position + 1}); check it for a stray space or invisible character copied with it")


def post_json(client: Any, url: str, *, headers: dict[str, str], body: bytes, label: str,
              secrets: Iterable[str], timeout: float) -> HttpReply:
    """POST ``body`` (already JSON-encoded) and return the reply; raise ``ProviderError`` for
    transport failures and redirects. Error statuses are returned, not raised: the caller knows
    the provider and maps them with :func:`error_from_reply`.

    Bounded in time and size as :func:`exchange` says. A transport error is raised outside the
    ``except`` block, so the ``ProviderError`` has no ``__context__``: httpx's exception holds the
    request, and the request holds the ``Authorization`` header.
    """
    import httpx

    failure: ProviderError | None = None
    try:
        reply = exchange(client, "POST", url, headers=headers, body=body, label=label, timeout=timeout)
    except httpx.HTTPError as exc:
        failure = transport_error(exc, url=url, label=label, secrets=secrets, timeout=timeout)
    if failure is not None:
        raise failure
    check_redirect(reply.status, reply.headers, label=label, secrets=secrets)
    return reply


def check_redirect(status: int, headers: Any, *, label: str, secrets: Iterable[str]) -> None:
    """Raise the ``ProviderError`` for a 3xx reply (never followed); nothing otherwise."""
    if 300 <= status < 400:
        location = headers.get("location", "(no Location header)")
        raise clean_error(f"{label} answered HTTP {status} redirecting to {quoted(location)}; "
                          f"byok_nb never follows redirects — use the final URL instead.",
                          secrets, status_code=502, provider=label, transient=False)


def quoted(value: str, limit: int = 200) -> str:
    """A header value for a message: shortened (a header can be kilobytes); scrubbed by the
    caller with the rest of the message."""
    return shorten(value, limit)


def clean_error(message: str, secrets: Iterable[str], *, status_code: int,
                provider_message: str | None = None, provider: str | None = None,
                retry_after: float | None = None, transient: bool | None = None) -> ProviderError:
    """A ``ProviderError`` whose texts have passed the scrubber: everything taken from a reply
    (status, headers, body) reaches an error only through here or :func:`shown`. ``transient``
    unset follows the status (see module doc)."""
    secrets = list(secrets)
    return ProviderError(scrub(message, secrets), status_code=status_code,
                         provider_message=None if provider_message is None else scrub(provider_message, secrets),
                         provider=provider, retry_after=retry_after, transient=transient)


def transport_error(exc: Exception, *, url: str, label: str, secrets: Iterable[str],
                    timeout: float) -> ProviderError:
    """A ``ProviderError`` (status 502) that says what kind of transport failure happened, and
    whether it is worth trying again (see :func:`_transient_kind`)."""
    detail = str(exc) or type(exc).__name__
    kind = _aiohttp_kind(exc.__cause__, timeout) or _httpx_kind(exc, detail, timeout)
    where = label if label.endswith(" endpoint") else f"{label} endpoint"   # no "endpoint endpoint"
    message = f"{where} {url} {kind}: {detail}"
    transient = _transient_kind(kind, f"{detail} {exc.__cause__ or ''}")
    return clean_error(message, secrets, status_code=502, provider_message=detail, provider=label,
                       transient=transient)


def _transient_kind(kind: str, detail: str) -> bool:
    """Timeouts, refused or unreachable hosts and dropped connections may pass (a restarting
    server, a full backlog), and so may a resolver's "temporary failure"; a name that does not
    exist, a failed TLS handshake (a certificate that does not verify), a URL that is not http(s)
    and a failure of our own would fail the same way again."""
    if kind == "could not be resolved":
        return "temporary failure" in detail.lower()
    return kind not in ("failed the TLS handshake", "is not an http(s) URL", "failed")


def _httpx_kind(exc: Exception, detail: str, timeout: float) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        if detail.startswith("DNS lookup failed"):
            return "could not be resolved"
        if "SSL" in detail or "certificate" in detail.lower():
            return "failed the TLS handshake"
        if "refused" in detail.lower():
            return "refused the connection"
        return "could not be reached"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "closed the connection or broke the HTTP protocol"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)):
        return "reset the connection"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "is not an http(s) URL"
    return "failed"


def _aiohttp_kind(cause: BaseException | None, timeout: float) -> str | None:
    """The kind of failure behind an error of the async client, from aiohttp's own exception:
    httpx-aiohttp maps every failure to connect (a DNS miss, a refusal) to ``ConnectTimeout``,
    which would word them all as timeouts. None when the cause is not aiohttp's."""
    if cause is None or not type(cause).__module__.startswith("aiohttp"):
        return None
    import aiohttp

    if isinstance(cause, aiohttp.ClientConnectorDNSError):
        return "could not be resolved"
    if isinstance(cause, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return "failed the TLS handshake"
    if isinstance(cause, aiohttp.ClientConnectorError):
        refused = isinstance(cause.os_error, ConnectionRefusedError)
        return "refused the connection" if refused else "could not be reached"
    if isinstance(cause, (aiohttp.ServerTimeoutError, aiohttp.SocketTimeoutError)):
        return f"timed out after {timeout:g} s"
    if isinstance(cause, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return "closed the connection or broke the HTTP protocol"
    return None


def timed_out(*, url: str, label: str, secrets: Iterable[str], timeout: float) -> ProviderError:
    """The error for an async call that ran past its ``timeout`` (``asyncio.timeout``)."""
    where = label if label.endswith(" endpoint") else f"{label} endpoint"
    return clean_error(f"{where} {url} timed out after {timeout:g} s", secrets, status_code=502,
                       provider_message=f"timed out after {timeout:g} s", provider=label, transient=True)


MAX_JSON_DEPTH = 200   # far deeper than any real reply; deeper is an attack on the parser


def loads_bounded(data: bytes | str) -> Any:
    """``json.loads`` for text from a provider: ``ValueError`` (never ``RecursionError``) for JSON
    nested deeper than ``MAX_JSON_DEPTH``, so neither the parse nor any later walk over the value
    (``json.dumps``, ``repr``) can exhaust the stack."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    # Nesting needs an opening bracket a level: text with fewer cannot be too deep (a count in C,
    # where the walk below is Python for every container of every reply).
    if isinstance(value, (dict, list)) and _brackets(data) > MAX_JSON_DEPTH \
            and _deeper_than(value, MAX_JSON_DEPTH):
        raise ValueError("JSON nested too deeply")
    return value


def _brackets(data: bytes | str) -> int:
    if isinstance(data, str):
        return data.count("{") + data.count("[")
    return data.count(b"{") + data.count(b"[")


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def provider_message_from_body(body: bytes | str) -> str:
    """The provider's own error text out of an error body (see module doc), untruncated."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = loads_bounded(text)
    except ValueError:
        return text.strip()
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error.get("msg")
            text = _as_text(message) if message else json.dumps(error)
            upstream = upstream_explanation(error)
            if upstream and upstream not in text:
                text = f"{text} — {upstream}"
            return text
        if isinstance(error, str) and error:
            return error
        for key in ("message", "Message", "detail"):
            if data.get(key):
                return _as_text(data[key])
    return text.strip()


def upstream_explanation(error: dict[str, Any]) -> str:
    """What OpenRouter's upstream provider said (``error.metadata.raw``, with the provider's name),
    or "": OpenRouter's own message for an upstream failure is only "Provider returned error".
    ``raw`` is the upstream's body as text (often JSON, whose own message is taken), or a value."""
    metadata = error.get("metadata")
    if not isinstance(metadata, dict):
        return ""
    raw = metadata.get("raw")
    if isinstance(raw, str):
        said = provider_message_from_body(raw) if raw.strip() else ""
    elif raw is not None:
        said = provider_message_from_body(json.dumps(raw))
    else:
        reasons = metadata.get("reasons")   # moderation: the categories the input was flagged for
        said = ("flagged for " + ", ".join(str(r) for r in reasons)) \
            if isinstance(reasons, list) and reasons else ""
    if not said:
        return ""
    name = metadata.get("provider_name")
    return f"{name} said: {said}" if isinstance(name, str) and name else f"upstream said: {said}"


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def error_from_reply(reply: HttpReply, *, label: str, secrets: Iterable[str]) -> ProviderError:
    """A ``ProviderError`` carrying the provider's status, its own (scrubbed, shortened) text and
    the wait its ``Retry-After`` asks for."""
    secrets = list(secrets)
    provider_message = strip_status(reply.status, provider_message_from_body(reply.content))
    provider_message = shown(provider_message, secrets) or _reason(reply.status)
    header = reply.headers.get("retry-after")
    retry_after = retry_after_from_headers(reply.headers)
    extra = ""
    if header and reply.status in (429, 503):
        extra = f" (Retry-After: {quoted(header)}{' s' if _is_number(header) else ''})"
    return clean_error(f"{label} returned {status_text(reply.status, provider_message)}{extra}",
                       secrets, status_code=reply.status, provider_message=provider_message,
                       provider=label, retry_after=retry_after)


def status_text(status: int, detail: str) -> str:
    """``HTTP 400: <detail>`` — the status once: a detail that starts with the status (``400 Bad
    Request: ...``, ``HTTP 400: ...``) loses that start, and an empty one gives ``HTTP 400 Bad
    Request`` (a status with no known phrase stands alone)."""
    detail = strip_status(status, detail)
    phrase = _phrase(status)
    if not detail or detail == phrase:
        return f"HTTP {status} {phrase}".rstrip()
    return f"HTTP {status}: {detail}"


def strip_status(status: int, text: str) -> str:
    """``text`` without a leading repetition of ``status`` (and its phrase)."""
    phrase = re.escape(_phrase(status)) if _phrase(status) else r"(?!)"
    pattern = rf"^\s*(?:HTTP(?:/[\d.]+)?\s*)?{status}(?:\s+{phrase})?\s*(?:[:\-–]\s*|$)"
    return re.sub(pattern, "", text, count=1, flags=re.IGNORECASE).strip()


def request_id_of(headers: Any, body: Any = None) -> str | None:
    """The provider's id for a call: the ``x-request-id`` header, else the body's ``id``."""
    value = headers.get("x-request-id") if headers is not None else None
    if isinstance(value, str) and value.strip():
        return value.strip()[:200]
    if isinstance(body, dict) and isinstance(body.get("id"), str) and body["id"]:
        return body["id"][:200]
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def malformed_reply(reply: HttpReply, *, label: str, secrets: Iterable[str], why: str) -> ProviderError:
    """A 2xx reply we cannot read: status 502, the first 4,000 characters shown."""
    # At most 4 bytes a character: this prefix holds everything that can be shown.
    secrets = list(secrets)
    text = shown(reply.content[:4 * MAX_SHOWN_CHARS + 8192].decode("utf-8", "replace"), secrets)
    return clean_error(f"{label} returned a malformed reply (HTTP {reply.status}, {why}): {text}", secrets,
                       status_code=502, provider_message=text, provider=label, transient=False)


def scrubbed_result(result: Any, secrets: Iterable[str]) -> Any:
    """A ``ChatResult`` whose texts hold none of the call's secrets.

    A successful answer is provider text too: a proxy that echoes the request's headers into it
    would hand the key to a member who may use the model but never see its key. Key-shaped strings
    stay (a model may well write ``sk-...`` in an example); only the call's own secrets go."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return result

    def clean(value: Any) -> Any:
        return scrub(value, secrets, shapes=False) if isinstance(value, str) and value else value

    text, reasoning_text = clean(result.text), clean(result.reasoning_text)
    if text == result.text and reasoning_text == result.reasoning_text and not result.tool_calls:
        return result   # nothing found: the result as it is (a copy costs more than the scan)
    tool_calls = [{**call, "id": clean(call.get("id")),
                   "function": {**call["function"], "name": clean(call["function"].get("name")),
                                "arguments": clean(call["function"].get("arguments"))}}
                  for call in result.tool_calls]
    return result.replace(text=text, reasoning_text=reasoning_text, tool_calls=tool_calls)


# What reading an odd reply shape raises: a missing key or index, a value of the wrong type
# (``[{"text": 5}]``), a method on the wrong type, bad JSON or JSON nested too deep.
SHAPE_ERRORS = (KeyError, IndexError, TypeError, AttributeError, ValueError, RecursionError)


class ReplyShape(ValueError):
    """Raised by a parser with its own short description of what is missing or wrong."""


def shape_problem(exc: BaseException) -> str:
    """A short description of why a reply could not be read (no values from it: they may echo a key)."""
    if isinstance(exc, ReplyShape):
        return str(exc)
    if isinstance(exc, RecursionError) or "too deeply" in str(exc):
        return "JSON nested too deeply"
    if isinstance(exc, (KeyError, IndexError)):
        return "a field is missing"
    if isinstance(exc, ValueError):
        return "a value is invalid"
    return "a field has the wrong type"


def _phrase(status: int) -> str:
    """The standard reason phrase of ``status``, or "" for a status without one."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _reason(status: int) -> str:
    return _phrase(status) or f"HTTP {status}"
