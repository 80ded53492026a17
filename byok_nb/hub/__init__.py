"""Team deployment on JupyterHub: one hub-managed service holds the keys, everyone reaches it as
themselves.

In ``jupyterhub_config.py``::

    import byok_nb.hub
    byok_nb.hub.configure(c, admins=["ana"], org="acme", project="research")

:func:`configure` only edits the config object ``c`` (it needs neither JupyterHub nor the
registry's server dependencies to be importable here), so this module stays light: the service
itself is ``python -m byok_nb.hub.service``, started by the hub.
"""
from __future__ import annotations

import copy
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..core.errors import InvalidRequest

SERVICE_NAME = "byok"
DEFAULT_PORT = 10101
DEFAULT_CULL_IDLE_SECONDS = 600   # as the service's own default (byok_nb/hub/settings.py)

# What configure() hands the service (besides the store settings copied from the hub's environment).
ENV_HUB_MODE = "BYOK_NB_HUB_MODE"
ENV_HUB_ORG = "BYOK_NB_HUB_ORG"
ENV_HUB_PROJECT = "BYOK_NB_HUB_PROJECT"
ENV_HUB_ADMINS = "BYOK_NB_HUB_ADMINS"          # comma-separated hub user names
ENV_HUB_CULL_IDLE = "BYOK_NB_HUB_CULL_IDLE"    # seconds an app kernel may idle before it is culled
ENV_HUB_BIND = "BYOK_NB_HUB_BIND"              # host to listen on when not the url's own host
ENV_HUB_NOTEBOOK = "BYOK_NB_HUB_NOTEBOOK"      # a notebook (or folder) served instead of the admin app
# What single-user servers get: where connect() finds the service (never a store credential).
ENV_SERVICE_URL = "BYOK_NB_SERVICE_URL"

# The hub's own byok_nb settings the service inherits: the store (URL, master key, home) and the
# settings that shape provider calls (egress policy, provider base URLs, catalog...).
_FORWARDED_PREFIX = "BYOK_NB_"
# ...except the ones configure() sets itself and the embedded app's identity settings, which would
# be a way around hub identity if they reached the service.
_NOT_FORWARDED = frozenset({ENV_SERVICE_URL, "BYOK_NB_USER", "BYOK_NB_ORG", "BYOK_NB_API_TOKEN"})

# The roles every hub user and every single-user server's token have by default (JupyterHub's
# roles.get_default_roles). Redefining a default role in ``load_roles`` replaces its scopes, so
# ours are merged into these, never written over them.
_DEFAULT_ROLE_SCOPES = {
    "user": ("self",),
    "server": ("users:activity!user", "access:servers!server"),
}
# The service's own token needs no scope, so the service gets no role: it identifies a visitor or
# a caller by asking ``GET /hub/api/user`` with *their* token (the OAuth token of a login, or a
# server's ``JUPYTERHUB_API_TOKEN``) and turns a login's code into a token with its OAuth client
# credentials. (Tried on JupyterHub 6.1: both work for a service holding no role.)


