"""The Models page: platform and custom models in one table with a type filter.

The table is a :class:`~byok_nb.ui.row_table.RowTable`: each custom model is a table row that opens
its detail page on click and on Enter (the seed: "click a custom model row"). Custom models come
first, so an admin sees the org's own models without scrolling past the platform list. Long names
are cut with an ellipsis; the full name is the cell's hover title.

Org admins see ``Add Custom Model``; everyone else sees the same page without it.
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import ipywidgets as widgets

from ..core.domain import PROVIDER_LABELS
from ..services import model_rules as rules
from .access import is_org_admin
from .add_dialog import AddModelDialog
from .errors import OK_STYLE, guarded, set_message
from .forms import MESSAGES
from .row_table import RowTable
from .shared_look import SharedLook

TYPE_FILTER_OPTIONS = [("All", "all"), ("Platform", "platform"), ("Custom", "custom")]
TYPE_LABELS = {"platform": "Platform", "custom": "Custom"}
PROVIDER_NAMES = {**PROVIDER_LABELS, "openrouter": "OpenRouter"}
TABLE_COLUMNS = [
    ("label", "Name"), ("type", "Type"), ("provider", "Provider"), ("ref", "Model ID / Slug"),
    ("max_tokens", "Max Tokens"), ("supports_json_mode", "JSON"), ("supports_vision", "Vision"),
    ("supports_tool_use", "Tools"), ("supports_reasoning", "Reasoning"),
    ("input_cost_per_token", "Input cost/token (USD)"), ("output_cost_per_token", "Output cost/token (USD)"),
]
TRUNCATED_COLUMNS = {"label", "ref"}       # long names: ellipsis, full text on hover
NUMERIC_COLUMNS = {"max_tokens", "input_cost_per_token", "output_cost_per_token"}
TABLE_CAPTION = "Custom models first; click a custom model's row (or press Enter on it) to open it."
OPEN_HINT = "Open the detail page"


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


def table_columns() -> list[dict[str, Any]]:
    """The Models table's columns for :class:`RowTable`."""
    return [{"title": title, "truncate": column in TRUNCATED_COLUMNS,
             **({"align": "right"} if column in NUMERIC_COLUMNS else {})} for column, title in TABLE_COLUMNS]


def table_rows(records: Any) -> list[dict[str, Any]]:
    """One table row per model row of ``session.model_rows`` (plain dicts, no pandas), custom
    models first (then as listed); only custom rows open."""
    records = list(records or [])
    records.sort(key=lambda r: 0 if r.get("type") == "custom" else 1)   # stable: keeps the list order
    rows = []
    for record in records:
        kind = str(record.get("type", ""))
        ref = str(record.get("ref", ""))
        row: dict[str, Any] = {"cells": [_cell(col, record.get(col)) for col, _ in TABLE_COLUMNS],
                               "ref": ref, "css": f"byok-row-{kind}"}
        if kind == "custom":
            row.update(open=ref, hint=f"{OPEN_HINT} of {record.get('label') or ref}")
        rows.append(row)
    return rows


def saved_message(model: Any) -> str:
    """What the page says after Add: a re-added deleted slug says it was reactivated —
    its record is the old one (created earlier), every field overwritten by this dialog."""
    created, updated = getattr(model, "created_at", None), getattr(model, "updated_at", None)
    if created is not None and updated is not None and created < updated:
        return (f"Reactivated model '{model.slug}' (it had been deleted); its settings are the ones "
                f"you just saved.")
    return f"Saved model '{model.slug}'."


