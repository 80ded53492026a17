"""The admin app: Models, detail pages, Workflows and Analytics behind a small
navigation bar, under a short product header with the signed-in user.
The Voila notebook only displays it::
    from byok_nb.ui.launch import open_admin_app
    open_admin_app()          # AdminApp(app_session()), or one clear message when that fails

Pages are built when first shown (the Models table is what has to appear fast). A visitor who
is not a member of the org sees one message and no pages: every page would only refuse them.
"""
from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from .access import is_org_admin
from .errors import ERROR_STYLE, OK_STYLE, guarded, set_message
from .models_page import ModelsPage
from .shared_look import SharedLook

PRODUCT_NAME = "Custom Models (BYOK)"
NAV_OPTIONS = [("Models", "models"), ("Workflows", "workflows"), ("Analytics", "analytics")]
ROLE_NAMES = {"org_admin": "Org Admin", "project_admin": "Project Admin", "contributor": "Contributor"}
NOT_A_MEMBER = ("You are signed in as {user}, who is not a member of the organization {org}. "
                "Ask an Org Admin to add you; until then there is nothing to show here.")

# Shell-wide styles. ipywidgets gives every button a fixed width and cuts longer labels with an
# ellipsis ("Probe capabi…"): inside the app a button is as wide as its label. Icon glyphs are
# hidden: their font comes from a CDN (absent offline) and the glyph would become part of the
# button's accessible name (" Test Connection" instead of "Test Connection").
APP_STYLE = """<style>
.byok-app .jupyter-button.widget-button, .byok-app .widget-toggle-button {
  width: auto; min-width: 5em; padding-left: 12px; padding-right: 12px; overflow: visible;
  flex: 0 0 auto; align-self: flex-start; }
.byok-app .widget-toggle-buttons { flex-wrap: wrap; }
.byok-app .jupyter-button > i.fa { display: none; }
.byok-app-header { display: flex; align-items: baseline; gap: 16px; }
.byok-app-header h1 { font-size: 1.35em; margin: 4px 0; }
.byok-app-header .byok-whoami { color: #444; }
</style>"""


def role_names(session: Any) -> list[str] | None:
    """The user's roles in the org as the product names them, most powerful first; an empty list
    for a non-member; None when the session cannot tell (a role lookup that failed)."""
    roles = getattr(session, "roles", None)
    if not callable(roles):      # a session without roles(): only the admin flag is known
        return ["Org Admin"] if is_org_admin(session) else ["Member"]
    try:
        found = {str(role) for role, _project in roles()}
    except Exception:  # noqa: BLE001 — the pages say what failed; the header just omits the role
        return None
    return [ROLE_NAMES.get(r, r) for r in ROLE_NAMES if r in found] + sorted(found - set(ROLE_NAMES))


def header_html(user: str, org: str, roles: list[str] | None) -> str:
    """The product header: name, then who is signed in (and their role, when a member)."""
    who = f"Signed in as {user} · {org}"
    if roles:
        who += f" · {', '.join(roles)}"
    return (f'{APP_STYLE}<div class="byok-app-header"><h1>{html.escape(PRODUCT_NAME)}</h1>'
            f'<span class="byok-whoami">{html.escape(who)}</span></div>')


