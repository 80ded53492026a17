"""``byok_nb.connect()``: a session whose calls run in the team's byok_nb service.

>>> s = byok_nb.connect()                  # inside a JupyterHub single-user server: no arguments
>>> s.chat("ft-llama", "Which team owns this ticket?").text          # doctest: +SKIP

A :class:`RemoteSession` has the embedded :class:`~byok_nb.Session`'s public methods, names and
signatures (each is made from Session's own signature and documentation when this module loads,
so the two cannot drift), plus ``org``, ``org_id``, ``user`` and ``is_org_admin``. Every call is
``POST <service>/api/session/<method>`` with the user's token; the service acts as that user with
the store and the master key it alone holds: no key of any kind is in the notebook's process.
Results come back as the same classes (``CustomModel``, ``Completion``, DataFrames with their
dtypes ...), refusals as the same errors (``Forbidden`` is ``Forbidden``, status 403).
"""
from __future__ import annotations

import inspect
import io
import json
import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..core.clean_errors import clean_failures
from ..core.errors import InvalidRequest, NotFound, RegistryError, StoreUnavailable
from ..registry import Session
from ..services.chat_stream import ChatChunk, ChatUsage
from .codec import decode, encode
from .errors import error_from_payload

__all__ = ["RemoteAsyncChatStream", "RemoteChatStream", "RemoteSession", "connect"]

URL_ENV = "BYOK_NB_SERVICE_URL"
TOKEN_ENVS = ("JUPYTERHUB_API_TOKEN", "BYOK_NB_API_TOKEN")
DEFAULT_TIMEOUT = 300.0     # seconds per call: the service bounds provider calls with its own timeout
CONNECT_TIMEOUT = 10.0
MAX_CSV_BYTES = 1024 * 1024 + 1   # the service refuses more; reading one byte past lets it say so


def connect(url: str | None = None, token: str | None = None, *,
            timeout: float = DEFAULT_TIMEOUT) -> "RemoteSession":
    """A :class:`RemoteSession` on the byok_nb service at ``url`` acting as the token's user.

    ``url`` is the service root (``https://hub.example.org/services/byok/``; default: the
    ``BYOK_NB_SERVICE_URL`` environment variable, which a JupyterHub configured with
    ``byok_nb.hub.configure`` gives every single-user server). ``token`` is a JupyterHub API token
    or a ``byok_`` API token (default: ``JUPYTERHUB_API_TOKEN``, then ``BYOK_NB_API_TOKEN``).
    ``timeout``: seconds to wait for one call's answer.

    >>> s = byok_nb.connect("http://127.0.0.1:8870/", token="byok_...")   # doctest: +SKIP
    >>> s.list_models("custom")                                            # doctest: +SKIP
    """
    if url is None:
        url = os.environ.get(URL_ENV) or None
        if url is None:
            raise InvalidRequest(f"no service URL: pass connect(url=...) (the byok_nb service root, "
                                 f"e.g. https://hub.example.org/services/byok/) or set {URL_ENV}",
                                 field="url")
    if token is None:
        token = next((os.environ[name] for name in TOKEN_ENVS if os.environ.get(name)), None)
        if token is None:
            raise InvalidRequest(f"no API token: pass connect(token=...) or set {' or '.join(TOKEN_ENVS)} "
                                 f"(a JupyterHub API token or a byok_ token from an org admin)",
                                 field="token")
    if not isinstance(token, str) or not token.strip():
        raise InvalidRequest("the token is text: a JupyterHub API token or a byok_ token", field="token")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < 1e6:
        raise InvalidRequest(f"timeout must be a positive number of seconds, got {timeout!r}", field="timeout")
    return RemoteSession(service_root(url), token.strip(), timeout=float(timeout))


