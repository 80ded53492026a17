"""The registry API a remote session (``byok_nb.connect``) talks to: a plain ASGI app.

Routes (the hub service mounts this app at ``<prefix>api/``, ``byok-nb gateway`` at ``/api/``)::

    GET  /api/whoami                 -> {"org", "org_id", "user", "is_org_admin", "roles"}
    POST /api/session/<method>       {"args": [...], "kwargs": {...}} -> {"result": ...}

``<method>`` is a public method of :class:`byok_nb.Session` (the allow-list is read off the class:
no private name, nothing of ``Registry``). Each request carries ``Authorization: Bearer <token>``;
the ``authenticate`` hook turns it into an identity (``.org``, ``.org_id``, ``.user``) against the
store on every request — so a revoked token or a removed member is refused at once — and the call
runs as that user through the same :class:`~byok_nb.Session` a notebook would hold, so every
role check is the embedded one. Values travel as :mod:`byok_nb.remote.codec` JSON.

Session methods block (store reads, provider calls): each runs in a worker thread of this app,
so the event loop keeps serving. A refused call answers with its status and
:mod:`byok_nb.remote.errors` JSON; any other failure is a 500 with a generic message, logged here
with key-shaped text scrubbed.

``chat`` / ``achat`` with ``stream=True`` answer ``application/x-ndjson``: one line per chunk
(``{"chunk": ...}``), then ``{"end": {usage, request_id, attempts, model}}``, or ``{"error": ...}``
when the provider fails mid-way. The stream is opened before the status line goes out, so a
refusal is a proper status. When the client goes away early the service closes its stream, which
records the call's usage — exactly once, as for an embedded stream.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.asgi_body import read_body
from ..core.errors import InvalidRequest, NotFound, RegistryError, Unauthorized
from ..core.secrets import scrub
from ..registry import Registry, Session, open_registry
from ..services.api_tokens import authenticate as authenticate_token
from ..services.chat_stream import ChatStream
from ..services.context import Actor, Backend, Context
from .codec import decode, encode
from .errors import INTERNAL_MESSAGE, error_payload

__all__ = ["SESSION_METHODS", "RemoteApiApp", "create_app", "session_methods"]

log = logging.getLogger("byok_nb.remote")
DEFAULT_WORKERS = 32           # concurrent blocking calls (a chat holds one for the provider's answer)
_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
_NDJSON = [(b"content-type", b"application/x-ndjson"), (b"cache-control", b"no-store"),
           (b"x-accel-buffering", b"no")]
_END: Any = object()

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def session_methods() -> dict[str, inspect.Signature]:
    """Session's public methods and their signatures: what the API serves and what
    :class:`~byok_nb.remote.client.RemoteSession` mirrors. Properties (``org``, ``user``,
    ``is_org_admin`` ...) are not methods; ``whoami`` carries them."""
    out = {}
    for name, value in vars(Session).items():
        if not name.startswith("_") and inspect.isfunction(value):
            out[name] = inspect.signature(value)
    return out


SESSION_METHODS = session_methods()
_STREAMING = ("chat", "achat")


class RemoteApiApp:
    """The ASGI app over ``backend``. ``authenticate(engine, token) -> identity`` defaults to the
    gateway's ``byok_`` token check; the hub service passes one that also takes hub tokens."""

    def __init__(self, backend: Backend, *,
                 authenticate: Callable[[Any, str], Any] = authenticate_token,
                 workers: int = DEFAULT_WORKERS) -> None:
        self.backend = backend
        self._authenticate = authenticate
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                                           thread_name_prefix="byok-remote")

    def close(self) -> None:
        """Stop the worker threads (after the calls in flight)."""
        self._pool.shutdown(wait=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await asyncio.get_running_loop().run_in_executor(None, self.close)
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # -- routing ----------------------------------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        try:
            token = _bearer(scope)
            if path == "/api/whoami":
                if method != "GET":
                    raise InvalidRequest("use GET for /api/whoami", status_code=405)
                return await _answer(send, 200, await self._run(self._whoami, token))
            if path.startswith("/api/session/"):
                name = path[len("/api/session/"):]
                if name not in SESSION_METHODS:
                    raise NotFound(f"no session method {name[:100]!r}; the methods are "
                                   f"{', '.join(sorted(SESSION_METHODS))}")
                if method != "POST":
                    raise InvalidRequest(f"use POST for /api/session/{name}", status_code=405)
                body = await read_body(receive)
                outcome = await self._run(self._call, token, name, body)
                if isinstance(outcome, ChatStream):
                    return await self._relay(outcome, receive, send)
                return await _answer(send, 200, outcome)
            raise NotFound(f"no route {path[:200]!r}; the registry API serves /api/whoami and "
                           f"/api/session/<method>")
        except RegistryError as exc:
            await _answer(send, exc.status_code, _dumps(error_payload(exc)))
        except Exception as exc:  # noqa: BLE001 — anything else is ours: a generic 500, the detail logged
            _log_internal(path, exc)
            await _answer(send, 500, _dumps(error_payload(RegistryError(INTERNAL_MESSAGE, status_code=500))))

    # -- work done in a worker thread --------------------------------------------------------------
    def _session(self, token: str) -> Session:
        identity = self._authenticate(self.backend.engine, token)
        actor = Actor(org=identity.org, org_id=int(identity.org_id), user=identity.user)
        return Session(Context(self.backend, actor))

    def _whoami(self, token: str) -> bytes:
        s = self._session(token)
        return _dumps({"org": s.org, "org_id": s.org_id, "user": s.user, "is_org_admin": s.is_org_admin,
                       "roles": encode(s.roles())})

    def _call(self, token: str, name: str, body: bytes) -> "bytes | ChatStream":
        session = self._session(token)   # before the body is read: an unknown caller learns nothing
        args, kwargs = _arguments(body)
        try:
            SESSION_METHODS[name].bind(session, *args, **kwargs)
        except TypeError as exc:
            raise InvalidRequest(f"{name}(): {exc}") from None
        if name == "seed_assignments_csv":
            _require_uploaded_file(args, kwargs)
        if name in _STREAMING:   # blocking here, in this thread: the same call as achat's
            result = session.chat(*args, **kwargs)
            if isinstance(result, ChatStream):
                return result
        else:
            result = getattr(session, name)(*args, **kwargs)
        return _dumps({"result": encode(result)})

    # -- streaming --------------------------------------------------------------------------------
    async def _relay(self, stream: ChatStream, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, gone))
        pending: "asyncio.Future[Any] | None" = None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _NDJSON})
            while True:
                pending = asyncio.ensure_future(self._run(_next_chunk, stream))
                waiter = asyncio.ensure_future(gone.wait())
                await asyncio.wait({pending, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not pending.done():      # the client left while the provider was quiet
                    return
                item, pending = pending.result(), None
                if item is _END:
                    await _line(send, {"end": {"usage": encode(stream.usage), "request_id": stream.request_id,
                                               "attempts": stream.attempts, "model": stream.model}}, last=True)
                    return
                await _line(send, {"chunk": encode(item)})
                if gone.is_set():
                    return
        except RegistryError as exc:        # the provider failed mid-way (already recorded)
            await _line(send, error_payload(exc), last=True)
        except Exception as exc:  # noqa: BLE001 — as in _http: generic to the client, detail logged
            _log_internal("stream", exc)
            await _line(send, error_payload(RegistryError(INTERNAL_MESSAGE, status_code=500)), last=True)
        finally:
            watcher.cancel()
            # Closing records the call if nothing else did (exactly once: the stream's tally).
            await self._run(_close_quietly, stream)
            if pending is not None:         # a read still in flight: close again once it returns
                pending.add_done_callback(lambda done: self._close_later(stream, done))

    def _close_later(self, stream: ChatStream, done: "asyncio.Future[Any]") -> None:
        if not done.cancelled():
            done.exception()                # retrieved: the call is recorded, the client is gone
        try:
            self._pool.submit(_close_quietly, stream)
        except RuntimeError:                # the app is shutting down: close it here instead
            _close_quietly(stream)


def create_app(registry: Registry | None = None, **options: Any) -> RemoteApiApp:
    """The remote API as an ASGI app over ``registry`` (default: ``open_registry()`` from the
    environment); ``options`` go to :class:`RemoteApiApp` (e.g. ``authenticate``). Call
    ``app.close()`` when done (the lifespan shutdown does)."""
    if registry is None:
        registry = open_registry()
    return RemoteApiApp(registry._backend, **options)


def _next_chunk(stream: ChatStream) -> Any:
    try:
        return next(stream)
    except StopIteration:
        return _END


def _close_quietly(stream: ChatStream) -> None:
    try:
        stream.close()
    except Exception as exc:  # noqa: BLE001 — a read in flight on another thread; it records anyway
        log.debug("closing a stream: %s", type(exc).__name__)


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def _line(send: Send, payload: dict[str, Any], *, last: bool = False) -> None:
    try:
        await send({"type": "http.response.body", "body": _dumps(payload) + b"\n", "more_body": not last})
    except Exception:  # noqa: BLE001 — the client is gone; the stream is closed in _relay's finally
        pass


# -- helpers ---------------------------------------------------------------------------------------
def _bearer(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, rest = str(value.decode("latin-1")).partition(" ")
            if scheme.lower() in ("bearer", "token") and rest.strip():   # "token": JupyterHub's own scheme
                return rest.strip()
            break
    raise Unauthorized("the API token is missing; send Authorization: Bearer <token>")


def _arguments(body: bytes) -> tuple[list[Any], dict[str, Any]]:
    try:
        payload = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the request body is not JSON") from None
    if not isinstance(payload, dict) or not set(payload) <= {"args", "kwargs"}:
        raise InvalidRequest('the request body is {"args": [...], "kwargs": {...}}')
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise InvalidRequest('the request body is {"args": [...], "kwargs": {...}}')
    return decode(args), {str(k): decode(v) for k, v in kwargs.items()}


def _require_uploaded_file(args: list[Any], kwargs: dict[str, Any]) -> None:
    # A path would name a file on the service's machine: only the client's uploaded bytes go.
    source = args[0] if args else kwargs.get("path_or_file")
    if not hasattr(source, "read"):
        raise InvalidRequest("seed_assignments_csv on a remote session takes a local path or an open "
                             "file; it is uploaded, never read on the service's machine")


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


async def _answer(send: Send, status: int, payload: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": _JSON + [(b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def _log_internal(where: str, exc: BaseException) -> None:
    text = scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    log.error("remote API %s failed:\n%s", where[:200], text)
