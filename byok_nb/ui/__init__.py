"""Notebook widgets and the Voila admin app.

Entry points (stable; the Voila notebooks and browser tests import these)::
    from byok_nb.ui import AdminApp, AddModelDialog, ModelsPage, DetailPage, PickerWidget, AnalyticsView
    AdminApp(session)                       # Models / detail / Workflows / Analytics with navigation
    AddModelDialog(session, on_saved=None)  # the Add Custom Model dialog
    ModelsPage(session, on_open=None)       # the Models table with the type filter
    DetailPage(session, slug)               # masked secret, Edit / Test / Delete
    PickerWidget(session, workflow, field)  # grouped Platform / Custom picker
    WorkflowsPage(session)                  # workflows, their LLM fields, picker and Assign
    AnalyticsView(session)                  # cost tables, charts, estimate

    from byok_nb.ui.forms import AddModelForm, EditModelForm   # the pure-Python form models

Layering: ``forms.py`` holds state and rules with traitlets and imports no widgets; the other
modules are thin ipywidgets views bound to it (``link`` / ``observe``). Importing this package is
cheap: every name loads its module (and ipywidgets) on first use.

Stable CSS classes (``widget.add_class``), for browser tests:

=================================  ==============================================================
``byok-app``                       AdminApp; ``byok-header`` product name and ``byok-whoami``
                                   "Signed in as user · org · role"; ``byok-nav`` its Models /
                                   Workflows / Analytics toggle, ``byok-app-status``;
                                   ``byok-not-a-member`` on the app of a non-member (one message)
messages                           every status line's text is a span with role ``status``
                                   (errors: ``alert``)
``byok-models-page``               Models page; ``byok-status`` its (only) status line
``byok-type-filter``               All / Platform / Custom toggle
``byok-models-table``              the table (a ``RowTable``: inner ``table.byok-row-table
                                   .byok-models-table-html``,
                                   custom models first, rows ``tr.byok-row-custom`` /
                                   ``tr.byok-row-platform`` with ``data-ref``; a custom row is
                                   focusable and opens the detail page on click / Enter)
``byok-refresh``                   Refresh button of the Models page
``byok-add-model``                 Add Custom Model button (org admins only)
``byok-add-dialog``                the dialog; ``byok-dialog-status`` its error/status line
``byok-model-form``                the field block inside the dialog and the Edit mode
``byok-<field>``                   each input, field name with ``-``: ``byok-provider``,
                                   ``byok-reuse-credentials-from``, ``byok-auth-method``,
                                   ``byok-aws-region``, ``byok-aws-access-key-id``,
                                   ``byok-aws-secret-access-key``, ``byok-base-url``,
                                   ``byok-api-key``, ``byok-endpoint-url``,
                                   ``byok-provider-model-id``, ``byok-display-name``,
                                   ``byok-slug``, ``byok-max-tokens``,
                                   ``byok-supports-json-mode``, ``byok-supports-vision``,
                                   ``byok-supports-tool-use``, ``byok-supports-reasoning``,
                                   ``byok-reasoning-parameter``, ``byok-input-cost-per-token``,
                                   ``byok-output-cost-per-token``
``byok-field-row``                 one field: its input, (secrets) ``byok-clear-api-key`` /
                                   ``byok-clear-aws-secret-access-key`` "Clear typed key" (drops a
                                   key held since the last Test), and ``byok-field-error`` /
                                   ``byok-error-<field>`` the field's error (role ``alert``)
``byok-remove-api-key``            Edit mode, OpenAI-compatible with a stored key: "Remove stored key"
``byok-test-connection``           Test Connection button
``byok-save-model``                Save Model button (disabled until a test passes)
``byok-cancel``                    Cancel of the dialog
``byok-test-message``              "Connection test passed." or the exact error; "Testing… N s"
                                   (``byok-testing-text``) while a test runs
``byok-changed-since-test``        "Changed since the last test — Test Connection again to check"
``byok-test-hint``                 a hint under a failed test (e.g. turn JSON mode off)
``byok-pricing-warning``           yellow "Cost tracking requires per-token pricing"
``byok-warnings``                  yellow warnings (a per-1M-token price, an unknown reasoning parameter)
``byok-detail``                    detail page; ``byok-detail-status`` its status line,
                                   ``byok-back`` back to Models, ``byok-detail-info`` the facts
``byok-secret-masked``             "<secret label>: ****abcd"
``byok-access-key-id``             Bedrock IAM Access Key ID, in full
``byok-endpoint-note``             HuggingFace legacy-URL note
``byok-edit`` / ``byok-test`` /    Edit, Test, Delete (org admins only)
``byok-delete``
``byok-probe-capabilities``        Probe capabilities (org admins only); its output in
                                   ``byok-probe-result``: ``byok-probe-message``,
                                   ``byok-probe-table`` (inner ``<table
                                   class="byok-probe-table-html">``, rows ``tr.byok-probe-differs``
                                   / ``tr.byok-probe-same`` with ``data-flag``),
                                   ``byok-probe-note`` (flags are not changed) and
                                   ``byok-apply-suggestions`` (fills the Edit form, never saves)
``byok-edit-area``                 Edit mode; ``byok-save-edit`` Save, ``byok-cancel-edit`` Cancel
``byok-delete-confirmation``       the confirmation box; ``byok-delete-question`` its text,
                                   ``byok-confirm-delete`` / ``byok-cancel-delete`` its buttons
``byok-picker``                    picker; ``byok-picker-group-platform`` /
                                   ``byok-picker-group-custom`` group headings,
                                   ``byok-picker-platform`` / ``byok-picker-custom`` the choices,
                                   ``byok-picker-empty``, ``byok-picker-hidden`` (why hidden),
                                   ``byok-picker-assign``, ``byok-picker-status``
``byok-workflows-page``            Workflows page; ``byok-workflow-project`` / ``byok-workflow-select``
                                   dropdowns, ``byok-workflow-fields`` the fields table (a
                                   ``RowTable``; a row opens that field's picker in
                                   ``byok-picker-area``), ``byok-workflows-status``
``byok-analytics``                 analytics; ``byok-report-by``, ``byok-cost-table``,
                                   ``byok-charts``, ``byok-chart-cost-per-day``,
                                   ``byok-chart-tokens-per-model``, ``byok-estimate-model``,
                                   ``byok-estimate-input-tokens``, ``byok-estimate-output-tokens``,
                                   ``byok-estimate``, ``byok-estimate-result``,
                                   ``byok-what-if-table``, ``byok-analytics-status``
``byok-error-text``                the span of any error message
=================================  ==============================================================
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_attributes

_LAZY = {
    "AddModelDialog": ".add_dialog",
    "AddModelForm": ".forms",
    "AdminApp": ".app",
    "AnalyticsView": ".analytics_view",
    "DetailPage": ".detail_page",
    "EditModelForm": ".forms",
    "ModelsPage": ".models_page",
    "PickerWidget": ".picker",
    "RowTable": ".row_table",
    "WorkflowsPage": ".workflows_page",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)


if TYPE_CHECKING:  # pragma: no cover
    from .add_dialog import AddModelDialog
    from .analytics_view import AnalyticsView
    from .app import AdminApp
    from .detail_page import DetailPage
    from .forms import AddModelForm, EditModelForm
    from .models_page import ModelsPage
    from .picker import PickerWidget
    from .row_table import RowTable
    from .workflows_page import WorkflowsPage
