"""The hub-managed service: ``python -m byok_nb.hub.service``, run by JupyterHub.

One process, one ASGI app under uvicorn, on the host and port of ``JUPYTERHUB_SERVICE_URL``;
JupyterHub's proxy routes ``/services/byok/`` to it. Under that prefix:

* ``v1/...`` — the OpenAI-compatible gateway (``byok_nb.server.gateway``), in-process;
* ``api/...`` — the remote registry API that ``byok_nb.connect()`` calls, in-process (the
  gateway's own ``/api/`` mount, :mod:`byok_nb.remote.server`; except
  ``api/kernels/...``, which is Voila's: the app's kernel websockets);
  both accept a ``byok_`` API token or the user's hub API token (``hub/tokens.py``);
* ``oauth_callback`` — the end of the hub login (``hub/oauth.py``);
* everything else — the admin app: a private Voila child (``hub/voila_child.py``) behind a reverse
  proxy (``hub/proxy.py``) that sets who the visitor is from their hub login only.

The process answers at once (JupyterHub waits at most 30 seconds for a managed service): Voila
starts in the background and the app's requests wait for it. At every start the org, its project
and the ``admins`` list are applied to the store (``hub/members.py``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from ..core.errors import RegistryError
from ..server.gateway import GatewayApp
from . import members
from .hub_api import HubAPI, HubUnavailable
from .lifespan import MountedLifespan
from .oauth import HubOAuth, OAuthError, parse_cookies
from .proxy import KernelOwners, VoilaProxy
from .settings import HubSettings
from .tokens import HubTokenAuth
from .voila_child import VoilaChild

if TYPE_CHECKING:  # pragma: no cover
    from ..registry import Registry

__all__ = ["HubService", "build", "main"]

log = logging.getLogger("byok_nb.hub")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

VOILA_START_TIMEOUT = 120.0    # seconds a request waits for Voila's first answer
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
VOILA_API = "api/kernels/"


class HubService:
    def __init__(self, settings: HubSettings, registry: Registry, *, voila: VoilaChild | None = None,
                 hub: HubAPI | None = None, voila_timeout: float = VOILA_START_TIMEOUT) -> None:
        self.settings = settings
        self.registry = registry
        self.hub = hub or HubAPI(settings)
        self.oauth = HubOAuth(settings, self.hub)
        self.auth = HubTokenAuth(settings, self.hub)
        # The gateway serves /v1/ and, through the same hook, the remote registry API at /api/.
        self.gateway = GatewayApp(registry._backend, authenticate=self.auth)
        self.voila = voila
        self.proxy = VoilaProxy(voila.base_url, voila.token) if voila else None
        self.voila_timeout = voila_timeout
        self._voila_ready: asyncio.Task[bool] | None = None
        self._mounted = [MountedLifespan(self.gateway)]

    def __repr__(self) -> str:
        return f"HubService(prefix={self.settings.prefix!r}, org={self.settings.org!r})"

    # -- ASGI ---------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            return await self._lifespan(receive, send)
        if kind not in ("http", "websocket"):
            return
        try:
            await self._route(scope, receive, send)
        except (OAuthError, HubUnavailable) as exc:
            await _text(send, scope, exc.status_code, exc.message)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_voila()
                for mounted in self._mounted:
                    await mounted.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start_voila(self) -> None:
        """Start Voila and a task that waits for its first answer (requests await that task)."""
        if self.voila is None or self._voila_ready is not None:
            return
        self.voila.start()
        assert self.proxy is not None
        self._voila_ready = asyncio.create_task(self.voila.wait_ready(self.proxy.client(), self.voila_timeout))

    async def aclose(self) -> None:
        for mounted in self._mounted:
            await mounted.shutdown()
        if self.proxy is not None:
            await self.proxy.close()
        await self.hub.aclose()
        if self.voila is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.voila.stop)

    # -- routing ------------------------------------------------------------------------------------
    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        prefix = self.settings.prefix
        path: str = scope["path"]
        if path == prefix.rstrip("/") and scope["type"] == "http":
            return await _redirect(send, prefix, [])
        if not path.startswith(prefix):
            return await _text(send, scope, 404, f"this service lives under {prefix}")
        rest = path[len(prefix):]
        if any(part in (".", "..") for part in rest.split("/")):
            # Routing (and the kernel-ownership check) reads the path as sent; the HTTP client
            # upstream would resolve dot segments into some other route.
            return await _text(send, scope, 400, "a path with . or .. segments is not served")
        if rest == "v1" or rest.startswith("v1/"):
            return await self._mounted_app(self.gateway, "/" + rest, scope, receive, send)
        # Voila's kernel endpoints live under the same api/ (api/kernels/<id>[/channels]): those
        # are the app's, everything else under api/ is the remote registry API's.
        if rest.startswith("api/") and not rest.startswith(VOILA_API):
            return await self._mounted_app(self.gateway, "/" + rest, scope, receive, send)
        if rest == "oauth_callback" and scope["type"] == "http":
            return await self._callback(scope, send)
        return await self._app(scope, receive, send)

    async def _mounted_app(self, app: Any, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await send({"type": "websocket.close", "code": 1008})
        token = _bearer(scope)
        try:
            await self.auth.prefetch(token)   # the hub's answer cached before the sync hook runs
        except HubUnavailable as exc:
            return await _json(send, 502, {"error": {"message": exc.message, "type": "server_error",
                                                     "code": "hub_unavailable"}})
        inner = dict(scope, path=path, raw_path=path.encode(), root_path=self.settings.prefix.rstrip("/"))
        await app(inner, receive, send)

    async def _callback(self, scope: Scope, send: Send) -> None:
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        cookies = parse_cookies(scope["headers"])
        try:
            location, cookie_headers, _model = await self.oauth.callback(query, cookies, secure=self._secure(scope))
        except OAuthError:
            # As HubOAuthCallbackHandler: a stale login (a second tab, the back button) of a visitor
            # who is logged in already just goes on to the app.
            if await self.oauth.user_from_cookies(cookies) is None:
                raise
            location, cookie_headers = self.settings.prefix, self.oauth.clear_state_cookies(cookies)
        await _redirect(send, location, cookie_headers)

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        model = await self.oauth.model_from_cookies(parse_cookies(scope["headers"]))
        websocket = scope["type"] == "websocket"
        if model is not None and not self.oauth.allowed(model):
            # Logged in, but the hub grants this account no access: sending it round the login
            # again would loop.
            return await _text(send, scope, 403, f"{model.get('name')!r} may not use this service; "
                                                 f"ask the hub's administrator for access")
        user = model
        if user is None:
            if websocket:
                return await send({"type": "websocket.close", "code": 1008})
            if scope["method"] not in ("GET", "HEAD"):
                return await _text(send, scope, 403, "log in through the hub first")
            next_url = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
            if scope.get("query_string"):
                next_url += "?" + scope["query_string"].decode("latin-1")
            location, cookies = self.oauth.login_redirect(next_url, parse_cookies(scope["headers"]),
                                                          secure=self._secure(scope))
            return await _redirect(send, location, cookies)
        if not _page_fetch_allowed(scope, scope["path"][len(self.settings.prefix):]):
            return await _text(send, scope, 403, "refused: a script may not fetch the app's pages")
        if (websocket or scope["method"] not in _SAFE_METHODS) and not _same_origin(scope):
            if websocket:
                return await send({"type": "websocket.close", "code": 1008})
            return await _text(send, scope, 403, "refused: the request came from another site")
        if self.proxy is None:
            return await _text(send, scope, 404, "the app is not served by this instance")
        if not self.proxy.kernels.allows(scope["path"][len(self.settings.prefix):], user["name"]):
            return await _text(send, scope, 403, "that app session belongs to another visit")
        if not await self._voila_up():
            if websocket:
                return await send({"type": "websocket.close", "code": 1013})
            return await _text(send, scope, 503, "the app did not start; the service's log says why")
        if websocket:
            return await self.proxy.websocket(scope, receive, send, user["name"])
        return await self.proxy.http(scope, receive, send, user["name"])

    async def _voila_up(self) -> bool:
        if self._voila_ready is None:
            self.start_voila()
        assert self._voila_ready is not None and self.voila is not None
        ready = await asyncio.shield(self._voila_ready)
        if ready and self.voila.exited():
            # Voila went away after it had answered (killed, out of memory): start it again, on
            # the same port and token, rather than leave the app down until the hub restarts us.
            # One that never answered is not restarted per request: its log says why.
            log.warning("the app's Voila exited (code %s); starting it again", self.voila.process.returncode)
            self.voila.process = None
            self._voila_ready = None
            self.start_voila()
            ready = await asyncio.shield(self._voila_ready)
        return ready and not self.voila.exited()

    def _secure(self, scope: Scope) -> bool:
        forwarded = _header(scope, b"x-forwarded-proto").split(",")[0].strip().lower()
        return self.settings.public_https or scope.get("scheme") in ("https", "wss") or forwarded == "https"


# -- small helpers ------------------------------------------------------------------------------------
def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


def _bearer(scope: Scope) -> str | None:
    scheme, _, rest = _header(scope, b"authorization").partition(" ")
    if scheme.lower() not in ("bearer", "token"):
        return None
    return rest.strip() or None


def _same_origin(scope: Scope) -> bool:
    """A state-changing request or a websocket must come from a page of this site: Origin (when
    the browser sends one) names the request's own host, and Sec-Fetch-Site is not cross-site."""
    if _header(scope, b"sec-fetch-site") in ("cross-site", "same-site"):
        return False
    origin = _header(scope, b"origin")
    if not origin:
        return True
    if origin == "null":
        return False
    host = _header(scope, b"x-forwarded-host").split(",")[0].strip() or _header(scope, b"host")
    return urlsplit(origin).netloc.lower() == host.lower()


