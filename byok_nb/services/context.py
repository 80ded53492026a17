"""What every service call runs on, passed explicitly: the backend (store, secret box, provider
hub, usage spool) and the acting user.

The embedded :class:`~byok_nb.registry.Session`, the gateway, the CLI and a hub service are all
thin callers of the service functions; each builds a :class:`Context` for the user it acts for
(a notebook's user, a token's user, the operator) and hands it in. Nothing here knows a Session.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.secrets import SecretBox
from ..store.usage_spool import UsageSpool
from .call_cache import CallCache, View

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import Engine

    from ..providers.hub import ProviderHub


class Backend:
    """One opened store with its master key, the provider clients and the usage spool.

    ``providers`` (the provider hub: pooled HTTP clients, cached Bedrock clients) is built on first
    use, so opening a registry for listing never loads httpx or boto3.
    """

    def __init__(self, engine: "Engine", box: SecretBox, *, timeout: float, egress: str,
                 home: Path) -> None:
        self.engine = engine
        self.box = box
        self.timeout = timeout
        self.egress = egress
        # Where usage rows wait when the store could not take them after a provider answered.
        self.spool = UsageSpool(engine, home)
        self._providers: "ProviderHub | None" = None
        self._call_cache: "CallCache | None" = None
        self._lock = threading.Lock()

    @property
    def providers(self) -> "ProviderHub":
        """The provider hub, built on first use (thread-safe)."""
        hub = self._providers
        if hub is None:
            with self._lock:
                if self._providers is None:
                    from ..providers.hub import (
                        ProviderHub,  # httpx and friends: only when calling
                    )

                    self._providers = ProviderHub(timeout=self.timeout, egress=self.egress)
                hub = self._providers
        return hub

    @property
    def call_cache(self) -> "CallCache":
        """What calls are checked against, in memory, for a server (built on first use)."""
        cache = self._call_cache
        if cache is None:
            with self._lock:
                if self._call_cache is None:
                    self._call_cache = CallCache(self.engine)
                cache = self._call_cache
        return cache

    def close(self) -> None:
        """Close provider clients and database connections; both reopen on demand."""
        with self._lock:
            hub, self._providers = self._providers, None
            cache = self._call_cache
        if hub is not None:
            hub.close()
        if cache is not None:
            cache.close()
        self.engine.dispose()


@dataclass(frozen=True)
class Actor:
    """Who a call acts as: a user in one org (the org's id resolved once, when the actor is made)."""

    org: str
    org_id: int
    user: str


@dataclass(frozen=True)
class Context:
    """A backend and an actor: everything a service function needs, nothing it must look up."""

    backend: Backend
    actor: Actor
    # The memory of a store generation proven current for this request (services/call_cache.py);
    # None: every check reads the store.
    view: "View | None" = None

    @property
    def engine(self) -> "Engine":
        return self.backend.engine

    @property
    def box(self) -> SecretBox:
        return self.backend.box

    @property
    def providers(self) -> "ProviderHub":
        return self.backend.providers

    @property
    def spool(self) -> UsageSpool:
        return self.backend.spool

    @property
    def org(self) -> str:
        return self.actor.org

    @property
    def org_id(self) -> int:
        return self.actor.org_id

    @property
    def user(self) -> str:
        return self.actor.user