def configure(c: Any, *, admins: Iterable[str] = (), org: str = "default", port: int = DEFAULT_PORT,
              project: str = "default", name: str = SERVICE_NAME, url: str | None = None,
              service_url: str | None = None, bind: str | None = None,
              command: Sequence[str] | None = None,
              cull_idle_seconds: int = DEFAULT_CULL_IDLE_SECONDS,
              environment: Mapping[str, str] | None = None, api_token: str | None = None,
              notebook: str | os.PathLike[str] | None = None) -> None:
    """Add the byok_nb registry service to the JupyterHub config ``c``.

    - the hub-managed service ``name`` on ``url`` (default ``http://127.0.0.1:<port>``), served
      by JupyterHub's proxy at ``<base_url>services/<name>/``, its OAuth client confirming no
      authorization page; its environment carries the hub's ``BYOK_NB_*`` settings (store URL,
      master key, home, ...) — the only process that does;
    - ``admins`` become org admins of ``org`` at every start of the service (a name taken out of
      the list stops being one); every other hub user who reaches the service joins ``org`` as a
      contributor on ``project``, unless an admin removed them;
    - scope ``access:services!service=<name>`` added to the ``user`` role (log in to the app) and
      to the ``server`` role (a single-user server's ``JUPYTERHUB_API_TOKEN`` may call it), both
      keeping their default scopes and any you configured;
    - single-user servers get ``BYOK_NB_SERVICE_URL`` (``service_url``, default the service's
      own URL and prefix), so ``byok_nb.connect()`` needs no arguments there.

    ``bind`` is the address the service listens on when it is not ``url``'s host (e.g.
    ``0.0.0.0`` in a Kubernetes hub pod reached as ``http://hub:10101``). ``command`` replaces
    the service's command; ``environment`` adds variables to its environment. ``command=[]``
    declares an external service (run by you, e.g. as several replicas at ``url``): the hub then
    starts nothing, and ``api_token`` (required then) is the token that service and the hub
    share; the service's environment is then yours to set. An entry for the service already in
    ``c.JupyterHub.services`` keeps its other keys. Calling it again with the same arguments
    changes nothing. ``notebook`` (a path on the service's machine) is served in the admin
    app's place, the same way — a customised app, or a folder of notebooks.
    """
    admin_names = _check_admins(admins)
    for label, value in (("org", org), ("project", project), ("name", name)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(f"{label} must be a non-empty string, got {value!r}", field=label)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise InvalidRequest(f"port must be a TCP port number (1-65535), got {port!r}", field="port")
    if command is not None and not list(command) and not api_token:
        raise InvalidRequest("an external service (command=[]) needs api_token, the token it shares "
                             "with the hub", field="api_token")
    if not isinstance(cull_idle_seconds, int) or isinstance(cull_idle_seconds, bool) or cull_idle_seconds < 0:
        raise InvalidRequest("cull_idle_seconds must be a whole number of seconds, 0 or more "
                             f"(0: never cull), got {cull_idle_seconds!r}", field="cull_idle_seconds")

    service_root_url = url or f"http://127.0.0.1:{port}"
    hub = c.JupyterHub
    prefix = _join(_current(hub, "base_url", "/"), f"services/{name}/")
    env = _service_environment(os.environ, admins=admin_names, org=org, project=project,
                               cull_idle_seconds=cull_idle_seconds, bind=bind, extra=environment)
    if notebook is not None:
        env[ENV_HUB_NOTEBOOK] = os.fspath(notebook)
    services = _current(hub, "services", [])
    existing = next((s for s in services if s.get("name") == name), {})
    service = {**existing, "name": name, "url": service_root_url, "oauth_no_confirm": True,
               "oauth_client_id": f"service-{name}", "display": existing.get("display", True),
               "environment": {**existing.get("environment", {}), **env}}
    command = [sys.executable, "-m", "byok_nb.hub.service"] if command is None else list(command)
    if command:
        service["command"] = command
    else:
        service.pop("command", None)
    if api_token is not None:
        service["api_token"] = api_token
    hub.services = [s for s in services if s.get("name") != name] + [service]

    access = f"access:services!service={name}"
    roles = _current(hub, "load_roles", [])
    for role_name, defaults in _DEFAULT_ROLE_SCOPES.items():
        extra = [access]
        if role_name == "user":
            # A redefined user role makes JupyterHub ignore extra_user_scopes: carry them over.
            extra = [*sorted(_current(hub, "extra_user_scopes", set())), access]
        _merge_role(roles, role_name, defaults, extra)
    hub.load_roles = roles

    # Servers whose token scopes are listed explicitly must list the service too, or the server
    # role above would not reach their token. (A callable server_token_scopes is left alone:
    # make it return the scope.)
    for _, section in _spawner_sections(c):
        scopes = _current(section, "server_token_scopes", None)
        if isinstance(scopes, list) and access not in scopes:
            section.server_token_scopes = scopes + [access]

    reachable = service_url or (service_root_url.rstrip("/") + prefix)
    for section_name, section in _spawner_sections(c, always="Spawner"):
        if section_name == "Spawner" or "environment" in section:
            section.environment = {**_current(section, "environment", {}), ENV_SERVICE_URL: reachable}


def _check_admins(admins: Iterable[str]) -> list[str]:
    if isinstance(admins, str):
        # A bare string would be read letter by letter.
        raise InvalidRequest(f"admins must be a list of hub user names, got the string {admins!r}",
                             field="admins")
    names = []
    for admin in admins:
        if not isinstance(admin, str) or not admin.strip() or "," in admin:
            raise InvalidRequest(f"admins must be hub user names (non-empty, no comma), got {admin!r}",
                                 field="admins")
        if admin.strip() not in names:
            names.append(admin.strip())
    return names


def _service_environment(hub_env: Mapping[str, str], *, admins: list[str], org: str, project: str,
                         cull_idle_seconds: int, bind: str | None,
                         extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in hub_env.items()
           if k.startswith(_FORWARDED_PREFIX) and not k.startswith("BYOK_NB_HUB_") and k not in _NOT_FORWARDED}
    env.update({ENV_HUB_MODE: "1", ENV_HUB_ORG: org, ENV_HUB_PROJECT: project,
                ENV_HUB_ADMINS: ",".join(admins), ENV_HUB_CULL_IDLE: str(cull_idle_seconds)})
    if bind:
        env[ENV_HUB_BIND] = bind
    env.update(extra or {})
    return env


def _merge_role(roles: list[dict[str, Any]], role_name: str, defaults: Iterable[str], extra: Iterable[str]) -> None:
    """Add ``extra`` scopes to the role named ``role_name`` in ``roles``; a role not defined
    there yet starts from ``defaults``."""
    role = next((r for r in roles if r.get("name") == role_name), None)
    if role is None:
        role = {"name": role_name}
        roles.append(role)
    scopes = list(role.get("scopes", defaults))
    role["scopes"] = scopes + [s for s in dict.fromkeys(extra) if s not in scopes]


def _spawner_sections(c: Any, always: str | None = None) -> list[tuple[str, Any]]:
    """The config sections of spawner classes (``Spawner``, ``KubeSpawner``, ...) as (name,
    section): a subclass's setting replaces the base class's, so each one that sets something
    must be edited. ``always`` is included even when the config does not mention it yet."""
    names = [k for k in c if k.endswith("Spawner")]
    if always and always not in names:
        names.insert(0, always)
    return [(n, c[n]) for n in names]


def _current(section: Any, key: str, default: Any) -> Any:
    """A copy of ``section.key`` as a plain value: ``default`` when unset; a pending
    ``.append``/``.update`` (traitlets' LazyConfigValue) applied to ``default``."""
    if key not in section:
        return copy.deepcopy(default)
    value = section[key]
    if hasattr(value, "get_value"):
        return value.get_value(copy.deepcopy(default))
    return copy.deepcopy(value)


def _join(base: str, tail: str) -> str:
    return "/" + "/".join(p for p in (base.strip("/"), tail.strip("/")) if p) + "/"


__all__ = ["DEFAULT_PORT", "ENV_SERVICE_URL", "SERVICE_NAME", "configure"]
