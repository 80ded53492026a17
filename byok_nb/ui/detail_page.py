"""A custom model's detail page: masked secret, full Access Key ID, endpoint note,
and for org admins Edit / Test / Probe capabilities / Delete.

Edit mode is :class:`~byok_nb.ui.forms.EditModelForm` behind the same field widgets as the Add
dialog: provider and slug read-only, secret inputs empty with "Leave blank to keep
existing" when a secret is stored (an OpenAI-compatible model's optional key can be removed
with "Remove stored key"), Save never gated on a test. Delete asks first, showing how many active
workflows reference the slug. "Probe capabilities" shows what the provider
accepted — capability, current flag, suggestion, evidence — and never changes a flag: "Apply
suggestions" only fills the suggestions into the Edit form, for the admin to review and Save.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..core.domain import CAPABILITY_FLAGS, PROVIDER_LABELS
from ..providers.capability_probe import NOTE
from ..services import model_rules as rules
from .access import is_org_admin
from .add_dialog import ModelFormView, TestResultView, TestRunner
from .errors import ERROR_STYLE, OK_STYLE, guarded, set_message, styled
from .forms import AUTH_METHOD_LABELS, LABELS, MESSAGES, EditModelForm, label_for


def secret_label(provider: str, auth_method: str | None) -> str:
    """Which secret ``secret_masked`` stands for: Secret Access Key, Bedrock API Key, API Token…"""
    field = rules.secret_field_of(provider, auth_method)
    return label_for(field, provider)


def _row(label: str, value: Any, css: str = "") -> str:
    text = "—" if value is None or value == "" else str(value)
    cls = f' class="{css}"' if css else ""
    return f"<tr{cls}><th style='text-align:left;padding-right:12px'>{html.escape(label)}</th>" \
           f"<td>{html.escape(text)}</td></tr>"


PROBE_LABEL = "Probe capabilities"
APPLY_SUGGESTIONS_LABEL = "Apply suggestions"
APPLIED_MESSAGE = ("Suggestions filled into the Edit form. Review them and press Save to apply; "
                   "nothing has been saved.")


def probe_table_html(result: Any) -> str:
    """The "Probe capabilities" table: capability, current flag, suggested value and evidence, one
    row a flag. Rows whose suggestion differs from the flag have the class ``byok-probe-differs``."""
    def on_off(value: bool | None) -> str:
        return "— (inconclusive)" if value is None else ("On" if value else "Off")

    head = "".join(f"<th style='text-align:left;padding-right:12px'>{html.escape(h)}</th>"
                   for h in ("Capability", "Current flag", "Suggested", "Evidence"))
    rows = []
    for finding in result.findings():
        css = "byok-probe-differs" if finding.differs else "byok-probe-same"
        style = " style='background:#fff8c5'" if finding.differs else ""
        cells = (LABELS.get(finding.flag, finding.flag), on_off(finding.current),
                 on_off(finding.suggested), finding.evidence)
        rows.append(f"<tr class='{css}' data-flag='{html.escape(finding.flag)}'{style}>"
                    + "".join(f"<td style='padding-right:12px;vertical-align:top'>{html.escape(str(c))}</td>"
                              for c in cells) + "</tr>")
    return (f'<table class="byok-probe-table-html"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def model_info_html(model: Any) -> str:
    """The read-only facts of a masked view as an HTML table (no secret: the view has none)."""
    rows = [
        _row(LABELS["provider"], PROVIDER_LABELS.get(model.provider, model.provider)),
        _row(LABELS["slug"], model.slug),
        _row(LABELS["provider_model_id"], model.provider_model_id),
        _row(LABELS["display_name"], model.display_name),
        _row(LABELS["max_tokens"], model.max_tokens),
    ]
    for flag in CAPABILITY_FLAGS:
        rows.append(_row(LABELS[flag], "On" if getattr(model, flag) else "Off"))
    if model.supports_reasoning:
        rows.append(_row(LABELS["reasoning_parameter"], model.reasoning_parameter))
    for field in ("input_cost_per_token", "output_cost_per_token"):
        cost = getattr(model, field)
        rows.append(_row(LABELS[field], rules.format_cost(cost) if cost is not None else "blank (not tracked)"))
    if model.price_source:
        rows.append(_row("Price source", model.price_source))
    if model.provider == "openai_compatible":
        rows.append(_row(LABELS["base_url"], model.base_url))
    if model.provider == "huggingface":
        rows.append(_row(LABELS["endpoint_url"], model.endpoint_url))
    if model.provider == "bedrock":
        rows.append(_row(LABELS["aws_region"], model.aws_region))
        rows.append(_row(LABELS["auth_method"], AUTH_METHOD_LABELS.get(model.auth_method or "", model.auth_method)))
    rows.append(_row("Created", f"{model.created_at:%Y-%m-%d %H:%M} UTC by {model.created_by}"))
    rows.append(_row("Updated", f"{model.updated_at:%Y-%m-%d %H:%M} UTC"))
    return f'<table class="byok-detail-info">{"".join(rows)}</table>'


class DetailPage(widgets.VBox):
    """Detail page of one custom model.

    >>> DetailPage(session, "llama-3-1-8b-internal-v4")                            # doctest: +SKIP

    Callbacks: ``on_back()`` (show the Models page), ``on_deleted(DeleteResult)``,
    ``on_changed(CustomModel)`` after a saved edit.
    """

    def __init__(self, session: Any, slug: str, on_back: Callable[[], Any] | None = None,
                 on_deleted: Callable[[Any], Any] | None = None,
                 on_changed: Callable[[Any], Any] | None = None, background: bool | None = None) -> None:
        self.session = session
        self.background = background
        self.runner: TestRunner | None = None
        self.slug = slug
        self.on_back = on_back
        self.on_deleted = on_deleted
        self.on_changed = on_changed
        self.is_admin = is_org_admin(session)
        self.model: Any = None
        self.form: EditModelForm | None = None
        self.form_view: ModelFormView | None = None
        self.message = widgets.HTML()
        self.message.add_class("byok-detail-status")
        self.back_button = widgets.Button(description="Back to Models")
        self.back_button.add_class("byok-back")
        self.back_button.on_click(self._on_back)
        self.title = widgets.HTML()
        self.info = widgets.HTML()
        self.secret = widgets.HTML()
        self.secret.add_class("byok-secret-masked")
        self.access_key = widgets.HTML()
        self.access_key.add_class("byok-access-key-id")
        self.endpoint_note = widgets.HTML()
        self.endpoint_note.add_class("byok-endpoint-note")
        self.edit_button = self.test_button = self.delete_button = self.probe_button = None
        self.apply_button: widgets.Button | None = None
        self.probe_result: Any = None
        self.probe_area = widgets.VBox()
        self.probe_area.add_class("byok-probe-result")
        self.edit_area = widgets.VBox()
        self.edit_area.add_class("byok-edit-area")
        self.confirm_area = widgets.VBox()
        self.confirm_area.add_class("byok-delete-confirmation")
        self.result_area = widgets.VBox()
        actions: list[widgets.Widget] = []
        if self.is_admin:
            self.edit_button = widgets.Button(description=MESSAGES["edit"])
            self.edit_button.add_class("byok-edit")
            self.test_button = widgets.Button(description=MESSAGES["test"])
            self.test_button.add_class("byok-test")
            self.probe_button = widgets.Button(description=PROBE_LABEL,
                                               tooltip="Try JSON mode, tool use, vision and reasoning "
                                                       "with tiny requests; suggests flags, never sets them")
            self.probe_button.add_class("byok-probe-capabilities")
            self.probe_button.on_click(self._on_probe)
            self.delete_button = widgets.Button(description=MESSAGES["delete"], button_style="danger")
            self.delete_button.add_class("byok-delete")
            self.edit_button.on_click(self._on_edit)
            self.test_button.on_click(self._on_test)
            self.delete_button.on_click(self._on_delete)
            actions = [self.edit_button, self.test_button, self.probe_button, self.delete_button]
        children: list[widgets.Widget] = []
        if on_back is not None:
            children.append(self.back_button)
        children += [self.title, self.info, self.access_key, self.secret, self.endpoint_note,
                     widgets.HBox(actions), self.confirm_area, self.edit_area, self.result_area,
                     self.probe_area, self.message]
        super().__init__(children=children)
        self.add_class("byok-detail")
        self._load()

    # -- showing ---------------------------------------------------------------------------------
    @guarded("message", where="Detail page")
    def _load(self) -> None:
        self.render(self.session.get_model(self.slug))
        if self.is_admin:
            self.form = EditModelForm(self.session, self.slug, view=self.model)
            self.result_area.children = [TestResultView(self.form)]
            self.runner = TestRunner(self.form, self.message, self._known_secrets, self.background)
            if self.test_button is not None:
                # Test is off while it runs; a click already on its way is ignored (TestRunner).
                self._test_link = widgets.dlink((self.form, "testing"), (self.test_button, "disabled"))

    def render(self, model: Any) -> None:
        """Show a masked view: label, facts, masked secret, Access Key ID in full."""
        self.model = model
        self.title.value = f"<h2>{html.escape(model.label)}</h2>"
        self.info.value = model_info_html(model)
        label = secret_label(model.provider, model.auth_method)
        masked = model.secret_masked or "(none stored)"
        self.secret.value = (f"<b>{html.escape(label)}:</b> "
                             f'<code class="byok-secret-masked-text">{html.escape(masked)}</code>')
        if model.provider == "bedrock" and model.auth_method == "iam" and model.aws_access_key_id:
            self.access_key.value = (f"<b>{html.escape(LABELS['aws_access_key_id'])}:</b> "
                                     f"<code>{html.escape(model.aws_access_key_id)}</code>")
            self.access_key.layout.display = None
        else:
            self.access_key.value = ""
            self.access_key.layout.display = "none"
        note = getattr(model, "endpoint_note", None)
        self.endpoint_note.value = (f'<div style="color:#5c4400">{html.escape(note)}</div>' if note else "")

    # -- edit (T-7) ------------------------------------------------------------------------------
    @guarded("message", where="Edit")
    def _on_edit(self, _button: Any = None) -> None:
        if self.form is None:
            return
        self.message.value = ""
        if self.edit_area.children:       # Edit toggles the form
            self._close_edit()
            return
        self.form.load(self.model)
        self.form_view = ModelFormView(self.form, read_only=("provider", "slug"))
        self.save_button = widgets.Button(description="Save", button_style="primary")
        self.save_button.add_class("byok-save-edit")
        self.cancel_button = widgets.Button(description="Cancel")
        self.cancel_button.add_class("byok-cancel-edit")
        # T-7: only a running save disables Save; a test never gates it.
        self._save_link = widgets.dlink((self.form, "can_save"), (self.save_button, "disabled"),
                                        transform=lambda ok: not ok)
        self.save_button.on_click(self._on_save)
        self.cancel_button.on_click(self._on_cancel_edit)
        self.edit_area.children = [self.form_view, widgets.HBox([self.save_button, self.cancel_button])]

    def _close_edit(self) -> None:
        view = getattr(self, "form_view", None)
        if view is not None:
            view.submit_secrets()
        if self.form is not None:
            self.form.clear_secrets()
        self.edit_area.children = []
        self.form_view = None

    def _known_secrets(self) -> list[str]:
        out = self.form.secret_values() if self.form is not None else []
        view = getattr(self, "form_view", None)
        return out + (view.typed_secrets() if view is not None else [])

    @guarded("message", where="Save")
    def _on_save(self, _button: Any = None) -> None:
        assert self.form is not None
        self.message.value = ""
        if getattr(self, "form_view", None) is not None:
            self.form_view.submit_secrets()
        model = self.form.save()
        self.render(model)
        self._close_edit()
        set_message(self.message, self.form.status, OK_STYLE)
        if self.on_changed is not None:
            self.on_changed(model)

    @guarded("message", where="Cancel")
    def _on_cancel_edit(self, _button: Any = None) -> None:
        self._close_edit()
        if self.form is not None:
            self.form.load(self.model)

    # -- test (T-5) ------------------------------------------------------------------------------
    @guarded("message", where="Test")
    def _on_test(self, _button: Any = None) -> None:
        assert self.form is not None and self.runner is not None
        if self.form.testing:
            return
        self.message.value = ""
        if getattr(self, "form_view", None) is not None:
            self.form_view.submit_secrets()
        self.runner.start()

    # -- probe capabilities (U-9) ---------------------------------------------------------------
    @guarded("message", where="Probe capabilities")
    def _on_probe(self, _button: Any = None) -> None:
        """Probe the model as the form holds it (edited values on top of the stored ones, like
        Test) and show the findings. Flags are not changed."""
        assert self.form is not None
        self.message.value = ""
        self.probe_area.children = []
        if getattr(self, "form_view", None) is not None:
            self.form_view.submit_secrets()
        result = self.session.probe_capabilities(self.slug, **self.form.changes())
        self.probe_result = result
        summary = widgets.HTML(styled(result.message, OK_STYLE if result.ok else ERROR_STYLE,
                                      "byok-probe-message"))
        table = widgets.HTML(probe_table_html(result))
        table.add_class("byok-probe-table")
        note = widgets.HTML(f"<i>{html.escape(NOTE)}</i>")
        note.add_class("byok-probe-note")
        children: list[widgets.Widget] = [summary, table, note]
        self.apply_button = None
        if result.suggested_changes():
            self.apply_button = widgets.Button(description=APPLY_SUGGESTIONS_LABEL,
                                               tooltip="Fill the suggestions into the Edit form "
                                                       "(nothing is saved)")
            self.apply_button.add_class("byok-apply-suggestions")
            self.apply_button.on_click(self._on_apply_suggestions)
            children.append(self.apply_button)
        self.probe_area.children = children

    @guarded("message", where="Apply suggestions")
    def _on_apply_suggestions(self, _button: Any = None) -> None:
        """Open Edit (if closed) with the suggested flags filled in; never saves."""
        if self.form is None or self.probe_result is None:
            return
        if not self.edit_area.children:
            self._on_edit()
        for flag, value in self.probe_result.suggested_changes().items():
            setattr(self.form, flag, value)
        set_message(self.message, APPLIED_MESSAGE, OK_STYLE)

    # -- delete (M-11) ---------------------------------------------------------------------------
    @guarded("message", where="Delete")
    def _on_delete(self, _button: Any = None) -> None:
        self.message.value = ""
        count = self.session.referencing_workflows(self.slug)
        noun = "workflow references" if count == 1 else "workflows reference"
        text = (f"Delete '{self.model.label}' ({self.slug})? {count} active {noun} this slug"
                + ("; they will fail to generate until another model is assigned." if count else "."))
        question = widgets.HTML(f"<span>{html.escape(text)}</span>")
        question.add_class("byok-delete-question")
        confirm = widgets.Button(description="Confirm Delete", button_style="danger")
        confirm.add_class("byok-confirm-delete")
        cancel = widgets.Button(description="Cancel")
        cancel.add_class("byok-cancel-delete")
        confirm.on_click(self._on_confirm_delete)
        cancel.on_click(lambda _b: setattr(self.confirm_area, "children", []))
        self.pending_count = count
        self.confirm_area.children = [question, widgets.HBox([confirm, cancel])]

    @guarded("message", where="Delete")
    def _on_confirm_delete(self, _button: Any = None) -> None:
        result = self.session.delete_model(self.slug)
        self.confirm_area.children = []
        self._close_edit()
        for button in (self.edit_button, self.test_button, self.probe_button, self.delete_button,
                       self.apply_button):
            if button is not None:
                button.disabled = True
        n = result.referencing_workflows
        set_message(self.message, f"Deleted '{self.slug}'. {n} active workflow"
                    f"{'' if n == 1 else 's'} still reference it.", OK_STYLE)
        if self.on_deleted is not None:
            self.on_deleted(result)

    @guarded("message", where="Back")
    def _on_back(self, _button: Any = None) -> None:
        self._close_edit()
        if self.on_back is not None:
            self.on_back()