def service_root(url: Any) -> str:
    """``url`` as the service root ending in ``/``; a gateway ``/v1`` URL is refused, naming
    what to pass instead."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest("the service URL is text, e.g. https://hub.example.org/services/byok/", field="url")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"the service URL must be http(s)://host/..., got {_shown(url)!r}", field="url")
    if parts.query or parts.fragment:
        raise InvalidRequest("the service URL takes no query string or fragment", field="url")
    path = parts.path.rstrip("/")
    segments = path.split("/")
    if "v1" in segments:      # .../v1, .../v1/models, .../v1/chat/completions
        root = urlunsplit((parts.scheme, parts.netloc, "/".join(segments[:segments.index("v1")]) + "/", "", ""))
        raise InvalidRequest(f"{_shown(url)!r} is the gateway's OpenAI-compatible URL; connect() takes the "
                             f"service root: {_shown(root)!r}", field="url")
    return urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


def _shown(url: str) -> str:
    """``url`` without a user:password part, for messages and reprs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class _Transport:
    """The HTTP side of a remote session: one pooled sync client, an async client per call."""

    def __init__(self, root: str, token: str, timeout: float) -> None:
        self.root = root
        self.shown = _shown(root)
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._timeout = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT)
        self._ssl: ssl.SSLContext | bool = httpx.create_ssl_context() if root.startswith("https:") else True
        self._pool: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        """The pooled sync client, (re)made on first use after a close."""
        if self._pool is None or self._pool.is_closed:
            self._pool = httpx.Client(headers=self._headers, timeout=self._timeout, verify=self._ssl)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers=self._headers, timeout=self._timeout, verify=self._ssl)

    def request(self, method: str, path: str, body: bytes | None = None) -> Any:
        error: RegistryError | None = None
        try:
            response = self.client.request(method, self.root + path, content=body)
        except httpx.HTTPError as exc:
            error = self.unreachable(exc)
        if error is not None:   # raised outside the except block: no httpx error (and its request
            raise error         # headers, with the token) chained to it
        return self.result(response)

    async def arequest(self, path: str, body: bytes) -> Any:
        error: RegistryError | None = None
        try:
            async with self.async_client() as client:
                response = await client.post(self.root + path, content=body)
        except httpx.HTTPError as exc:
            error = self.unreachable(exc)
        if error is not None:
            raise error
        return self.result(response)

    def unreachable(self, exc: BaseException) -> RegistryError:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else f"failed ({type(exc).__name__})"
        return StoreUnavailable(f"the byok_nb service at {self.shown} could not be reached: the request "
                                f"{kind}; check the URL and that the service is running")

    def result(self, response: httpx.Response) -> Any:
        payload = _json(response.content)
        if response.status_code == 200 and isinstance(payload, dict) and "result" in payload:
            return decode(payload["result"])
        if response.status_code == 200 and isinstance(payload, dict):   # whoami
            return payload
        raise self.refusal(response.status_code, payload)

    def refusal(self, status: int, payload: Any) -> RegistryError:
        if status == 404 and not (isinstance(payload, dict) and "error" in payload):
            return NotFound(f"no byok_nb service at {self.shown} (HTTP 404): connect() takes the service "
                            f"root, e.g. https://hub.example.org/services/byok/", status_code=404)
        return error_from_payload(payload, status)


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def _request_body(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    payload = {"args": [encode(a, secrets=True) for a in args],
               "kwargs": {k: encode(v, secrets=True) for k, v in kwargs.items()}}
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


# -- streams ---------------------------------------------------------------------------------------

class _RemoteStreamBase:
    """What both remote streams know: the model, and after the end the totals and the ids."""

    def __init__(self, transport: _Transport, response: httpx.Response, model: str) -> None:
        self._transport = transport
        self._response = response
        self._model = model
        self._usage: ChatUsage | None = None
        self._request_id: str | None = None
        self._attempts: int | None = None
        self._done = False

    @property
    def model(self) -> str:
        """The model reference called."""
        return self._model

    @property
    def usage(self) -> ChatUsage | None:
        """The totals the provider reported (known after the last chunk), or None."""
        return self._usage

    @property
    def request_id(self) -> str | None:
        """The provider's id for the call, when it sent one (known at the end)."""
        return self._request_id

    @property
    def attempts(self) -> int | None:
        """Provider calls the service made to open the stream (known at the end)."""
        return self._attempts

    def _take(self, line: str) -> ChatChunk | None:
        """The chunk a line carries, or None for the end line; a failure line raises it."""
        message = _json(line.encode("utf-8"))
        if isinstance(message, dict) and "chunk" in message:
            chunk = decode(message["chunk"])
            if isinstance(chunk, ChatChunk):
                if chunk.usage is not None:
                    self._usage = chunk.usage
                return chunk
        if isinstance(message, dict) and isinstance(message.get("end"), dict):
            end = message["end"]
            usage = decode(end.get("usage"))
            self._usage = usage if isinstance(usage, ChatUsage) else self._usage
            self._request_id = end.get("request_id") if isinstance(end.get("request_id"), str) else None
            self._attempts = end.get("attempts") if isinstance(end.get("attempts"), int) else None
            return None
        raise error_from_payload(message, 502)

    def _cut_short(self) -> RegistryError:
        return StoreUnavailable(f"the byok_nb service at {self._transport.shown} ended the stream before "
                                f"its last chunk")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self._model!r}, {'finished' if self._done else 'open'})"


