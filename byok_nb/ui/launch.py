"""The admin app as one visitor's kernel opens it: who the visitor is, the first-run bootstrap,
and the page (or one clear message when no session can be opened).

The app notebook calls :func:`wait_for_visitor` (a preheated kernel waits here for its visitor) and
then :func:`open_admin_app`, which opens the configured registry and acts as the user named by
``BYOK_NB_USER`` or ``JUPYTERHUB_USER`` (else the OS user). On a registry with no org yet, the first
user creates ``BYOK_NB_ORG`` (default ``default``) and becomes its org admin.
"""
from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING, Any

from ..core.errors import RegistryError, Unauthorized
from ..hub import members as hub_members
from ..services.membership import claim_first_run

if TYPE_CHECKING:  # pragma: no cover
    from ..registry import Registry, Session

DEFAULT_ORG = "default"
HUB_USER_VARIABLE = "HTTP_X_BYOK_HUB_USER"


def hub_mode() -> bool:
    """True inside the hub service's Voila: identity comes from the hub login only."""
    return os.environ.get("BYOK_NB_HUB_MODE", "").strip().lower() in ("1", "true", "yes")


def current_user() -> str:
    """The acting user: ``BYOK_NB_USER``, else ``JUPYTERHUB_USER``, else the OS user. In hub mode
    only the hub name of the request (``""`` when the request carried none)."""
    if hub_mode():
        return os.environ.get(HUB_USER_VARIABLE, "").strip()
    for variable in ("BYOK_NB_USER", "JUPYTERHUB_USER"):
        value = os.environ.get(variable, "").strip()
        if value:
            return value
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers)
        return "user"


def current_org() -> str:
    return os.environ.get("BYOK_NB_ORG", "").strip() or os.environ.get("BYOK_NB_HUB_ORG", "").strip() \
        or DEFAULT_ORG


def hub_project() -> str:
    """The project hub users are auto-joined to."""
    return os.environ.get("BYOK_NB_HUB_PROJECT", "").strip() or DEFAULT_ORG


def bootstrap(registry: "Registry", org: str, user: str) -> bool:
    """First run: on a store with no org at all, create ``org`` and make ``user`` its org admin.

    One transaction creates both, so exactly one of several Voila kernels starting at once wins
    (the rule of :func:`byok_nb.services.membership.claim_first_run`, shared with ``Registry.session``).
    Returns True when ``user`` was made org admin here.
    """
    return claim_first_run(registry._backend.engine, org, user)


def app_session(registry: "Registry | None" = None, *, org: str | None = None,
                user: str | None = None) -> "Session":
    """The session the admin app acts in: the embedded default registry, the org of
    ``BYOK_NB_ORG`` and the user of :func:`current_user`, bootstrapped on first run.

    >>> from byok_nb.ui.launch import app_session
    >>> s = app_session()          # doctest: +SKIP
    """
    from ..registry import open_registry

    registry = registry or open_registry()
    org = org or current_org()
    user = user or current_user()
    if hub_mode():
        if not user:
            raise Unauthorized("no hub login reached the app; open it through JupyterHub "
                               "(the service's page under /services/)")
        hub_members.admit(registry._backend.engine, org, hub_project(), user)   # Forbidden if removed
    else:
        bootstrap(registry, org, user)
    return registry.session(org=org, user=user)



def open_admin_app(session_factory: Any = None) -> Any:
    """The admin app for this visitor, as the app notebook shows it: ``AdminApp`` on
    :func:`app_session`, or — when no session can be opened (an org that does not exist, a store
    or key that refuses) — the product header and one clear message instead of a failed cell.

    >>> from byok_nb.ui.launch import open_admin_app
    >>> open_admin_app()                                                  # doctest: +SKIP
    """
    from ..ui.app import AdminApp, unavailable_view

    try:
        session = (session_factory or app_session)()
    except RegistryError as exc:
        return unavailable_view(current_user(), current_org(), exc.message)
    return AdminApp(session)

def wait_for_visitor() -> None:
    """In a preheated Voila kernel: load what the app needs, then wait for the browser's request.

    Voila runs a preheated kernel's notebook before anyone asks for the page; everything above this
    call happens then, and everything after it (the session, the user's models) at request time,
    so the page shows fresh data without paying for the imports. Anywhere else (Jupyter, nbval, a
    Voila without preheating) it returns at once.

    The wait itself is :func:`byok_nb.server.voila_query.wait_for_request`, not Voila's own: importing
    ``voila.utils`` in every kernel cost more CPU than the whole app (see docs/benchmarks.md).
    """
    if os.environ.get("VOILA_PREHEAT") != "True":
        return
    # Not pandas: the Models page is built from plain rows, and a visit that never opens
    # Analytics should not pay for pandas and numpy.
    import sqlalchemy  # noqa: F401

    from .. import registry, store  # noqa: F401
    from ..server.voila_query import wait_for_request
    from ..ui import app as _ui_app  # noqa: F401 — ipywidgets and the Models page

    wait_for_request()
