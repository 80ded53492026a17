"""``byok-nb gateway``: an OpenAI-compatible HTTP endpoint over the configured registry.

``GET /v1/models`` lists the models the token's user may use; ``POST /v1/chat/completions`` calls
one (``stream: true`` as server-sent events ending ``data: [DONE]``). ``/api/...`` is the registry
API of ``byok_nb.connect()`` (:mod:`byok_nb.remote.server`, same tokens), so a notebook can use
the gateway's URL as its service root. Callers send
``Authorization: Bearer byok_...``, an API token made by an org admin; the token acts as its user,
and it and the user's membership are checked on every request: a revoked token or a removed
member is refused on the very next request. What a request is checked against (token, membership,
model, call target) is held in memory and proven current per request by one shared read of the
store's generation, off the event loop (services/call_cache.py). The caller never holds a
provider key.

A thin layer: the call itself — translation per provider, retries, recording, scrubbing — is
:func:`byok_nb.services.chat.achat`, the same code ``Session.chat`` runs; only its usage rows go
to a batching :class:`~byok_nb.server.usage_writer.UsageWriter` instead of one write per request.

A plain ASGI application served by uvicorn (uvloop, httptools): a framework's routing and request
objects would add to every request's cost and buy nothing for two routes.

Programmatic use (benchmarks, tests)::

    app = create_app(registry)                       # an ASGI app; app.close() flushes usage
    serve_gateway("127.0.0.1", 8870)                 # blocks; the CLI's entry point
"""
from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..core.asgi_body import read_body
from ..core.errors import InvalidRequest, NotFound, RegistryError, Unauthorized
from ..remote.server import RemoteApiApp
from ..services import api_tokens
from ..services import models as model_service
from ..services.call_cache import resolve
from ..services.chat import achat
from ..services.context import Actor, Backend, Context
from . import openai_wire as wire
from .gateway_errors import error_answer
from .usage_writer import UsageWriter

if TYPE_CHECKING:  # pragma: no cover
    from ..registry import Registry

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "GatewayApp", "app_from_env", "create_app", "serve_gateway"]

