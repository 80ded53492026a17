"""ProviderHub: the one place that owns provider connections and turns a Target into an Adapter.

A registry opens one hub. The hub holds one pooled ``httpx.Client`` for every OpenAI-shaped
provider (created on first use, redirects off, egress-guarded), one pooled ``httpx.AsyncClient``
per event loop (:meth:`ProviderHub.async_http_client`, same guarantees) and a cache of Bedrock
clients.
Settings are process settings, read from the environment:

* ``BYOK_NB_EGRESS`` when the hub is built;
* the operator's endpoint overrides (``BYOK_NB_FIREWORKS_BASE_URL``, ``BYOK_NB_TOGETHER_BASE_URL``,
  ``BYOK_NB_BEDROCK_ENDPOINT_URL``, ``BYOK_NB_HF_ROUTER_URL``, ``OPENROUTER_BASE_URL``) and
  ``OPENROUTER_API_KEY`` whenever an adapter is built, so an operator change applies to the next
  call without reopening anything.

>>> hub = ProviderHub(timeout=10)                                    # doctest: +SKIP
>>> hub.adapter(Target("fireworks", "accounts/acme/models/x", api_key=SecretStr("fw_..."))).chat(req)
"""
from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any

from pydantic import SecretStr

from ..core.errors import InvalidRequest
from . import huggingface
from .base import Adapter, Target
from .egress import EgressPolicy, egress_mode_from_env, normalize_mode
from .openai_compat import (
    PROFILES,
    OpenAICompatAdapter,
    chat_completions_url,
    missing_key_error,
)

DEFAULT_TIMEOUT = 30.0
FIREWORKS_BASE_URL = "https://api.fireworks.ai/inference/v1"
TOGETHER_BASE_URL = "https://api.together.xyz/v1"
OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
BASE_URL_OVERRIDES = {
    "fireworks": ("BYOK_NB_FIREWORKS_BASE_URL", FIREWORKS_BASE_URL),
    "together": ("BYOK_NB_TOGETHER_BASE_URL", TOGETHER_BASE_URL),
    "openrouter": ("OPENROUTER_BASE_URL", OPENROUTER_BASE_URL),
}


