"""What the hub service is told by its environment: JupyterHub's variables for a managed service
and byok_nb's own (set by ``byok_nb.hub.configure``). One place reads them; the rest of the
service takes a :class:`HubSettings`."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..core.errors import InvalidRequest
from .members import parse_admins

__all__ = ["DEFAULT_CULL_IDLE", "HubSettings"]

DEFAULT_CULL_IDLE = 600          # seconds a closed visit's kernel may sit idle before it is shut down
DEFAULT_SERVICE_NAME = "byok"


def _prefix(value: str) -> str:
    value = "/" + value.strip("/") + "/" if value.strip("/") else "/"
    return value


@dataclass(frozen=True)
class HubSettings:
    host: str                     # where to listen
    port: int
    prefix: str                   # /services/byok/
    api_url: str                  # http://127.0.0.1:8081/hub/api
    api_token: str = field(repr=False)
    client_id: str
    callback_url: str
    authorize_url: str            # where an unauthenticated browser is sent
    service_name: str = DEFAULT_SERVICE_NAME
    org: str = "default"
    project: str = "default"
    admins: tuple[str, ...] = ()
    cull_idle: int = DEFAULT_CULL_IDLE
    public_https: bool = False    # JUPYTERHUB_PUBLIC_URL is https: cookies get Secure
    notebook: str = ""            # BYOK_NB_HUB_NOTEBOOK: serve this notebook (or folder) instead of the admin app

    @property
    def access_scopes(self) -> frozenset[str]:
        """The hub scopes that let a user in (as HubAuth's default for a service)."""
        return frozenset({"access:services", f"access:services!service={self.service_name}"})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HubSettings:
        env = os.environ if env is None else env
        missing = [k for k in ("JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_CLIENT_ID")
                   if not env.get(k)]
        if missing:
            raise InvalidRequest(f"the hub service runs under JupyterHub, which sets {', '.join(missing)}; "
                                 f"add it with byok_nb.hub.configure(c) in jupyterhub_config.py")
        url = urlsplit(env["JUPYTERHUB_SERVICE_URL"])
        prefix = _prefix(env.get("JUPYTERHUB_SERVICE_PREFIX") or url.path or "/")
        api_url = (env.get("JUPYTERHUB_API_URL") or "http://127.0.0.1:8081/hub/api").rstrip("/")
        hub_prefix = _prefix(env.get("JUPYTERHUB_BASE_URL") or "/") + "hub/"
        # As HubOAuth: the browser goes to the hub's own host (JUPYTERHUB_HOST, "" = same origin).
        authorize_url = (env.get("JUPYTERHUB_HOST") or "") + hub_prefix + "api/oauth2/authorize"
        callback = env.get("JUPYTERHUB_OAUTH_CALLBACK_URL") or prefix + "oauth_callback"
        try:
            cull_idle = int(env.get("BYOK_NB_HUB_CULL_IDLE") or DEFAULT_CULL_IDLE)
        except ValueError:
            raise InvalidRequest("BYOK_NB_HUB_CULL_IDLE is a whole number of seconds") from None
        # BYOK_NB_HUB_NOTEBOOK: another notebook (or a folder of them) served the same way — a
        # customised app, or the benchmarks' one-button yardstick. Checked here: Voila would only
        # fail in the background, after the hub saw the service start.
        notebook = (env.get("BYOK_NB_HUB_NOTEBOOK") or "").strip()
        if notebook and not os.path.exists(notebook):
            raise InvalidRequest(f"BYOK_NB_HUB_NOTEBOOK names no file or folder: {notebook!r}")
        # BYOK_NB_HUB_BIND: where to listen when it is not the URL's host (0.0.0.0 in a hub pod).
        return cls(host=(env.get("BYOK_NB_HUB_BIND") or "").strip() or url.hostname or "127.0.0.1",
                   port=url.port or (443 if url.scheme == "https" else 80), prefix=prefix, api_url=api_url,
                   api_token=env["JUPYTERHUB_API_TOKEN"], client_id=env["JUPYTERHUB_CLIENT_ID"],
                   callback_url=callback, authorize_url=authorize_url,
                   service_name=env.get("JUPYTERHUB_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
                   org=(env.get("BYOK_NB_HUB_ORG") or "default").strip(),
                   project=(env.get("BYOK_NB_HUB_PROJECT") or "default").strip(),
                   admins=tuple(parse_admins(env.get("BYOK_NB_HUB_ADMINS"))), cull_idle=max(cull_idle, 0),
                   public_https=urlsplit(env.get("JUPYTERHUB_PUBLIC_URL") or "").scheme == "https",
                   notebook=notebook)
