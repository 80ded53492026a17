"""Hub OAuth for browsers, done as JupyterHub 6.1's ``HubOAuth`` and ``HubOAuthCallbackHandler`` do
it (jupyterhub/services/auth.py), without tornado:

* a visitor without a valid cookie is sent to ``{hub}/hub/api/oauth2/authorize`` with
  ``client_id``, ``redirect_uri``, ``response_type=code``, a PKCE S256 challenge and a ``state``;
  the state's id goes in the cookie ``<client_id>-oauth-state`` (HttpOnly, path = the service
  prefix, ten minutes; a random suffix when one is already pending, for concurrent logins) and
  the state itself (where to go next, the PKCE verifier) stays in this process for ten minutes;
* the callback checks that the ``state`` argument equals the state cookie, exchanges the code
  at ``{api}/oauth2/token`` (client secret = the service's own hub token), asks ``{api}/user``
  who the token belongs to, and sets the cookie ``<client_id>`` holding the hub access token;
* every later request's cookie token is validated with the hub (cached a few seconds, see
  hub_api) and must carry the service's access scope, as HubAuthenticated.check_hub_user does.

Decided here, where HubOAuth differs: the cookie is not signed with a cookie secret. It holds the
hub's own access token, which the hub validates on use, so a forged cookie is just an unknown
token, and replicas of the service need no shared secret. It is HttpOnly, SameSite=Lax, scoped to
the prefix, and Secure when the hub's public URL (or the forwarded scheme) is https.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import string
import time
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlencode

from ..core.errors import RegistryError
from .hub_api import HubAPI
from .settings import HubSettings

__all__ = ["HubOAuth", "OAuthError", "parse_cookies"]

STATE_MAX_AGE = 600    # seconds, as HubOAuth.oauth_state_max_age


class OAuthError(RegistryError):
    """A login that cannot complete (bad or stale state, a code the hub refuses)."""

    status_code = 400


def parse_cookies(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Cookies of an ASGI request. When a name repeats, the FIRST wins (the most specific path
    comes first in browsers), which matters only for stale state cookies."""
    found: dict[str, str] = {}
    for name, value in headers:
        if name != b"cookie":
            continue
        for chunk in value.decode("latin-1").split(";"):
            key, sep, val = chunk.strip().partition("=")
            if not sep or not key or key in found:
                continue
            try:
                parsed = SimpleCookie(f"{key}={val}")
            except CookieError:
                continue
            if key in parsed:
                found[key] = parsed[key].value
    return found


def _set_cookie(name: str, value: str, *, path: str, secure: bool, max_age: int | None = None,
                same_site: str | None = "Lax") -> str:
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly"]
    if same_site:
        parts.append(f"SameSite={same_site}")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def _clear_cookie(name: str, *, path: str) -> str:
    return f"{name}=; Path={path}; HttpOnly; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


