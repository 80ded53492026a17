"""The Add Custom Model dialog: thin ipywidgets bound to :class:`~byok_nb.ui.forms.AddModelForm`.

The widgets only build children and ``link`` them to the form model; visibility, gating,
slug derivation and warnings are decided in ``forms.py``.

Secrets: API keys and secret access keys are typed into ``widgets.Password`` inputs that are
*not* linked to the form: what is typed is copied into the form as it is typed (so emptying the
box drops the key), and when Test Connection or Save Model is clicked the Password's value is
cleared at once, so saving the notebook's widget state never writes it; the input then shows
"(entered and hidden; type to replace)" and a "Clear typed key" button drops the held key.

Every input is named by its label (ipywidgets renders ``description`` as a ``<label for=...>``);
each field has an error line under it (role ``alert``) and messages carry role ``status`` or
``alert``.

Test Connection runs off the kernel's main thread inside a kernel, so the dialog shows
"Testing… N s" while the provider answers and a second click is ignored rather than queued.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from traitlets import Unicode

from ..core.domain import ConnectionTest
from ..core.errors import RegistryError
from .errors import (
    ERROR_STYLE,
    OK_STYLE,
    WARNING_STYLE,
    guarded,
    log_unexpected,
    set_message,
    short_message,
    styled,
)
from .forms import (
    AUTH_METHOD_OPTIONS,
    FIELD_ORDER,
    MESSAGES,
    PROVIDER_OPTIONS,
    SECRET_FIELDS,
    AddModelForm,
    _ModelForm,
)

DESCRIPTION_STYLE = {"description_width": "210px"}
FIELD_LAYOUT = {"width": "640px"}
CHECKBOX_FIELDS = ("supports_json_mode", "supports_vision", "supports_tool_use", "supports_reasoning",
                   "remove_api_key")
NOTICE_STYLE = "color:#5c4400"


def css_class(field: str) -> str:
    """The stable CSS class of a field's widget: ``byok-`` + the field name with dashes
    (``api_key`` -> ``byok-api-key``, ``supports_json_mode`` -> ``byok-supports-json-mode``)."""
    return "byok-" + field.replace("_", "-")


class SecretInput(widgets.Password):
    """A Password input whose typed value is never sent back to the frontends.

    ipywidgets 8 answers every value a frontend sends with an ``echo_update`` message carrying
    that value on the kernel's iopub channel, which every client of the kernel receives (other
    tabs, consoles, collaborators); ``echo_update=False`` turns that off for the secret, as
    ipywidgets does for ``FileUpload.value``. The value still reaches the kernel normally.
    """

    value = Unicode(help="String value").tag(sync=True, echo_update=False)


def _hidden(widget: widgets.Widget, hidden: bool) -> None:
    widget.layout.display = "none" if hidden else None


class ModelFormView(widgets.VBox):
    """One widget per form field, linked to an add or edit form model.

    ``read_only`` fields (provider and slug in Edit mode) are shown disabled and only follow
    the model (``dlink``).
    """

    def __init__(self, form: _ModelForm, read_only: tuple[str, ...] = (), **kwargs: Any) -> None:
        self.form = form
        self.read_only = read_only
        self.fields: dict[str, widgets.Widget] = {}
        self.errors: dict[str, widgets.HTML] = {}
        self.rows: dict[str, widgets.Widget] = {}
        self.clear_buttons: dict[str, widgets.Button] = {}
        self._links: list[Any] = []
        self._quiet = False      # True while the view itself empties a Password box
        for name in FIELD_ORDER:
            if name == "reuse_credentials_from" and not form.has_trait("reuse_options"):
                continue
            if name == "remove_api_key" and not form.has_trait("remove_api_key"):
                continue
            self.fields[name] = self._build(name)
            self.rows[name] = self._row(name)
        super().__init__(children=list(self.rows.values()), **kwargs)
        self.add_class("byok-model-form")
        form.observe(self._on_layout, names=["visible_fields", "provider"])
        form.observe(self._on_disabled, names=["disabled_fields"])
        form.observe(self._on_errors, names=["field_errors"])
        for name in SECRET_FIELDS:
            form.observe(self._on_secret, names=[name])
            self.fields[name].observe(self._on_secret_typed, names=["value"])
        if "reuse_credentials_from" in self.fields:
            form.observe(self._on_reuse_options, names=["reuse_options"])
        if form.has_trait("remove_api_key"):
            form.observe(self._on_secret, names=["remove_api_key"])
        if "slug" not in read_only:
            self.fields["slug"].observe(self._sync_slug_back, names=["value"])
        self._on_layout()
        self._on_disabled()
        self._on_errors()

    def _row(self, name: str) -> widgets.Widget:
        """The field's input, (for secrets) its Clear button, and its error line under it."""
        # Indented to sit under the input, past the label column (DESCRIPTION_STYLE).
        error = widgets.HTML(layout=widgets.Layout(margin="0 0 4px 218px"))
        error.add_class("byok-field-error")
        error.add_class(f"byok-error-{name.replace('_', '-')}")
        self.errors[name] = error
        top: widgets.Widget = self.fields[name]
        if name in SECRET_FIELDS:
            clear = widgets.Button(description=MESSAGES["clear_secret"],
                                   layout=widgets.Layout(width="auto"))
            clear.add_class(f"byok-clear-{name.replace('_', '-')}")
            clear.on_click(lambda _b, name=name: self.forget_secret(name))
            self.clear_buttons[name] = clear
            top = widgets.HBox([self.fields[name], clear])
        row = widgets.VBox([top, error])
        row.add_class("byok-field-row")
        return row

    # -- building --------------------------------------------------------------------------------
    def _build(self, name: str) -> widgets.Widget:
        form = self.form
        common = {"description": form.label(name), "style": DESCRIPTION_STYLE,
                  "layout": widgets.Layout(**FIELD_LAYOUT)}
        if name == "provider":
            w: widgets.Widget = widgets.Dropdown(options=PROVIDER_OPTIONS, value=form.provider, **common)
        elif name == "auth_method":
            w = widgets.Dropdown(options=AUTH_METHOD_OPTIONS, value=form.auth_method, **common)
        elif name == "reuse_credentials_from":
            w = widgets.Dropdown(options=self._reuse_choices(), value=form.reuse_credentials_from, **common)
        elif name in SECRET_FIELDS:
            # Not linked: the value travels to the form only on submit (see submit_secrets).
            w = SecretInput(value="", placeholder=form.placeholder(name), **common)
        elif name in CHECKBOX_FIELDS:
            # indent=True lines the box up with the text inputs above (same description width).
            w = widgets.Checkbox(value=getattr(form, name), description=form.label(name), indent=True,
                                 style=DESCRIPTION_STYLE, layout=widgets.Layout(**FIELD_LAYOUT))
        elif name == "max_tokens":
            # IntText, not BoundedIntText: M-7 says never clamp; the registry refuses values < 1.
            w = widgets.IntText(value=form.max_tokens, **common)
        else:
            w = widgets.Text(value=getattr(form, name), placeholder=form.placeholder(name),
                             continuous_update=True, **common)
        w.add_class(css_class(name))
        if name not in SECRET_FIELDS:
            if name in self.read_only:
                w.disabled = True
                self._links.append(widgets.dlink((form, name), (w, "value")))
            else:
                self._links.append(widgets.link((form, name), (w, "value")))
        return w

    def _reuse_choices(self) -> list[tuple[str, str]]:
        return [(MESSAGES["no_reuse"], ""), *[tuple(o) for o in getattr(self.form, "reuse_options", [])]]

    # -- following the model ---------------------------------------------------------------------
    def _on_layout(self, change: Any = None) -> None:
        visible = set(self.form.visible_fields)
        for name, row in self.rows.items():
            _hidden(row, name not in visible)
            _hidden(self.fields[name], name not in visible)
        self.fields["api_key"].description = self.form.label("api_key")
        self._refresh_placeholders()
        self._on_errors()

    def _on_disabled(self, change: Any = None) -> None:
        disabled = set(self.form.disabled_fields)
        for name, w in self.fields.items():
            if name in self.read_only:
                continue
            if name in SECRET_FIELDS or name in ("base_url", "aws_access_key_id"):
                w.disabled = name in disabled
                if name in disabled and name in SECRET_FIELDS:
                    w.value = ""
        self._refresh_placeholders()

    def _on_secret(self, change: Any = None) -> None:
        """The form dropped a secret (provider change, Cancel, save): empty its box too."""
        if change is not None and change.get("name") in SECRET_FIELDS and change.get("new") is None:
            w = self.fields[change["name"]]
            if w.value:
                self._quiet = True
                try:
                    w.value = ""
                finally:
                    self._quiet = False
        self._refresh_placeholders()

    def _on_secret_typed(self, change: Any) -> None:
        """What is typed reaches the form as it is typed; emptying the box drops the key."""
        if self._quiet:
            return
        name = next(n for n in SECRET_FIELDS if self.fields[n] is change["owner"])
        if name in self.form.disabled_fields:
            return
        setattr(self.form, name, change["new"] or None)

    def _sync_slug_back(self, change: Any) -> None:
        """Emptying the slug box re-derives it in the form; the link does not echo a change made
        while it is busy updating, so the derived slug is pushed back to the box here."""
        if self.fields["slug"].value != self.form.slug:
            self.fields["slug"].value = self.form.slug

    def forget_secret(self, name: str) -> None:
        """"Clear typed key": the form forgets a key typed in this dialog (the box is already empty)."""
        setattr(self.form, name, None)

    def _on_errors(self, change: Any = None) -> None:
        errors = self.form.field_errors
        visible = set(self.form.visible_fields)
        for name, w in self.errors.items():
            text = errors.get(name, "") if name in visible else ""
            w.value = styled(text, ERROR_STYLE, "byok-field-error-text")
            _hidden(w, not text)

    def _on_reuse_options(self, change: Any = None) -> None:
        w = self.fields["reuse_credentials_from"]
        # Setting options resets the value to the first choice (and, through the link, the
        # model's); restore the choice the model kept.
        keep = self.form.reuse_credentials_from
        w.options = self._reuse_choices()
        w.value = keep

    def _refresh_placeholders(self) -> None:
        for name, w in self.fields.items():
            if hasattr(w, "placeholder"):
                w.placeholder = self.form.placeholder(name)
        for name, button in self.clear_buttons.items():
            # Shown only while the form holds a key that the (emptied) box no longer shows.
            held = getattr(self.form, name) is not None and not self.fields[name].value
            _hidden(button, not held or name in self.form.disabled_fields)

    # -- secrets (C-7) ---------------------------------------------------------------------------
    def submit_secrets(self) -> None:
        """Hand typed secrets to the form and clear the Password widgets right away."""
        for name in SECRET_FIELDS:
            w = self.fields[name]
            if w.value:
                if name not in self.form.disabled_fields:
                    setattr(self.form, name, w.value)
                self._quiet = True
                try:
                    w.value = ""
                finally:
                    self._quiet = False
        self._refresh_placeholders()

    def typed_secrets(self) -> list[str]:
        return [self.fields[n].value for n in SECRET_FIELDS if self.fields[n].value]