class AdminApp(widgets.VBox):
    """Models / detail / Workflows / Analytics with simple navigation.

    >>> AdminApp(session)                                                          # doctest: +SKIP

    ``app.show_models()``, ``app.open_detail(slug)``, ``app.show_workflows()`` and
    ``app.show_analytics()`` navigate; ``app.page`` is the page on screen (None for a non-member).
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.is_admin = is_org_admin(session)
        self.user = str(getattr(session, "user", "?"))
        self.org = str(getattr(session, "org", "?"))
        roles = role_names(session)
        self.is_member = roles != []
        self.look = look = SharedLook()      # the shell's widgets share one layout and style
        self.header = look(widgets.HTML, header_html(self.user, self.org, roles if self.is_member else None))
        self.header.add_class("byok-header")
        self.nav = look(widgets.ToggleButtons, options=NAV_OPTIONS, value="models")
        self.nav.add_class("byok-nav")
        self.nav.observe(self._on_nav, names="value")
        self.message = look(widgets.HTML)
        self.message.add_class("byok-app-status")
        self.body = look(widgets.VBox)
        self.body.add_class("byok-app-body")
        self.models_page: ModelsPage | None = None
        self.workflows: Any = None
        self.analytics: Any = None
        self.page: widgets.Widget | None = None
        if not self.is_member:
            super().__init__(children=[self.header, self.message], layout=look.layout)
            self.add_class("byok-app")
            self.add_class("byok-not-a-member")
            set_message(self.message, NOT_A_MEMBER.format(user=repr(self.user), org=repr(self.org)), ERROR_STYLE)
            return
        super().__init__(children=[self.header, self.nav, self.message, self.body], layout=look.layout)
        self.add_class("byok-app")
        self.show_models()

    def _show(self, page: widgets.Widget) -> None:
        self.page = page
        self.body.children = [page]

    def _on_nav(self, change: Any) -> None:
        {"analytics": self.show_analytics, "workflows": self.show_workflows}.get(
            change["new"], self.show_models)()

    @guarded("message", where="Models")
    def show_models(self, refresh: bool = False) -> ModelsPage:
        self.message.value = ""
        if self.models_page is None:
            self.models_page = ModelsPage(self.session, on_open=self.open_detail, look=self.look)
        elif refresh:
            self.models_page.refresh()
        self._set_nav("models")
        self._show(self.models_page)
        return self.models_page

    @guarded("message", where="Model detail")
    def open_detail(self, slug: str) -> Any:
        from .detail_page import DetailPage

        self.message.value = ""
        page = DetailPage(self.session, slug, on_back=lambda: self.show_models(refresh=True),
                          on_deleted=self._on_deleted, on_changed=lambda _m: None)
        self._show(page)
        return page

    def _on_deleted(self, result: Any) -> None:
        page = self.show_models(refresh=True)
        if page is not None:
            set_message(page.message, f"Deleted '{result.slug}'. {result.referencing_workflows} active "
                        f"workflow{'' if result.referencing_workflows == 1 else 's'} still reference it.",
                        OK_STYLE)

    @guarded("message", where="Workflows")
    def show_workflows(self) -> Any:
        from .workflows_page import WorkflowsPage

        self.message.value = ""
        if self.workflows is None:
            self.workflows = WorkflowsPage(self.session)
        else:
            self.workflows.refresh()
        self._set_nav("workflows")
        self._show(self.workflows)
        return self.workflows

    @guarded("message", where="Analytics")
    def show_analytics(self) -> Any:
        from .analytics_view import AnalyticsView

        self.message.value = ""
        if self.analytics is None:
            self.analytics = AnalyticsView(self.session)
        else:
            self.analytics.refresh()
        self._set_nav("analytics")
        self._show(self.analytics)
        return self.analytics

    def _set_nav(self, value: str) -> None:
        if self.nav.value != value:
            self.nav.unobserve(self._on_nav, names="value")
            try:
                self.nav.value = value
            finally:
                self.nav.observe(self._on_nav, names="value")



def unavailable_view(user: str, org: str, message: str) -> widgets.VBox:
    """What a visitor sees when the app cannot open for them: the product header and one message."""
    header = widgets.HTML(header_html(user, org, None))
    header.add_class("byok-header")
    status = widgets.HTML()
    status.add_class("byok-app-status")
    set_message(status, f"The app cannot open: {message}", ERROR_STYLE)
    box = widgets.VBox(children=[header, status])
    box.add_class("byok-app")
    box.add_class("byok-app-unavailable")
    return box