log = logging.getLogger("byok_nb.gateway")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8870
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no")]
_DONE = b"data: [DONE]\n\n"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class GatewayApp:
    """The ASGI application. ``chat`` defaults to the shared service function (tests may pass a
    stand-in with the same signature). ``authenticate(engine, token) -> identity`` replaces the
    token check (the hub service's, which also takes hub tokens); by default ``byok_`` tokens are
    checked from memory proven current per request (services/call_cache.py) — also behind a hook
    whose ``defers_byok_tokens`` is true (its own ``byok_`` check would be the same, uncached)."""

    def __init__(self, backend: Backend, *, writer: UsageWriter | None = None,
                 chat: Callable[..., Any] | None = None,
                 authenticate: Callable[..., Any] | None = None) -> None:
        self.backend = backend
        self.writer = writer or UsageWriter(backend.engine, backend.spool)
        self._chat = chat or achat
        self._authenticate = authenticate
        self._cache = backend.call_cache
        self.started = int(time.time())
        self._remote: RemoteApiApp | None = None   # built on the first /api/ request

    def close(self) -> None:
        """Write every queued usage row (call on shutdown; the lifespan shutdown does)."""
        self.writer.close()
        if self._remote is not None:
            self._remote.close()

    def remote_api(self) -> RemoteApiApp:
        """The registry API of remote sessions over this gateway's store and token check."""
        if self._remote is None:
            self._remote = RemoteApiApp(self.backend, authenticate=self._authenticate or api_tokens.authenticate)
        return self._remote

    # -- ASGI -------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # This loop's pooled provider connections end with it (the hub reopens on demand).
                await self.backend.providers.aclose()
                await self._cache.aclose()
                await asyncio.get_running_loop().run_in_executor(None, self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        started = time.monotonic()
        try:
            if path == "/v1/chat/completions":
                if method != "POST":
                    return await _answer(send, 405, _error("use POST", "invalid_request_error", "method_not_allowed"))
                ctx = await self._context(scope)
                call = wire.parse_chat_request(await read_body(receive))
                if call.stream:
                    return await self._stream(ctx, call, receive, send)
                return await self._complete(ctx, call, send)
            if path in ("/v1/models", "/v1/models/"):
                if method != "GET":
                    return await _answer(send, 405, _error("use GET", "invalid_request_error", "method_not_allowed"))
                return await self._models(await self._context(scope), send)
            if path.startswith("/v1/models/") and method == "GET":
                return await self._model(await self._context(scope), path[len("/v1/models/"):], send)
            if path == "/health":
                return await _answer(send, 200, {"status": "ok"})
            if path.startswith("/api/"):   # after the /v1 routes: their hot path gains nothing here
                return await self.remote_api()(scope, receive, send)
            await _answer(send, 404, _error(f"no route {path}; the gateway serves /v1/models, "
                                            f"/v1/chat/completions and /api/ (byok_nb.connect)",
                                            "invalid_request_error", "not_found"))
        except Exception as exc:  # noqa: BLE001 — every failure leaves in OpenAI's shape (gateway_errors)
            status, body, headers = error_answer(exc, deadline_passed=self._past_deadline(started))
            await _answer(send, status, body, headers)

    def _past_deadline(self, started: float) -> bool:
        # The shared call's deadline starts just after ``started``: within 5% of the time limit.
        return time.monotonic() - started >= self.backend.timeout * 0.95

    # -- auth -------------------------------------------------------------------------------------
    async def _context(self, scope: Scope) -> Context:
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    token = rest.strip()
                break
        hook = self._authenticate
        if hook is not None and getattr(hook, "defers_byok_tokens", False) and token is not None \
                and token.startswith(api_tokens.TOKEN_PREFIX):
            hook = None   # the hook's byok_ check is this gateway's own: take the cached path below
        if hook is not None:   # a check of the caller's own, as it is given
            if token is None:
                raise Unauthorized("the API token is missing or unknown; send Authorization: Bearer <token>")
            view = await self._cache.aview()
            if getattr(hook, "reads_through_view", False):   # its store reads: from the view, or a thread
                identity = await resolve(lambda: hook(self.backend.engine, token, view=view))
            else:
                identity = hook(self.backend.engine, token)
            return Context(self.backend, Actor(org=identity.org, org_id=identity.org_id, user=identity.user),
                           view)
        key = api_tokens.token_key(token)
        # The store's generation, read after this request arrived: what the view holds (token,
        # membership, model, target) is current for it — a revoked token, a removed member or an
        # edited model written before this request is seen (services/call_cache.py).
        view = await self._cache.aview()
        engine = self.backend.engine
        row = await resolve(lambda: view.get(("token", key), lambda: api_tokens.identity_row(engine, key),
                                             keep_none=False))
        identity = api_tokens.check_identity(row)   # revoked, expired (by the clock), not a member
        now = _utcnow()
        if self._cache.touch_due(row.id, api_tokens.last_used_at(row), now, api_tokens.LAST_USED_RESOLUTION):
            # Best effort, off the loop (api_tokens.touch swallows a busy store).
            asyncio.get_running_loop().run_in_executor(None, api_tokens.touch, engine, row.id, now)
        return Context(self.backend, Actor(org=identity.org, org_id=identity.org_id, user=identity.user),
                       view)

    # -- routes -----------------------------------------------------------------------------------
    async def _models(self, ctx: Context, send: Send) -> None:
        rows = await _off_loop(model_service.model_rows, ctx)
        await _answer(send, 200, wire.model_list_payload(rows, self.started))

    async def _model(self, ctx: Context, ref: str, send: Send) -> None:
        rows = [r for r in await _off_loop(model_service.model_rows, ctx) if r["ref"] == ref]
        listed = wire.model_list_payload(rows, self.started)["data"]
        if not listed:
            raise NotFound(f"the model {ref!r} does not exist or is not available to this token")
        await _answer(send, 200, listed[0])

    async def _complete(self, ctx: Context, call: wire.ChatCall, send: Send) -> None:
        completion = await self._chat(ctx, call.model, call.messages,
                                      record=self.writer.record, **call.params)
        await _answer(send, 200, wire.completion_payload(completion, call.model))

    async def _stream(self, ctx: Context, call: wire.ChatCall, receive: Receive, send: Send) -> None:
        stream = await self._chat(ctx, call.model, call.messages, stream=True,
                                  record=self.writer.record, **call.params)
        chunks = stream.__aiter__()
        try:
            # The first chunk is awaited before the headers go out, so a failure before the
            # provider answers is still a proper status (401 -> 502, 429, 400 ...), not a 200.
            try:
                first = await chunks.__anext__()
            except StopAsyncIteration:
                first = None
            await send({"type": "http.response.start", "status": 200, "headers": _SSE})
            await self._relay(call, first, chunks, receive, send)
        finally:
            closer = getattr(chunks, "aclose", None)
            if closer is not None:
                await closer()   # records what was used when the client went away early

    async def _relay(self, call: wire.ChatCall, first: Any, chunks: Any, receive: Receive, send: Send) -> None:
        cid, created = wire.completion_id(), int(time.time())
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, gone))
        usage = None
        finish = None
        emitted_first = False
        try:
            chunk = first
            while chunk is not None and not gone.is_set():
                chunk_usage = wire.chunk_usage(getattr(chunk, "usage", None))
                if chunk_usage is not None:
                    usage = chunk_usage
                finish = getattr(chunk, "finish_reason", None) or finish
                payload = wire.chunk_payload(chunk, cid=cid, model=call.model, created=created,
                                             first=not emitted_first)
                if payload is not None:
                    emitted_first = True
                    await send({"type": "http.response.body", "body": b"data: " + wire.dumps(payload) + b"\n\n",
                                "more_body": True})
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    chunk = None
            if gone.is_set():
                return
            if finish is None:
                tail = wire.final_chunk(cid=cid, model=call.model, created=created, finish="stop")
                await send({"type": "http.response.body", "body": b"data: " + wire.dumps(tail) + b"\n\n",
                            "more_body": True})
            if call.include_usage:
                last = wire.usage_chunk(usage, cid=cid, model=call.model, created=created)
                await send({"type": "http.response.body", "body": b"data: " + wire.dumps(last) + b"\n\n",
                            "more_body": True})
            await send({"type": "http.response.body", "body": _DONE, "more_body": False})
        except Exception as exc:  # noqa: BLE001 — any failure mid-stream becomes an error event
            # The status line has gone: the error travels as an event in OpenAI's shape, then ends.
            if isinstance(exc, RegistryError) or not gone.is_set():
                _, body, _ = error_answer(exc)
                try:
                    await send({"type": "http.response.body", "body": b"data: " + wire.dumps(body) + b"\n\n",
                                "more_body": False})
                except Exception:  # noqa: BLE001,S110 — the client is gone as well
                    pass
        finally:
            watcher.cancel()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def _off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a thread: store reads that are not on the per-request path (listings)."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