class TestResultView(widgets.VBox):
    """Test message (``byok-test-message``), hint and the yellow pricing warning."""

    def __init__(self, form: _ModelForm) -> None:
        self.form = form
        self.message = widgets.HTML()
        self.message.add_class("byok-test-message")
        self.hint = widgets.HTML()
        self.hint.add_class("byok-test-hint")
        self.pricing_warning = widgets.HTML()
        self.pricing_warning.add_class("byok-pricing-warning")
        self.warnings = widgets.HTML()
        self.warnings.add_class("byok-warnings")
        self.stale = widgets.HTML()
        self.stale.add_class("byok-changed-since-test")
        super().__init__(children=[self.warnings, self.message, self.stale, self.hint, self.pricing_warning])
        form.observe(self._render, names=["test_message", "test_ok", "test_hint", "pricing_warning",
                                          "warnings", "testing", "test_elapsed", "stale_notice"])
        self._render()

    def _render(self, change: Any = None) -> None:
        form = self.form
        if form.testing:
            # Visible progress instead of the last outcome, which the running test replaces.
            self.message.value = styled(f"{MESSAGES['testing']} {form.test_elapsed} s", "color:#555",
                                        "byok-testing-text", role="status")
        else:
            style = OK_STYLE if form.test_ok else ERROR_STYLE
            self.message.value = styled(form.test_message, style, "byok-test-message-text")
        self.stale.value = styled(form.stale_notice, NOTICE_STYLE, "byok-changed-since-test-text", role="status")
        self.hint.value = styled(form.test_hint, "color:#555", "byok-test-hint-text")
        self.pricing_warning.value = styled(form.pricing_warning, WARNING_STYLE, "byok-pricing-warning-text")
        self.warnings.value = "".join(
            f"<div>{styled(text, WARNING_STYLE, 'byok-warning-text')}</div>" for text in form.warnings)