class ProviderHub:
    """Owns provider clients for one registry; ``adapter(target)`` gives a ready adapter.

    ``timeout`` bounds each provider call in seconds; ``egress`` is ``"public"`` or
    ``"default"`` (None reads ``BYOK_NB_EGRESS``); ``max_connections`` sizes the HTTP pool.
    Thread-safe: many threads may call adapters of one hub at once.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, egress: str | None = None, *,
                 max_connections: int = 128) -> None:
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= 86_400:  # nan fails too
            raise InvalidRequest(f"timeout must be a positive number of seconds up to 86400, "
                                 f"not {timeout!r}")
        self.timeout = float(timeout)
        self.egress = egress_mode_from_env() if egress is None else normalize_mode(egress)
        self.policy = EgressPolicy(self.egress)
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._http_client: Any = None
        # An async client belongs to the loop it was first used in (its connections do).
        self._async_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._bedrock_clients: Any = None
        self._closed = False

    def __repr__(self) -> str:
        return f"ProviderHub(timeout={self.timeout:g}, egress={self.egress!r})"

    def __enter__(self) -> ProviderHub:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- shared clients --------------------------------------------------------------------------
    def http_client(self) -> Any:
        """The pooled ``httpx.Client`` (created on first use)."""
        client = self._http_client
        if client is None:
            with self._lock:
                if self._http_client is None:
                    from .transport import build_http_client

                    self._http_client = build_http_client(timeout=self.timeout, policy=self.policy,
                                                          max_connections=self.max_connections)
                client = self._http_client
        return client

    def async_http_client(self) -> Any:
        """The pooled ``httpx.AsyncClient`` of the running event loop (created on first use)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async_clients.get(loop)
            if client is None or client.is_closed:
                from .async_http import build_async_http_client

                client = build_async_http_client(timeout=self.timeout, policy=self.policy,
                                                 max_connections=self.max_connections)
                self._async_clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the running loop's async client, then everything :meth:`close` closes."""
        with self._lock:
            client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
        self.close()

    def _bedrock_cache(self) -> Any:
        with self._lock:
            if self._bedrock_clients is None:
                from .bedrock import BedrockClientCache

                self._bedrock_clients = BedrockClientCache(timeout=self.timeout,
                                                           http_client=self.http_client)
            return self._bedrock_clients

    def close(self) -> None:
        """Close pooled connections and cached clients. The hub can be used again afterwards
        (clients are rebuilt on demand)."""
        with self._lock:
            client, self._http_client = self._http_client, None
            cache, self._bedrock_clients = self._bedrock_clients, None
            async_clients = list(self._async_clients.items())
            self._async_clients.clear()
        if client is not None:
            client.close()
        if cache is not None:
            cache.close()
        for loop, async_client in async_clients:
            _close_async_client(loop, async_client)

    # -- adapters --------------------------------------------------------------------------------
    def adapter(self, target: Target) -> Adapter:
        """The adapter for ``target``'s provider, with the current endpoint overrides applied.

        Building one is cheap (no I/O); clients are shared and created on first call.
        """
        provider = target.provider
        if provider == "bedrock":
            return self._bedrock_adapter(target)
        if provider in ("fireworks", "together", "openrouter"):
            variable, default = BASE_URL_OVERRIDES[provider]
            url = chat_completions_url(os.environ.get(variable, "").strip() or default)
            api_key = target.api_key
            if provider == "openrouter" and (api_key is None or not api_key.get_secret_value()):
                api_key = _env_secret("OPENROUTER_API_KEY")
                if api_key is None:
                    raise missing_key_error(PROFILES["openrouter"].label, "OPENROUTER_API_KEY")
            return self._openai_adapter(provider, url, target, api_key=api_key)
        if provider == "openai_compatible":
            if not (target.base_url or "").strip():
                raise InvalidRequest("Base URL is required for OpenAI-compatible models")
            return self._openai_adapter(provider, chat_completions_url(target.base_url), target)
        if provider == "huggingface":
            hf = huggingface.route(target.endpoint_url or "")
            return self._openai_adapter(hf.profile, hf.url, target, model=hf.model)
        raise InvalidRequest(f"unknown provider {provider!r}")

    def _openai_adapter(self, profile: str, url: str, target: Target, *, api_key: Any = None,
                        model: str | None = None) -> OpenAICompatAdapter:
        return OpenAICompatAdapter(profile=PROFILES[profile], url=url,
                                   api_key=api_key if api_key is not None else target.api_key,
                                   get_client=self.http_client, get_async_client=self.async_http_client,
                                   timeout=self.timeout, model=model,
                                   secrets=target.secrets(), default_model=target.provider_model_id)

    def _bedrock_adapter(self, target: Target) -> Adapter:
        from .bedrock import endpoint_override
        from .bedrock_adapter import BedrockAdapter

        endpoint_url = endpoint_override()
        return BedrockAdapter(target, endpoint_url=endpoint_url, policy=self.policy, timeout=self.timeout,
                              get_client=lambda: self._bedrock_cache().get(target, endpoint_url),
                              http_client=self.http_client,
                              async_http_client=self.async_http_client)


def _close_async_client(loop: Any, client: Any) -> None:
    """Close an async client from sync code: on its loop when that loop is idle, as a task when
    it is running here; a closed loop took its connections with it, so there is nothing to do."""
    if loop.is_closed():
        return
    if loop.is_running():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(client.aclose())
        else:
            asyncio.run_coroutine_threadsafe(client.aclose(), loop)
        return
    loop.run_until_complete(client.aclose())


def _env_secret(name: str) -> Any:
    value = os.environ.get(name, "").strip()
    return SecretStr(value) if value else None