def _page_fetch_allowed(scope: Scope, route: str) -> bool:
    """Cookie-authenticated requests made by a script (Sec-Fetch-Mode ``cors`` / ``same-origin``)
    reach only the visitor's own kernel routes — all that Voila's page fetches itself. The rest of
    the app is for navigation, tags (``no-cors``) and websockets. Mirrors HubOAuth's rule of not
    accepting cookie authentication for script fetches without an XSRF token: on a hub that
    serves users' servers on its own domain, another user's page could otherwise fetch the app
    with the visitor's cookie and read it. (Without Sec-Fetch headers — plain http to a
    non-local host — browsers send none, and HubOAuth lets such requests through as well.)"""
    mode = _header(scope, b"sec-fetch-mode")
    if mode in ("", "navigate", "websocket", "no-cors"):
        return True
    return KernelOwners.kernel_of(route) is not None


async def _redirect(send: Send, location: str, cookies: list[str]) -> None:
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0"),
               (b"cache-control", b"no-store")]
    headers += [(b"set-cookie", c.encode("latin-1")) for c in cookies]
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _text(send: Send, scope: Scope, status: int, text: str) -> None:
    if scope["type"] == "websocket":
        return await send({"type": "websocket.close", "code": 1008})
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# -- the process ----------------------------------------------------------------------------------------
def build(env: dict[str, str] | None = None) -> HubService:
    """Settings from the environment, the registry opened (schema migrated), the membership rules
    applied, and the service ready to serve (Voila starts with the server's lifespan)."""
    from ..registry import open_registry

    settings = HubSettings.from_env(env)
    os.environ["BYOK_NB_HUB_MODE"] = "1"
    registry = open_registry()
    changes = members.start(registry._backend.engine, settings.org, settings.project, settings.admins)
    if changes.granted or changes.revoked:
        log.warning("org %r admins: granted %s, revoked %s", settings.org, changes.granted or "none",
                    changes.revoked or "none")
    return HubService(settings, registry, voila=VoilaChild(settings, notebook=settings.notebook or None))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[byok hub service] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)   # a line per hub lookup is noise
    try:
        import uvicorn
    except ImportError:
        print("error: the hub service needs its server: pip install 'byok_nb[gateway]'", file=sys.stderr)
        return 2
    try:
        service = build()
    except RegistryError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    settings = service.settings
    log.info("serving %s on %s:%s (org %r, project %r)", settings.prefix, settings.host, settings.port,
             settings.org, settings.project)
    try:
        uvicorn.run(service, host=settings.host, port=settings.port, loop="uvloop", http="httptools",
                    ws="websockets-sansio", lifespan="on", log_level="warning", access_log=False,
                    server_header=False, date_header=False,
                    timeout_graceful_shutdown=5)   # JupyterHub stops services with SIGTERM
    finally:
        if service.voila is not None:
            service.voila.stop()
        service.registry.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