class ModelsPage(widgets.VBox):
    """The Models page.

    >>> ModelsPage(session)                                                         # doctest: +SKIP

    ``on_open(slug)`` is called when a custom model is clicked; without it the page opens the
    detail page inside itself. ``on_add`` replaces the built-in Add Custom Model dialog.
    ``look`` shares layout and style models with the page's host (the admin app).
    """

    def __init__(self, session: Any, on_open: Callable[[str], Any] | None = None,
                 on_add: Callable[[], Any] | None = None, *, look: SharedLook | None = None) -> None:
        look = look or SharedLook()
        self.session = session
        self.on_open = on_open
        self.on_add = on_add
        self.is_admin = is_org_admin(session)
        self.title = look(widgets.HTML, "<h2>Models</h2>")
        self.type_filter = look(widgets.ToggleButtons, options=TYPE_FILTER_OPTIONS, value="all")
        self.type_filter.add_class("byok-type-filter")
        self.type_filter.observe(self._on_filter, names="value")
        self.refresh_button = look(widgets.Button, description="Refresh")
        self.refresh_button.add_class("byok-refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        controls: list[widgets.Widget] = [self.type_filter, self.refresh_button]
        self.add_button: widgets.Button | None = None
        if self.is_admin:
            # No icon: its glyph would become part of the button's accessible name (U-10).
            self.add_button = look(widgets.Button, description=MESSAGES["add_title"], button_style="primary")
            self.add_button.add_class("byok-add-model")
            self.add_button.on_click(self._on_add)
            controls.append(self.add_button)
        self.message = look(widgets.HTML)
        self.message.add_class("byok-status")
        # The inner <table> keeps the class the F-5 benchmark waits for.
        self.table = look(RowTable, columns=table_columns(), caption=TABLE_CAPTION, empty_text="No models.",
                              table_class="byok-models-table-html")
        self.table.add_class("byok-models-table")
        self.table.on_open(self._open)
        # The Add dialog and the in-page detail area are built when first needed: most visits
        # never open them, and every widget is a model the browser has to create.
        self.dialog_area: widgets.VBox | None = None
        self.detail_area: widgets.VBox | None = None
        self.dialog: AddModelDialog | None = None
        super().__init__(children=[self.title, look(widgets.HBox, controls), self.message, self.table],
                         layout=look.layout)
        self.add_class("byok-models-page")
        self.refresh()

    # -- table -----------------------------------------------------------------------------------
    @guarded("message", where="Models table")
    def refresh(self) -> None:
        """Re-read the models for the current type filter and re-render."""
        self.table.rows = table_rows(self.session.model_rows(type=self.type_filter.value))

    def _on_filter(self, change: Any) -> None:
        self.refresh()

    def custom_refs(self) -> list[str]:
        """The slugs of the custom model rows on screen (the rows that open), in table order."""
        return self.table.openable()

    def open_model(self, slug: str) -> None:
        """What clicking the row of ``slug`` does."""
        self.table.open_row(slug)

    # -- actions ---------------------------------------------------------------------------------
    @guarded("message", where="Open model")
    def _open(self, slug: str) -> None:
        if self.on_open is not None:
            self.on_open(slug)
            return
        from .detail_page import DetailPage

        self._area("detail_area").children = [DetailPage(self.session, slug, on_back=self._close_detail,
                                                on_deleted=lambda r: self._after_change(
                                                    f"Deleted '{r.slug}'."),
                                                on_changed=lambda _m: self.refresh())]

    def _area(self, name: str) -> widgets.VBox:
        """The dialog area (above the table) or the detail area (below it), built on first use."""
        area = getattr(self, name)
        if area is None:
            area = widgets.VBox()
            area.add_class("byok-" + name.replace("_", "-"))
            setattr(self, name, area)
            children = list(self.children)
            at = children.index(self.table)
            children.insert(at if name == "dialog_area" else at + 1, area)
            self.children = children
        return area

    def _close_detail(self) -> None:
        if self.detail_area is not None:
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
        if self.dialog is None:
            self.dialog = AddModelDialog(self.session, on_saved=self._on_saved,
                                         on_cancel=self.close_add_dialog)
        self._area("dialog_area").children = [self.dialog]
        return self.dialog

    def close_add_dialog(self) -> None:
        self.dialog = None
        if self.dialog_area is not None:
            self.dialog_area.children = []

    def _on_saved(self, model: Any) -> None:
        self.close_add_dialog()
        set_message(self.message, saved_message(model), OK_STYLE)
        self.refresh()   # W-3: it shows up at once

    def _after_change(self, text: str = "") -> None:
        self._close_detail()
        self.refresh()
        if text:
            set_message(self.message, text, OK_STYLE)