def _error(message: str, type_: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": None}}


async def _answer(send: Send, status: int, body: dict[str, Any],
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = wire.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": _JSON + (headers or []) + [(b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def create_app(registry: Registry | None = None, **options: Any) -> GatewayApp:
    """The gateway as an ASGI app over ``registry`` (default: ``open_registry()`` with the
    environment's URL and master key). Call ``app.close()`` when done to flush usage."""
    if registry is None:
        from ..registry import open_registry

        registry = open_registry()
    return GatewayApp(registry._backend, **options)


def app_from_env() -> GatewayApp:
    """The app factory each worker process calls (``--workers``): the registry the environment
    configures, as ``open_registry()`` opens it."""
    app = create_app()
    tune_gc()
    return app


# Objects allocated per request before the cyclic collector's youngest generation runs (CPython's
# default is 700: a few requests' worth, so it ran many times a second under load, and its older
# generations walked every module, class and cached row loaded at start-up).
GC_GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    """Once the app is built (a serving process only): what start-up loaded is moved out of the
    cyclic collector's sight (``gc.freeze``: never freed anyway, yet every full collection walked
    it) and its youngest generation runs less often. Memory is still freed by reference counting;
    only cycles wait longer. Measured with bench_gateway_throughput (docs/gateway.md)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def serve_gateway(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, registry: Registry | None = None,
                  log_level: str = "warning", workers: int = 1, **options: Any) -> None:
    """Serve the gateway until interrupted (Ctrl-C / SIGTERM flush usage, then return).

    ``workers`` > 1 runs that many processes on the port (one interpreter lock each: on a
    multi-core machine throughput grows with them); each opens the registry from the environment
    (``BYOK_NB_DATABASE_URL``, the master key as ``open_registry()`` finds it) and batches its own
    usage rows, so ``registry`` and ``options`` apply only to a single worker."""
    try:
        import uvicorn  # the server dependency: only when serving
    except ImportError:
        raise RegistryError("the gateway needs its server: pip install 'byok_nb[gateway]'",
                            status_code=500) from None

    # proxy_headers off: the gateway never reads the client's address, and uvicorn's middleware for
    # X-Forwarded-* would run on every request for nothing.
    settings = dict(host=host, port=port, loop="uvloop", http="httptools", lifespan="on",
                    log_level=log_level, access_log=False, server_header=False, date_header=False,
                    proxy_headers=False)
    if workers > 1:
        if registry is not None or options:
            raise InvalidRequest("with several workers each opens the registry from the environment: "
                                 "pass no registry or options")
        uvicorn.run("byok_nb.server.gateway:app_from_env", factory=True, workers=workers, **settings)
        return
    app = create_app(registry, **options)
    tune_gc()
    config = uvicorn.Config(app, **settings)
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        app.close()   # idempotent: the lifespan shutdown normally did it already
