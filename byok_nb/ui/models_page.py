"""The Models page (U-2, U-6): platform and custom models in one table with a type filter.

The table is plain HTML (``widgets.HTML``), so it renders in Voila without any front-end
extension. A table cell cannot call back into the kernel, so each custom model listed also gets a
button (CSS ``byok-open-model``, text = its label, tooltip = its slug) that opens its detail page —
easy for a person and for a Playwright test to click.

Org admins see ``Add Custom Model``; everyone else sees the same page without it (U-6).
"""
from __future__ import annotations

import html
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import ipywidgets as widgets

from .. import model_rules as rules
from ..domain import PROVIDER_LABELS
from .add_dialog import AddModelDialog
from .errors import OK_STYLE, guarded, set_message
from .forms import MESSAGES

TYPE_FILTER_OPTIONS = [("All", "all"), ("Platform", "platform"), ("Custom", "custom")]
TYPE_LABELS = {"platform": "Platform", "custom": "Custom"}
PROVIDER_NAMES = {**PROVIDER_LABELS, "openrouter": "OpenRouter"}
TABLE_COLUMNS = [
    ("label", "Name"), ("type", "Type"), ("provider", "Provider"), ("ref", "Model ID / Slug"),
    ("max_tokens", "Max Tokens"), ("supports_json_mode", "JSON"), ("supports_vision", "Vision"),
    ("supports_tool_use", "Tools"), ("supports_reasoning", "Reasoning"),
    ("input_cost_per_token", "Input cost/token (USD)"), ("output_cost_per_token", "Output cost/token (USD)"),
]
TABLE_STYLE = ("<style>.byok-models-table-html{border-collapse:collapse;font-size:13px}"
               ".byok-models-table-html th,.byok-models-table-html td{border-bottom:1px solid #ddd;"
               "padding:3px 8px;text-align:left}.byok-models-table-html tr.byok-row-custom{"
               "background:#f3f8ff}</style>")


def is_org_admin(session: Any) -> bool:
    """Whether ``session`` may manage custom models; any failure reads as "no" (U-6)."""
    try:
        value = getattr(session, "is_org_admin", False)
        return bool(value() if callable(value) else value)
    except Exception:  # noqa: BLE001 — a role lookup failure hides controls, never shows a traceback
        return False


def slug_css(slug: str) -> str:
    """A CSS-class-safe form of a slug (slugs may hold ``/ . :``)."""
    return re.sub(r"[^a-z0-9_-]+", "-", slug.lower())


def _cell(column: str, value: Any) -> str:
    if column.startswith("supports_"):
        return "✓" if bool(value) else "—"
    if column.endswith("_cost_per_token"):
        if value is None or (isinstance(value, float) and value != value):
            return "unpriced"
        return rules.format_cost(value if isinstance(value, Decimal) else Decimal(str(value))) or "0"
    if column == "type":
        return TYPE_LABELS.get(value, str(value))
    if column == "provider":
        return PROVIDER_NAMES.get(value, str(value))
    return "" if value is None else str(value)


