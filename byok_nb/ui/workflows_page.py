"""The Workflows page: a project's workflows, their LLM fields with what each
needs and the model it uses, and — for the field picked — the model picker with its Platform and
Custom groups, the models it hides and why, and Assign.

Workflows and their fields are defined in code (``create_workflow``); this page is where a member
sees them and picks their models. Who may assign is the registry's rule (an Org Admin, or a
Project Admin / Contributor of the workflow's project): anyone else gets its refusal as a message.
"""
from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from ..services.workflows import CAPABILITY_LABELS, field_needs
from .errors import guarded, set_message
from .picker import PickerWidget
from .row_table import RowTable

ALL_PROJECTS = "All projects"
NO_WORKFLOWS = "No workflows in this organization yet."
NOT_ASSIGNED = "not assigned"
FIELD_COLUMNS = [{"title": "LLM field"}, {"title": "Needs"}, {"title": "Model", "truncate": True}]
PICK_HINT = "Choose a field (click its row, or press Enter on it) to pick its model."


def needs_text(field: Any) -> str:
    """What an LLM field needs of its model, in the toggles' words."""
    needs = field_needs(field)
    return "; ".join(f"{CAPABILITY_LABELS[flag]} ({why})" for flag, why in needs) or "no special capability"


def workflow_label(workflow: Any) -> str:
    return f"{workflow.project} / {workflow.name}" + ("" if workflow.active else " (inactive)")


class WorkflowsPage(widgets.VBox):
    """Workflows of the org by project, their LLM fields, and the picker of one field.

    >>> WorkflowsPage(session)                                                     # doctest: +SKIP

    ``page.select(workflow_name, field)`` does what choosing them on the page does.
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.workflows: list[Any] = []
        self.picker: PickerWidget | None = None
        self.title = widgets.HTML("<h2>Workflows</h2>")
        self.message = widgets.HTML()
        self.message.add_class("byok-workflows-status")
        style = {"description_width": "initial"}
        self.project = widgets.Dropdown(description="Project", options=[ALL_PROJECTS], style=style)
        self.project.add_class("byok-workflow-project")
        self.workflow = widgets.Dropdown(description="Workflow", options=[], style=style,
                                         layout=widgets.Layout(width="auto", min_width="22em"))
        self.workflow.add_class("byok-workflow-select")
        self.fields = RowTable(columns=FIELD_COLUMNS, caption="LLM fields", empty_text="No LLM fields.")
        self.fields.add_class("byok-workflow-fields")
        self.fields.on_open(self._on_field)
        self.hint = widgets.HTML(f'<span style="color:#444">{PICK_HINT}</span>')
        self.hint.add_class("byok-workflow-hint")
        self.picker_area = widgets.VBox()
        self.picker_area.add_class("byok-picker-area")
        self.project.observe(lambda _c: self._on_project(), names="value")
        self.workflow.observe(lambda _c: self._on_workflow(), names="value")
        super().__init__(children=[self.title, widgets.HBox([self.project, self.workflow]), self.message,
                                   self.fields, self.hint, self.picker_area])
        self.add_class("byok-workflows-page")
        self.refresh()

    # -- loading ---------------------------------------------------------------------------------
    @guarded("message", where="Workflows")
    def refresh(self) -> None:
        """Re-read the org's workflows, keeping the project, workflow and field on screen."""
        self.message.value = ""
        self.workflows = self.session.list_workflows()
        projects = sorted({w.project for w in self.workflows})
        keep = self.project.value
        self.project.options = [ALL_PROJECTS, *projects]
        self.project.value = keep if keep in self.project.options else ALL_PROJECTS
        self._on_project()
        if not self.workflows:
            set_message(self.message, NO_WORKFLOWS, "color:#444")

    def _shown_workflows(self) -> list[Any]:
        project = self.project.value
        return [w for w in self.workflows if project in (ALL_PROJECTS, w.project)]

    def _current(self) -> Any:
        return next((w for w in self.workflows if w.id == self.workflow.value), None)

    def _on_project(self) -> None:
        keep = self.workflow.value
        shown = self._shown_workflows()
        self.workflow.options = [(workflow_label(w), w.id) for w in shown]
        ids = [w.id for w in shown]
        self.workflow.value = keep if keep in ids else (ids[0] if ids else None)
        self._on_workflow()

    @guarded("message", where="Workflow")
    def _on_workflow(self) -> None:
        wf = self._current()
        self.fields.rows = [] if wf is None else [
            {"cells": [f.name, needs_text(f), f.model or NOT_ASSIGNED], "ref": f.name, "open": f.name,
             "hint": f"Pick the model of {f.name}", "css": "byok-workflow-field"} for f in wf.fields]
        self.fields.layout.display = None if wf is not None else "none"
        self.hint.layout.display = None if wf is not None and wf.fields else "none"
        picked = self.picker.field if self.picker is not None else None
        self.picker = None
        self.picker_area.children = []
        if wf is not None and picked in {f.name for f in wf.fields}:
            self._on_field(picked)

    # -- one field's picker (U-4) ----------------------------------------------------------------
    @guarded("message", where="Picker")
    def _on_field(self, field: str) -> None:
        wf = self._current()
        if wf is None:
            return
        self.picker = PickerWidget(self.session, wf.id, field, on_assigned=self._on_assigned,
                                   workflow_label=f"{wf.project} / {wf.name}")
        self.picker_area.children = [self.picker]

    def _on_assigned(self, _workflow: Any) -> None:
        """After Assign: the fields table shows the new model (re-read; the workflow stores the slug)."""
        picker = self.picker
        self.refresh()
        if picker is not None and self.picker is not None:
            self.picker.message.value = picker.message.value

    def select(self, workflow: str, field: str | None = None) -> None:
        """Choose ``workflow`` (its name, or ``project/name``) and optionally one of its fields."""
        wf = next(w for w in self.workflows if workflow in (w.name, f"{w.project}/{w.name}"))
        self.project.value = ALL_PROJECTS
        self.workflow.value = wf.id
        if field is not None:
            self.fields.open_row(field)
