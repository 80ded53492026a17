"""The two questions the service asks JupyterHub's REST API, as HubAuth/HubOAuth ask them
(jupyterhub/services/auth.py, 6.1): whom a token belongs to (``GET {api}/user`` with
``Authorization: token <t>``), and the access token for an OAuth code (``POST {api}/oauth2/token``).

Answers about a token are cached for a few seconds (HubAuth caches for five minutes; shorter here
so a token the hub revokes stops working soon), keyed by the token's SHA-256 so the cache never
holds a token itself. Both a sync and an async form: the gateway's authenticate hook is sync and
the ASGI front is async; they share the cache.
"""
from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from typing import Any

import httpx

from ..core.errors import RegistryError
from .settings import HubSettings

__all__ = ["CACHE_SECONDS", "HubAPI", "HubUnavailable"]

CACHE_SECONDS = 5.0
_TIMEOUT = httpx.Timeout(10.0)


class HubUnavailable(RegistryError):
    """JupyterHub's API did not answer as it should (down, or refusing the service's own token)."""

    status_code = 502


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class HubAPI:
    def __init__(self, settings: HubSettings, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.settings = settings
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None
        # One hub lookup per token at a time: a page load fires dozens of requests at once, and
        # when the cached answer lapses each would otherwise ask the hub on its own.
        self._inflight: dict[str, asyncio.Future[dict[str, Any] | None]] = {}

    def __repr__(self) -> str:
        return f"HubAPI({self.settings.api_url!r})"

    # -- cache ------------------------------------------------------------------------------------
    def cached(self, token: str) -> tuple[bool, dict[str, Any] | None]:
        """(found, user model or None) for ``token`` from the cache."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(_key(token))
            if hit is None or hit[0] <= now:
                return False, None
            return True, hit[1]

    def _remember(self, token: str, model: dict[str, Any] | None) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._cache) > 10_000:     # purge expired answers now and then
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[_key(token)] = (now + self.cache_seconds, model)

    # -- whom a token belongs to --------------------------------------------------------------------
    def user_for_token(self, token: str) -> dict[str, Any] | None:
        """The hub's user model for ``token`` (name, kind, scopes...), None when the hub does not
        know it. Blocking; cached."""
        found, model = self.cached(token)
        if found:
            return model
        if self._sync is None:
            self._sync = httpx.Client(timeout=_TIMEOUT)
        try:
            response = self._sync.get(self.settings.api_url + "/user",
                                      headers={"Authorization": f"token {token}"})
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        model = self._user_answer(response)
        self._remember(token, model)
        return model

    async def auser_for_token(self, token: str) -> dict[str, Any] | None:
        """:meth:`user_for_token` without blocking the event loop; concurrent calls for the same
        token share one hub request."""
        found, model = self.cached(token)
        if found:
            return model
        key = _key(token)
        lookup = self._inflight.get(key)
        if lookup is None:
            # A task of its own: a visitor who goes away does not cancel the others' answer.
            lookup = asyncio.ensure_future(self._alookup(token))
            self._inflight[key] = lookup
            lookup.add_done_callback(lambda _done: self._inflight.pop(key, None))
        return await asyncio.shield(lookup)

    async def _alookup(self, token: str) -> dict[str, Any] | None:
        try:
            response = await self._client().get(self.settings.api_url + "/user",
                                                headers={"Authorization": f"token {token}"})
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        model = self._user_answer(response)
        self._remember(token, model)
        return model

    async def token_for_code(self, code: str, code_verifier: str | None) -> str:
        """The last step of the OAuth login: the hub's access token for ``code``."""
        form = {"client_id": self.settings.client_id, "client_secret": self.settings.api_token,
                "grant_type": "authorization_code", "code": code,
                "redirect_uri": self.settings.callback_url}
        if code_verifier:
            form["code_verifier"] = code_verifier
        try:
            response = await self._client().post(self.settings.api_url + "/oauth2/token", data=form)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code != 200:
            raise HubUnavailable(f"the hub refused the login ({response.status_code}: "
                                 f"{_description(response)}); try logging in again", status_code=403)
        token = _json(response).get("access_token")
        if not isinstance(token, str) or not token:
            raise HubUnavailable("the hub's token answer had no access_token")
        return token

    # -- plumbing -----------------------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        if self._async is None:
            self._async = httpx.AsyncClient(timeout=_TIMEOUT)
        return self._async

    def _user_answer(self, response: httpx.Response) -> dict[str, Any] | None:
        # As HubAuth: 403 (and 401) mean "no such user"; other failures are the hub's problem.
        if response.status_code in (401, 403, 404):
            return None
        if response.status_code != 200:
            raise HubUnavailable(f"the hub answered {response.status_code} when asked who a token "
                                 f"belongs to: {_description(response)}")
        model = _json(response)
        return model if isinstance(model.get("name"), str) else None

    def _unreachable(self, exc: Exception) -> HubUnavailable:
        return HubUnavailable(f"cannot reach the hub API at {self.settings.api_url} "
                              f"({type(exc).__name__})")

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _description(response: httpx.Response) -> str:
    data = _json(response)
    return str(data.get("error_description") or data.get("error") or data.get("message") or "no detail")[:200]