def _in_kernel() -> bool:
    """Whether widgets are live in a kernel (a browser can show progress while a test runs)."""
    try:
        from IPython import get_ipython
    except ImportError:   # pragma: no cover - IPython comes with ipywidgets
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class TestRunner:
    """Runs a form's Test off the kernel's main thread (in a kernel) and ticks ``test_elapsed``.

    Outside a kernel (plain Python, the unit tests) it runs in line, so the outcome is there when
    the click handler returns. ``message`` receives an unexpected error's short text."""

    __test__ = False   # not a pytest class

    def __init__(self, form: _ModelForm, message: Any, secrets: Callable[[], list[str]],
                 background: bool | None = None) -> None:
        self.form = form
        self.message = message
        self.secrets = secrets
        self.background = _in_kernel() if background is None else background
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin a test (every field problem shows at once, and nothing is sent)."""
        form = self.form
        if form.testing:
            return      # a second click while a test runs is ignored, not queued
        try:
            call = form.begin_test()
        except Exception as exc:  # FormProblems: shown next to the fields and as the outcome
            if not isinstance(exc, RegistryError):
                raise
            form.finish_test(ConnectionTest(ok=False, message=exc.message, status_code=exc.status_code))
            return
        if not self.background:
            self._run(call)
            return
        self.thread = threading.Thread(target=self._run_ticking, args=(call,), name="byok-test", daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], ConnectionTest]) -> None:
        try:
            result = self.form.call_test(call)
        except BaseException:
            self.form.testing = False
            raise
        self.form.finish_test(result)

    def _run_ticking(self, call: Callable[[], ConnectionTest]) -> None:
        form = self.form
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["result"] = form.call_test(call)
            except Exception as exc:  # noqa: BLE001 — U-7: a short message, details to the log
                log_unexpected(exc, "Test Connection", self.secrets())
                outcome["result"] = ConnectionTest(ok=False, message=short_message(exc))

        worker = threading.Thread(target=work, name="byok-test-call", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
            form.test_elapsed = int(time.monotonic() - form.test_started)
        form.finish_test(outcome["result"])

    def wait(self, timeout: float | None = None) -> None:
        """Block until a background test is over (for notebooks and tests)."""
        if self.thread is not None:
            self.thread.join(timeout)


class AddModelDialog(widgets.VBox):
    """The Add Custom Model dialog.

    >>> dialog = AddModelDialog(session, on_saved=lambda model: print(model.slug))   # doctest: +SKIP
    >>> dialog                                                                        # doctest: +SKIP

    ``dialog.form`` is the :class:`AddModelForm`; ``dialog.view.fields[name]`` the input of a
    field; ``dialog.test_button`` / ``dialog.save_button`` the two actions.
    """

    def __init__(self, session: Any, on_saved: Callable[[Any], Any] | None = None,
                 on_cancel: Callable[[], Any] | None = None, form: AddModelForm | None = None,
                 background: bool | None = None) -> None:
        self.session = session
        self.form = form if form is not None else AddModelForm(session)
        self.on_saved = on_saved
        self.on_cancel = on_cancel
        self.title = widgets.HTML(f"<h3>{MESSAGES['add_title']}</h3>")
        self.view = ModelFormView(self.form)
        self.test_button = widgets.Button(description=MESSAGES["test_connection"])
        self.test_button.add_class("byok-test-connection")
        self.save_button = widgets.Button(description=MESSAGES["save_model"], button_style="primary",
                                          disabled=True)
        self.save_button.add_class("byok-save-model")
        self.cancel_button = widgets.Button(description="Cancel")
        self.cancel_button.add_class("byok-cancel")
        self.result = TestResultView(self.form)
        self.message = widgets.HTML()
        self.message.add_class("byok-dialog-status")
        self.runner = TestRunner(self.form, self.message, self._known_secrets, background)
        # T-6: Save Model follows the form's gate; Test is off while a test or save runs.
        self._links = [
            widgets.dlink((self.form, "can_save"), (self.save_button, "disabled"), transform=lambda ok: not ok),
            widgets.dlink((self.form, "testing"), (self.test_button, "disabled")),
        ]
        self.test_button.on_click(self._on_test)
        self.save_button.on_click(self._on_save)
        self.cancel_button.on_click(self._on_cancel)
        buttons = widgets.HBox([self.test_button, self.save_button, self.cancel_button])
        super().__init__(children=[self.title, self.view, buttons, self.result, self.message])
        self.add_class("byok-add-dialog")
        self.layout.border = "1px solid #ccc"
        self.layout.padding = "8px"

    def _known_secrets(self) -> list[str]:
        return [*self.form.secret_values(), *self.view.typed_secrets()]

    @guarded("message", where="Test Connection")
    def _on_test(self, _button: Any = None) -> None:
        if self.form.testing:
            return      # the button is disabled meanwhile; a click already on its way is ignored
        self.message.value = ""
        self.view.submit_secrets()
        self.runner.start()

    @guarded("message", where="Save Model")
    def _on_save(self, _button: Any = None) -> None:
        self.message.value = ""
        self.view.submit_secrets()
        model = self.form.save()
        set_message(self.message, self.form.status, OK_STYLE)
        if self.on_saved is not None:
            self.on_saved(model)

    @guarded("message", where="Cancel")
    def _on_cancel(self, _button: Any = None) -> None:
        """Cancel discards the draft: typed keys are dropped and the dialog is closed."""
        self.view.submit_secrets()
        self.form.clear_secrets()
        if self.on_cancel is not None:
            self.on_cancel()

    # Convenience for tests and notebooks: label of every visible input.
    def visible_labels(self) -> list[str]:
        return [self.view.fields[n].description for n in self.form.visible_fields]


__all__ = ["AddModelDialog", "ModelFormView", "SecretInput", "TestResultView", "TestRunner", "css_class"]