def models_table_html(frame: Any) -> str:
    """The Models table as escaped HTML (one ``<tr data-ref=...>`` per model)."""
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in TABLE_COLUMNS)
    rows = []
    for record in frame.to_dict("records"):
        kind = record.get("type", "")
        cells = "".join(f"<td>{html.escape(_cell(col, record.get(col)))}</td>" for col, _ in TABLE_COLUMNS)
        rows.append(f'<tr class="byok-row-{html.escape(str(kind))}" data-ref="{html.escape(str(record.get("ref", "")))}">'
                    f"{cells}</tr>")
    if not rows:
        rows.append(f'<tr><td colspan="{len(TABLE_COLUMNS)}">No models.</td></tr>')
    return (f'{TABLE_STYLE}<table class="byok-models-table-html"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


class ModelsPage(widgets.VBox):
    """Models (U-2).

    >>> ModelsPage(session)                                                         # doctest: +SKIP

    ``on_open(slug)`` is called when a custom model is clicked; without it the page opens the
    detail page inside itself. ``on_add`` replaces the built-in Add Custom Model dialog.
    """

    def __init__(self, session: Any, on_open: Callable[[str], Any] | None = None,
                 on_add: Callable[[], Any] | None = None) -> None:
        self.session = session
        self.on_open = on_open
        self.on_add = on_add
        self.is_admin = is_org_admin(session)
        self.title = widgets.HTML("<h2>Models</h2>")
        self.type_filter = widgets.ToggleButtons(options=TYPE_FILTER_OPTIONS, value="all")
        self.type_filter.add_class("byok-type-filter")
        self.type_filter.observe(self._on_filter, names="value")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.refresh_button.add_class("byok-refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        controls: list[widgets.Widget] = [self.type_filter, self.refresh_button]
        self.add_button: widgets.Button | None = None
        if self.is_admin:
            # No icon: its glyph would become part of the button's accessible name (U-10).
            self.add_button = widgets.Button(description=MESSAGES["add_title"], button_style="primary")
            self.add_button.add_class("byok-add-model")
            self.add_button.on_click(self._on_add)
            controls.append(self.add_button)
        self.message = widgets.HTML()
        self.message.add_class("byok-status")
        self.dialog_area = widgets.VBox()
        self.dialog_area.add_class("byok-dialog-area")
        self.table = widgets.HTML()
        self.table.add_class("byok-models-table")
        self.open_buttons = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.open_buttons.add_class("byok-custom-models")
        self.detail_area = widgets.VBox()
        self.detail_area.add_class("byok-detail-area")
        self.dialog: AddModelDialog | None = None
        self.frame = None
        super().__init__(children=[self.title, widgets.HBox(controls), self.message, self.dialog_area,
                                   self.open_buttons, self.table, self.detail_area])
        self.add_class("byok-models-page")
        self.refresh()

    # -- table -----------------------------------------------------------------------------------
    @guarded("message", where="Models table")
    def refresh(self) -> None:
        """Re-read ``list_models`` for the current type filter and re-render."""
        frame = self.session.list_models(type=self.type_filter.value)
        self.frame = frame
        self.table.value = models_table_html(frame)
        customs = [r for r in frame.to_dict("records") if r.get("type") == "custom"]
        buttons: list[widgets.Widget] = []
        if customs:
            buttons.append(widgets.HTML("<b>Open a custom model:</b>&nbsp;"))
        for record in customs:
            slug = str(record["ref"])
            button = widgets.Button(description=str(record.get("label") or slug), tooltip=slug,
                                    layout=widgets.Layout(width="auto"))
            button.add_class("byok-open-model")
            button.add_class(f"byok-open-{slug_css(slug)}")
            button.on_click(lambda _b, slug=slug: self._open(slug))
            buttons.append(button)
        self.open_buttons.children = buttons

    def _on_filter(self, change: Any) -> None:
        self.refresh()

    def custom_buttons(self) -> list[widgets.Button]:
        return [b for b in self.open_buttons.children if isinstance(b, widgets.Button)]

    # -- actions ---------------------------------------------------------------------------------
    @guarded("message", where="Open model")
    def _open(self, slug: str) -> None:
        if self.on_open is not None:
            self.on_open(slug)
            return
        from .detail_page import DetailPage

        self.detail_area.children = [DetailPage(self.session, slug, on_back=self._close_detail,
                                                on_deleted=lambda r: self._after_change(
                                                    f"Deleted '{r.slug}'."),
                                                on_changed=lambda _m: self.refresh())]

    def _close_detail(self) -> None:
        self.detail_area.children = []

    @guarded("message", where="Add Custom Model")
    def _on_add(self, _button: Any = None) -> None:
        if self.on_add is not None:
            self.on_add()
            return
        self.open_add_dialog()

    def open_add_dialog(self) -> AddModelDialog:
        """Show the Add Custom Model dialog. A dialog already open keeps its half-filled draft
        (clicking Add Custom Model again must not wipe it); Cancel discards it."""
        self.message.value = ""
        if self.dialog is not None:
            self.dialog_area.children = [self.dialog]
            return self.dialog
        self.dialog = AddModelDialog(self.session, on_saved=self._on_saved, on_cancel=self.close_add_dialog)
        self.dialog_area.children = [self.dialog]
        return self.dialog

    def close_add_dialog(self) -> None:
        self.dialog = None
        self.dialog_area.children = []

    def _on_saved(self, model: Any) -> None:
        self.close_add_dialog()
        set_message(self.message, f"Saved model '{model.slug}'.", OK_STYLE)
        self.refresh()   # W-3: it shows up at once

    def _after_change(self, text: str = "") -> None:
        self._close_detail()
        self.refresh()
        if text:
            set_message(self.message, text, OK_STYLE)
