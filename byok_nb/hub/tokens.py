"""The authenticate hook of the gateway and the remote API behind the hub: a ``byok_`` token is
checked as ``byok-nb gateway`` checks it; any other bearer token is asked of the hub (a user's
hub API token, e.g. ``JUPYTERHUB_API_TOKEN`` inside their single-user server).

A hub token is accepted when the hub names a *user* (not a service) holding the scope to access
this service, as HubAuth requires; the user is then auto-joined by the membership rules
(:func:`byok_nb.hub.members.admit`) and acts in the hub's org. A removed member is refused like a
``byok_`` token of a removed member: 401.

The hook has the gateway's signature ``authenticate(engine, token) -> TokenIdentity`` and is
called inside the request, synchronously; the ASGI front awaits :meth:`prefetch` first so the
hub's answer is usually in the cache and the event loop is not blocked on the hub.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.errors import Forbidden, Unauthorized
from ..services.api_tokens import TOKEN_PREFIX, TokenIdentity
from ..services.api_tokens import authenticate as authenticate_byok_token
from . import members
from .hub_api import HubAPI
from .settings import HubSettings

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Engine

    from ..services.call_cache import View

__all__ = ["HubTokenAuth"]

_BAD_TOKEN = ("the token is missing or unknown; send Authorization: Bearer <token> with a byok_ API "
              "token or your JupyterHub API token")


class HubTokenAuth:
    # The gateway checks byok_ tokens itself, the same check as authenticate_byok_token below but
    # from its per-request-proven cache (an uncached check cost ~1 ms a call behind the hub).
    defers_byok_tokens = True
    # The gateway passes its per-request-proven view (services/call_cache.py) as ``view=`` and runs
    # the hook through ``resolve``: a hub user's membership is then read once per store generation,
    # in a thread, instead of from the store on the event loop on every call.
    reads_through_view = True

    def __init__(self, settings: HubSettings, hub: HubAPI) -> None:
        self.settings = settings
        self.hub = hub

    def __repr__(self) -> str:
        return f"HubTokenAuth(org={self.settings.org!r})"

    def allowed(self, model: dict[str, Any] | None) -> bool:
        """A hub user (not a service) with a scope that grants access to this service."""
        if not model or model.get("kind", "user") != "user":
            return False
        return bool(self.settings.access_scopes & set(model.get("scopes") or ()))

    def identity(self, engine: Engine, user: str, view: View | None = None) -> TokenIdentity:
        """The identity of the hub user ``user``, auto-joined when new; 401 when removed. With a
        ``view`` a member's org id is remembered for that store generation (a removal moves the
        generation, so it is seen on the next request; a refusal is never remembered)."""
        org, project = self.settings.org, self.settings.project

        def admit() -> int:
            try:
                return members.admit(engine, org, project, user)
            except Forbidden as exc:
                raise Unauthorized(exc.message) from None

        org_id = admit() if view is None else view.get(("hub-member", org, project, user), admit)
        return TokenIdentity(org=org, org_id=org_id, user=user)

    def __call__(self, engine: Engine, token: Any, view: View | None = None) -> TokenIdentity:
        if not isinstance(token, str) or not token:
            raise Unauthorized(_BAD_TOKEN)
        if token.startswith(TOKEN_PREFIX):
            return authenticate_byok_token(engine, token)
        model = self.hub.user_for_token(token)
        if not self.allowed(model):
            raise Unauthorized(_BAD_TOKEN)
        assert model is not None
        return self.identity(engine, model["name"], view)

    async def prefetch(self, token: str | None) -> None:
        """Ask the hub about a non-``byok_`` token without blocking (fills the cache)."""
        if token and not token.startswith(TOKEN_PREFIX):
            await self.hub.auser_for_token(token)