class RemoteChatStream(_RemoteStreamBase, Iterator[ChatChunk]):
    """A streamed answer from the service: iterate it for chunks (``.delta``, ``.tool_calls``,
    ``.usage`` on the last); ``close()`` (or ``with``) stops early — the service then records the
    call with what it used."""

    def __init__(self, transport: _Transport, response: httpx.Response, model: str) -> None:
        super().__init__(transport, response, model)
        self._lines = response.iter_lines()

    def __iter__(self) -> "RemoteChatStream":
        return self

    def __next__(self) -> ChatChunk:
        if self._done:
            raise StopIteration
        error: RegistryError | None = None
        try:
            for line in self._lines:
                if not line:
                    continue
                chunk = self._take(line)
                if chunk is None:
                    break
                return chunk
            else:
                error = self._cut_short()
        except httpx.HTTPError as exc:
            error = self._transport.unreachable(exc)
        except BaseException:
            self.close()
            raise
        self.close()
        if error is not None:
            raise error
        raise StopIteration

    def close(self) -> None:
        """Stop reading and close the connection."""
        self._done = True
        self._response.close()

    def __enter__(self) -> "RemoteChatStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if "_response" in self.__dict__ and not self._done:
            try:
                self.close()
            except Exception:   # noqa: BLE001 — a finalizer has no caller to tell
                pass


