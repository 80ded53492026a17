"""The admin app (U-2 … U-6): Models page, detail pages and Analytics behind a small navigation bar.
The Voila notebook only displays it::

    from byok_nb.app import app_session
    from byok_nb.ui import AdminApp
    AdminApp(app_session())

Pages are built when first shown (the Models table is what has to appear fast, F-5).
"""
from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from .errors import guarded, set_message, OK_STYLE
from .models_page import ModelsPage, is_org_admin

NAV_OPTIONS = [("Models", "models"), ("Analytics", "analytics")]


class AdminApp(widgets.VBox):
    """Models / detail / Analytics with simple navigation.

    >>> AdminApp(session)                                                          # doctest: +SKIP

    ``app.show_models()``, ``app.open_detail(slug)`` and ``app.show_analytics()`` navigate;
    ``app.page`` is the page on screen.
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.is_admin = is_org_admin(session)
        role = "org admin" if self.is_admin else "member"
        who = f"{getattr(session, 'user', '?')} · {getattr(session, 'org', '?')} · {role}"
        self.header = widgets.HTML(f'<span style="color:#555">{html.escape(who)}</span>')
        self.header.add_class("byok-whoami")
        self.nav = widgets.ToggleButtons(options=NAV_OPTIONS, value="models")
        self.nav.add_class("byok-nav")
        self.nav.observe(self._on_nav, names="value")
        self.message = widgets.HTML()
        self.message.add_class("byok-app-status")
        self.body = widgets.VBox()
        self.body.add_class("byok-app-body")
        self.models_page: ModelsPage | None = None
        self.analytics: Any = None
        self.page: widgets.Widget | None = None
        super().__init__(children=[widgets.HBox([self.nav, self.header]), self.message, self.body])
        self.add_class("byok-app")
        self.show_models()

    def _show(self, page: widgets.Widget) -> None:
        self.page = page
        self.body.children = [page]

    def _on_nav(self, change: Any) -> None:
        if change["new"] == "analytics":
            self.show_analytics()
        else:
            self.show_models()

    @guarded("message", where="Models")
    def show_models(self, refresh: bool = False) -> ModelsPage:
        self.message.value = ""
        if self.models_page is None:
            self.models_page = ModelsPage(self.session, on_open=self.open_detail)
        elif refresh:
            self.models_page.refresh()
        self._set_nav("models")
        self._show(self.models_page)
        return self.models_page

    @guarded("message", where="Model detail")
    def open_detail(self, slug: str) -> Any:
        from .detail_page import DetailPage

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
