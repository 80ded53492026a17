"""The workflow model picker: models a field may use, grouped Platform / Custom, and the
ones it may not use with the reason (``why_hidden``), so an empty group explains itself.

Which models qualify is decided by ``session.picker(workflow, field, include_hidden=True)``
(:mod:`byok_nb.services.workflows`); this widget only shows the answer and calls ``assign_model``.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from traitlets import Unicode, observe

from .errors import OK_STYLE, guarded, set_message

GROUPS = ("Platform", "Custom")
EMPTY_GROUP = {
    "Platform": "No platform model has what this field needs.",
    "Custom": "No custom model has what this field needs.",
}


def split_entries(groups: dict[str, list[Any]]) -> tuple[dict[str, list[Any]], list[tuple[str, Any]]]:
    """(shown entries per group, [(group, hidden entry), ...]) from a picker answer."""
    shown: dict[str, list[Any]] = {g: [] for g in GROUPS}
    hidden: list[tuple[str, Any]] = []
    for group in GROUPS:
        for entry in groups.get(group, []) or []:
            if getattr(entry, "why_hidden", None):
                hidden.append((group, entry))
            else:
                shown[group].append(entry)
    return shown, hidden


def _option_label(entry: Any) -> str:
    label, ref = str(entry.label), str(entry.ref)
    return label if label == ref else f"{label} ({ref})"


class PickerWidget(widgets.VBox):
    """Pick the model of one LLM field of a workflow.

    >>> PickerWidget(session, "support-triage", "reply")                          # doctest: +SKIP

    ``value`` is the chosen reference (platform id or custom slug) or None; ``Assign`` stores it on
    the field through ``session.assign_model``. ``on_select(ref)`` is called on each choice,
    ``on_assigned(workflow)`` after a successful Assign (with what ``assign_model`` returned).
    ``workflow_label`` is how the title names the workflow (default: ``workflow`` itself).
    """

    value = Unicode(None, allow_none=True)

    def __init__(self, session: Any, workflow: Any, field: str,
                 on_select: Callable[[str | None], Any] | None = None, assign: bool = True,
                 on_assigned: Callable[[Any], Any] | None = None, workflow_label: str | None = None) -> None:
        self.session = session
        self.workflow = workflow
        self.field = field
        self.on_select = on_select
        self.on_assigned = on_assigned
        self.groups: dict[str, list[Any]] = {g: [] for g in GROUPS}
        self.hidden: list[tuple[str, Any]] = []
        self._syncing = False
        shown_workflow = workflow_label if workflow_label is not None else str(workflow)
        self.title = widgets.HTML(f"<h3>Model for field <code>{html.escape(str(field))}</code> of "
                                  f"workflow <code>{html.escape(shown_workflow)}</code></h3>")
        self.headers = {g: widgets.HTML(f"<h4 style='margin:6px 0 2px'>{g}</h4>") for g in GROUPS}
        self.choices = {g: widgets.RadioButtons(options=[], index=None, layout=widgets.Layout(width="auto"))
                        for g in GROUPS}
        self.empty_notes = {g: widgets.HTML() for g in GROUPS}
        sections: list[widgets.Widget] = []
        for g in GROUPS:
            self.headers[g].add_class(f"byok-picker-group-{g.lower()}")
            self.choices[g].add_class(f"byok-picker-{g.lower()}")
            self.empty_notes[g].add_class("byok-picker-empty")
            self.choices[g].observe(lambda change, g=g: self._on_choice(g, change), names="value")
            sections += [self.headers[g], self.choices[g], self.empty_notes[g]]
        self.hidden_view = widgets.HTML()
        self.hidden_view.add_class("byok-picker-hidden")
        self.message = widgets.HTML()
        self.message.add_class("byok-picker-status")
        self.assign_button: widgets.Button | None = None
        footer: list[widgets.Widget] = []
        if assign:
            self.assign_button = widgets.Button(description="Assign", button_style="primary", disabled=True,
                                                layout=widgets.Layout(width="auto"))
            self.assign_button.add_class("byok-picker-assign")
            self.assign_button.on_click(self._on_assign)
            footer.append(self.assign_button)
        super().__init__(children=[self.title, *sections, self.hidden_view, widgets.HBox(footer), self.message])
        self.add_class("byok-picker")
        self.refresh()

    @guarded("message", where="Picker")
    def refresh(self) -> None:
        """Ask the session again (after models were added, deleted or edited)."""
        try:
            answer = self.session.picker(self.workflow, self.field, include_hidden=True)
        except TypeError:   # a picker without include_hidden: only the shown models
            answer = self.session.picker(self.workflow, self.field)
        self.groups, self.hidden = split_entries(answer)
        current = self.value or self._current_assignment()
        self._syncing = True
        try:
            for g in GROUPS:
                entries = self.groups[g]
                self.choices[g].options = [(_option_label(e), str(e.ref)) for e in entries]
                self.choices[g].index = None
                self.choices[g].layout.display = None if entries else "none"
                self.empty_notes[g].value = (
                    f'<i style="color:#666">{html.escape(EMPTY_GROUP[g])}'
                    f'{" See why below." if any(h[0] == g for h in self.hidden) else ""}</i>'
                    if not entries else "")
        finally:
            self._syncing = False
        self.hidden_view.value = self._hidden_html()
        refs = {str(e.ref) for g in GROUPS for e in self.groups[g]}
        self.value = current if current in refs else None
        self._show_value()

    def _current_assignment(self) -> str | None:
        try:
            wf = self.session.get_workflow(self.workflow)
            return next((f.model for f in wf.fields if f.name == self.field), None)
        except Exception:  # noqa: BLE001 — preselection is a nicety; a fake session has no store
            return None

    def _hidden_html(self) -> str:
        if not self.hidden:
            return ""
        items = "".join(
            f"<li>{html.escape(_option_label(e))} <span style='color:#666'>({g})</span> — "
            f"{html.escape(str(e.why_hidden))}</li>" for g, e in self.hidden)
        return f"<details><summary>Hidden models ({len(self.hidden)})</summary><ul>{items}</ul></details>"

    # -- choosing --------------------------------------------------------------------------------
    def _on_choice(self, group: str, change: dict[str, Any]) -> None:
        if self._syncing or change["new"] is None:
            return
        self.value = change["new"]

    @observe("value")
    def _on_value(self, change: dict[str, Any]) -> None:
        self._show_value()
        if self.on_select is not None and not self._syncing:
            try:
                self.on_select(self.value)
            except Exception as exc:  # noqa: BLE001 — U-7
                from .errors import show_error
                show_error(self.message, exc, "picker on_select")

    def _show_value(self) -> None:
        self._syncing = True
        try:
            for g in GROUPS:
                refs = [ref for _, ref in self.choices[g].options]
                self.choices[g].value = self.value if self.value in refs else None
        finally:
            self._syncing = False
        if self.assign_button is not None:
            self.assign_button.disabled = self.value is None

    @guarded("message", where="Assign")
    def _on_assign(self, _button: Any = None) -> None:
        if self.value is None:
            return
        result = self.session.assign_model(self.workflow, self.field, self.value)
        set_message(self.message, f"Assigned '{self.value}' to field '{self.field}'.", OK_STYLE)
        if self.on_assigned is not None:
            self.on_assigned(result)