class RemoteAsyncChatStream(_RemoteStreamBase, AsyncIterator[ChatChunk]):
    """The async twin of :class:`RemoteChatStream`: ``async for``; ``await aclose()`` stops early."""

    def __init__(self, transport: _Transport, client: httpx.AsyncClient, response: httpx.Response,
                 model: str) -> None:
        super().__init__(transport, response, model)
        self._client = client
        self._lines = response.aiter_lines()

    def __aiter__(self) -> "RemoteAsyncChatStream":
        return self

    async def __anext__(self) -> ChatChunk:
        if self._done:
            raise StopAsyncIteration
        error: RegistryError | None = None
        try:
            async for line in self._lines:
                if not line:
                    continue
                chunk = self._take(line)
                if chunk is None:
                    break
                return chunk
            else:
                error = self._cut_short()
        except httpx.HTTPError as exc:
            error = self._transport.unreachable(exc)
        except BaseException:
            await self.aclose()
            raise
        await self.aclose()
        if error is not None:
            raise error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading and close the connection."""
        self._done = True
        try:
            await self._response.aclose()
        finally:
            await self._client.aclose()

    async def __aenter__(self) -> "RemoteAsyncChatStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


# -- the session -----------------------------------------------------------------------------------

_SIGNATURES = {name: inspect.signature(fn) for name, fn in vars(Session).items()
               if not name.startswith("_") and inspect.isfunction(fn)}


class RemoteSession:
    """A user's session in a byok_nb service (see the module doc). Made by :func:`connect`."""

    def __init__(self, root: str, token: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._transport = _Transport(root, token, timeout)
        try:
            me = self._transport.request("GET", "api/whoami")
        except BaseException:
            self._transport.close()
            raise
        self._org: str = str(me["org"])
        self._org_id: int = int(me["org_id"])
        self._user: str = str(me["user"])

    @property
    def url(self) -> str:
        """The service root this session calls."""
        return self._transport.shown

    @property
    def org(self) -> str:
        """The org this session acts in."""
        return self._org

    @property
    def org_id(self) -> int:
        """The store's id of this session's org."""
        return self._org_id

    @property
    def user(self) -> str:
        """The user this session acts as (the token's user)."""
        return self._user

    @property
    def is_org_admin(self) -> bool:
        """Whether this user may manage the org's custom models (asked of the service each time,
        like the embedded session asks its store)."""
        return bool(self._transport.request("GET", "api/whoami").get("is_org_admin"))

    def __repr__(self) -> str:
        return f"RemoteSession(url={self.url!r}, org={self._org!r}, user={self._user!r})"

    def close(self) -> None:
        """Close the connection pool (it reopens on the next call)."""
        self._transport.close()

    def __enter__(self) -> "RemoteSession":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- calls ------------------------------------------------------------------------------------
    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if name == "seed_assignments_csv":
            args, kwargs = _uploaded(args, kwargs)
        body = _request_body(args, kwargs)
        if name == "chat" and kwargs.get("stream") is True:
            return self._open_stream(args, body)
        return self._transport.request("POST", f"api/session/{name}", body)

    async def _acall(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        body = _request_body(args, kwargs)
        if kwargs.get("stream") is True:
            return await self._aopen_stream(args, body)
        return await self._transport.arequest(f"api/session/{name}", body)

    def _open_stream(self, args: tuple[Any, ...], body: bytes) -> RemoteChatStream:
        t = self._transport
        error: RegistryError | None = None
        try:
            request = t.client.build_request("POST", t.root + "api/session/chat", content=body)
            response = t.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            error = t.unreachable(exc)
        if error is not None:
            raise error
        if response.status_code != 200:
            try:
                content = response.read()
            finally:
                response.close()
            raise t.refusal(response.status_code, _json(content))
        return RemoteChatStream(t, response, str(args[0]) if args else "")

    async def _aopen_stream(self, args: tuple[Any, ...], body: bytes) -> RemoteAsyncChatStream:
        t = self._transport
        client = t.async_client()
        error: RegistryError | None = None
        try:
            request = client.build_request("POST", t.root + "api/session/achat", content=body)
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            error = t.unreachable(exc)
        except BaseException:
            await client.aclose()
            raise
        if error is not None:
            await client.aclose()
            raise error
        if response.status_code != 200:
            try:
                content = await response.aread()
            finally:
                await response.aclose()
                await client.aclose()
            raise t.refusal(response.status_code, _json(content))
        return RemoteAsyncChatStream(t, client, response, str(args[0]) if args else "")

    if TYPE_CHECKING:  # pragma: no cover
        # The methods are made from Session's when the module loads (below): to a type checker
        # every other attribute is Any.
        def __getattr__(self, name: str) -> Any: ...


def _uploaded(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``seed_assignments_csv``'s source read here: the service never opens a path of its own."""
    source: Any = args[0] if args else kwargs.get("path_or_file")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, "rb") as fh:
                source = io.BytesIO(fh.read(MAX_CSV_BYTES))
        except FileNotFoundError:
            raise NotFound(f"no CSV file {path!r}") from None
        except OSError as exc:
            raise InvalidRequest(f"cannot read {path!r}: {exc.strerror}") from None
        except ValueError:
            raise InvalidRequest("the CSV path is not a valid file name") from None
    elif hasattr(source, "read"):
        data = source.read(MAX_CSV_BYTES)
        source = io.BytesIO(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    else:
        raise InvalidRequest("seed_assignments_csv takes a path or an open file")
    if args:
        return (source, *args[1:]), kwargs
    return args, {**kwargs, "path_or_file": source}


def _mirror(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """A RemoteSession method with ``original``'s name, signature and documentation."""
    signature = _SIGNATURES[name]
    if inspect.iscoroutinefunction(original):
        async def amethod(self: RemoteSession, *args: Any, **kwargs: Any) -> Any:
            signature.bind(self, *args, **kwargs)    # a wrong call is a TypeError here, as embedded
            return await self._acall(name, args, kwargs)

        method: Callable[..., Any] = amethod
    else:
        def smethod(self: RemoteSession, *args: Any, **kwargs: Any) -> Any:
            signature.bind(self, *args, **kwargs)
            return self._call(name, args, kwargs)

        method = smethod
    method.__name__ = name
    method.__qualname__ = f"RemoteSession.{name}"
    method.__doc__ = original.__doc__
    method.__signature__ = signature   # type: ignore[attr-defined]
    method.__module__ = __name__
    # As on the embedded session: a failure keeps no frame holding the request (a key typed into
    # add_model, the token's header) and no chained httpx error.
    return clean_failures(method)


for _name in _SIGNATURES:
    setattr(RemoteSession, _name, _mirror(_name, getattr(Session, _name)))
del _name