class HubOAuth:
    def __init__(self, settings: HubSettings, hub: HubAPI) -> None:
        self.settings = settings
        self.hub = hub
        self._states: dict[str, tuple[float, dict[str, Any]]] = {}

    def __repr__(self) -> str:
        return f"HubOAuth(client_id={self.settings.client_id!r})"

    @property
    def cookie_name(self) -> str:
        return self.settings.client_id

    @property
    def state_cookie_name(self) -> str:
        return self.cookie_name + "-oauth-state"

    # -- who the cookie says ------------------------------------------------------------------------
    def cookie_token(self, cookies: dict[str, str]) -> str | None:
        return cookies.get(self.cookie_name) or None

    def allowed(self, model: dict[str, Any] | None) -> bool:
        """A hub *user* holding a scope that grants access to this service (HubAuthenticated's
        check_hub_user with the service's access scopes)."""
        if not model or model.get("kind", "user") != "user":
            return False
        return bool(self.settings.access_scopes & set(model.get("scopes") or ()))

    async def model_from_cookies(self, cookies: dict[str, str]) -> dict[str, Any] | None:
        """The hub's model of the cookie's token (None: no cookie, or a token the hub does not
        know). Whether it may use the service is :meth:`allowed`."""
        token = self.cookie_token(cookies)
        if not token:
            return None
        return await self.hub.auser_for_token(token)

    async def user_from_cookies(self, cookies: dict[str, str]) -> dict[str, Any] | None:
        """The cookie's hub user when allowed in; else None."""
        model = await self.model_from_cookies(cookies)
        return model if self.allowed(model) else None

    # -- starting a login -----------------------------------------------------------------------------
    def login_redirect(self, next_url: str, cookies: dict[str, str], *, secure: bool) -> tuple[str, list[str]]:
        """(Location, Set-Cookie values) sending the browser to the hub's authorize URL."""
        verifier = secrets.token_urlsafe(32)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        state_extra: dict[str, Any] = {"code_verifier": verifier}
        if self.state_cookie_name in cookies:
            # Another login is pending in this browser: a cookie of its own (as HubOAuth).
            suffix = "".join(secrets.choice(string.ascii_letters) for _ in range(8))
            cookie_name = f"{self.state_cookie_name}-{suffix}"
            state_extra["cookie_name"] = cookie_name
        else:
            cookie_name = self.state_cookie_name
        state_id = secrets.token_urlsafe(16)
        self._purge()
        self._states[state_id] = (time.monotonic() + STATE_MAX_AGE, {"next_url": next_url, **state_extra})
        query = urlencode({"client_id": self.settings.client_id, "redirect_uri": self.settings.callback_url,
                           "response_type": "code", "code_challenge": challenge,
                           "code_challenge_method": "S256", "state": state_id})
        cookie = _set_cookie(cookie_name, state_id, path=self.settings.prefix, secure=secure,
                             max_age=STATE_MAX_AGE)
        return f"{self.settings.authorize_url}?{query}", [cookie]

    # -- finishing it -----------------------------------------------------------------------------------
    async def callback(self, query: dict[str, str], cookies: dict[str, str], *,
                       secure: bool) -> tuple[str, list[str], dict[str, Any]]:
        """(Location, Set-Cookie values, user model) for the hub's redirect back to us."""
        if query.get("error"):
            raise OAuthError(f"the hub refused the login: {query.get('error_description') or query['error']}")
        code = query.get("code")
        if not code:
            raise OAuthError("the login came back without a code; try again")
        arg_state = query.get("state")
        if not arg_state:
            raise OAuthError("the login came back without its state; try again")
        state = self._state(arg_state)
        cookie_name = state.get("cookie_name") or self.state_cookie_name
        if cookies.get(cookie_name) != arg_state:
            raise OAuthError("the login's state does not match this browser's; try logging in again",
                             status_code=403)
        self._states.pop(arg_state, None)
        token = await self.hub.token_for_code(code, state.get("code_verifier"))
        model = await self.hub.auser_for_token(token)
        if not model:
            raise OAuthError("the hub did not say who logged in", status_code=500)
        if not self.allowed(model):
            # No cookie: another round through the hub would only come back here (a loop).
            raise OAuthError(f"{model.get('name')!r} may not use this service (the hub grants no "
                             f"access:services!service={self.settings.service_name} scope)", status_code=403)
        headers = self.clear_state_cookies(cookies)
        headers.append(_set_cookie(self.cookie_name, token, path=self.settings.prefix, secure=secure))
        return self.safe_next(state.get("next_url")), headers, model

    def clear_state_cookies(self, cookies: dict[str, str]) -> list[str]:
        """Set-Cookie values removing every pending login's state cookie."""
        return [_clear_cookie(name, path=self.settings.prefix)
                for name in cookies if name.startswith(self.state_cookie_name)]

    def safe_next(self, next_url: Any) -> str:
        """Where to go after login: a path under the service prefix, never another site."""
        if isinstance(next_url, str) and next_url.startswith(self.settings.prefix) \
                and not next_url.startswith("//") and "\\" not in next_url:
            return next_url
        return self.settings.prefix

    def _state(self, state_id: str) -> dict[str, Any]:
        hit = self._states.get(state_id)
        if hit is None or hit[0] <= time.monotonic():
            raise OAuthError("the login took too long or was already used; try logging in again",
                             status_code=403)
        return hit[1]

    def _purge(self) -> None:
        now = time.monotonic()
        if len(self._states) > 1000:
            self._states = {k: v for k, v in self._states.items() if v[0] > now}
