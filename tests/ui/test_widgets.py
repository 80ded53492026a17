"""The ipywidgets views, asserted on traits without a kernel or a browser (U-1 … U-7, T-6, C-3, C-7)."""
from __future__ import annotations

from decimal import Decimal

import ipywidgets as widgets
import pytest

from byok_nb.core.domain import ConnectionTest
from byok_nb.core.errors import ProviderError
from byok_nb.ui import (
    AddModelDialog, AdminApp, AnalyticsView, DetailPage, ModelsPage, PickerWidget,
)
from byok_nb.ui.add_dialog import css_class

from .uikit import FakeSession, make_view, walk, widget_state_text

SECRET = "fw_planted0secret0value9"


def by_class(root, css: str):
    return [w for w in walk(root) if css in w._dom_classes]


def one(root, css: str):
    found = by_class(root, css)
    assert len(found) == 1, (css, found)
    return found[0]


def visible(w) -> bool:
    return w.layout.display != "none"


def fill_fireworks(dialog: AddModelDialog, key: str = SECRET) -> None:
    dialog.view.fields["provider"].value = "fireworks"
    dialog.view.fields["api_key"].value = key
    dialog.view.fields["provider_model_id"].value = "accounts/acme/models/llama-ft-v2"
    dialog.view.fields["display_name"].value = "Llama 3.1 8B (internal v4)"


# -- U-1 labels, classes, visibility --------------------------------------------------------------
def test_u1_dialog_title_buttons_and_labels_word_for_word(fake):
    dialog = AddModelDialog(fake)
    assert "Add Custom Model" in dialog.title.value
    assert dialog.test_button.description == "Test Connection"
    assert dialog.save_button.description == "Save Model"
    assert dialog.visible_labels() == [
        "Provider", "API Key", "Provider Model ID", "Display Name", "Model Slug", "Max Tokens",
        "Supports JSON mode", "Supports vision / image inputs", "Supports tool use",
        "Supports extended reasoning", "Input cost/token (USD)", "Output cost/token (USD)"]
    assert [label for label, _ in dialog.view.fields["provider"].options] == [
        "Fireworks", "Together AI", "Bedrock", "HuggingFace", "OpenAI-compatible"]


@pytest.mark.parametrize("provider, method, labels", [
    ("bedrock", "iam", ["Authentication Method", "AWS Region", "Access Key ID", "Secret Access Key"]),
    ("bedrock", "api_key", ["Authentication Method", "AWS Region", "Bedrock API Key"]),
    ("huggingface", None, ["API Token", "Inference Endpoint URL"]),
    ("openai_compatible", None, ["Base URL", "API Key"]),
    ("together", None, ["API Key"]),
])
def test_u1_credential_widgets_follow_provider(fake, provider, method, labels):
    dialog = AddModelDialog(fake)
    dialog.view.fields["provider"].value = provider
    if method:
        dialog.view.fields["auth_method"].value = method
    shown = dialog.visible_labels()
    assert shown[1:1 + len(labels)] == labels
    for name, w in dialog.view.fields.items():
        assert visible(w) == (name in dialog.form.visible_fields)


def test_u1_bedrock_authentication_method_options(fake):
    dialog = AddModelDialog(fake)
    assert [label for label, _ in dialog.view.fields["auth_method"].options] == [
        "IAM Key Pair (Access Key + Secret Key)", "Bedrock API Key (Bearer Token)"]


def test_u1_every_field_carries_its_css_class(fake):
    dialog = AddModelDialog(fake)
    assert "byok-add-dialog" in dialog._dom_classes
    for name, w in dialog.view.fields.items():
        assert css_class(name) in w._dom_classes
    for css in ("byok-provider", "byok-api-key", "byok-slug", "byok-test-connection", "byok-save-model",
                "byok-test-message", "byok-pricing-warning"):
        one(dialog, css)


def test_u1_reasoning_parameter_revealed_by_the_toggle(fake):
    dialog = AddModelDialog(fake)
    field = dialog.view.fields["reasoning_parameter"]
    assert not visible(field) and field.description == "Reasoning parameter name"
    dialog.view.fields["supports_reasoning"].value = True
    assert visible(field)


def test_u1_slug_widget_autofills_then_stops(fake):
    dialog = AddModelDialog(fake)
    dialog.view.fields["display_name"].value = "Llama 3.1 8B (internal v4)"
    assert dialog.view.fields["slug"].value == "llama-3-1-8b-internal-v4"
    dialog.view.fields["slug"].value = "mine"
    dialog.view.fields["display_name"].value = "Other"
    assert dialog.view.fields["slug"].value == "mine"


def test_u1_placeholders_change_with_provider(fake):
    dialog = AddModelDialog(fake)
    pmid = dialog.view.fields["provider_model_id"]
    assert pmid.placeholder == "accounts/acme/models/llama-ft-v2"
    assert dialog.view.fields["api_key"].placeholder == "fw_..."
    dialog.view.fields["provider"].value = "bedrock"
    assert pmid.placeholder == "anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert dialog.view.fields["aws_region"].placeholder == "us-west-2"


def test_u1_reuse_dropdown_only_with_sources_and_disables_inputs():
    source = make_view(slug="old-fw", display_name="Old FW")
    dialog = AddModelDialog(FakeSession(sources={("fireworks", None): [source]}))
    reuse = dialog.view.fields["reuse_credentials_from"]
    assert visible(reuse) and reuse.description == "Reuse saved credentials"
    reuse.value = "old-fw"
    key = dialog.view.fields["api_key"]
    assert key.disabled and key.placeholder == "(Using saved credentials)"
    reuse.value = ""
    assert not key.disabled
    dialog.view.fields["provider"].value = "together"
    assert not visible(reuse)
    assert not visible(AddModelDialog(FakeSession()).view.fields["reuse_credentials_from"])


# -- T-6 on the Save Model button ----------------------------------------------------------------
def test_t6_save_button_disabled_until_test_passes_and_cleared_by_changes(fake):
    dialog = AddModelDialog(fake)
    fill_fireworks(dialog)
    assert dialog.save_button.disabled
    dialog.test_button.click()
    assert not dialog.save_button.disabled
    assert "Connection test passed." in one(dialog, "byok-test-message").value
    dialog.view.fields["input_cost_per_token"].value = "0.0000003"   # costs keep it
    dialog.view.fields["api_key"].value = "fw_another0key0000"        # credentials keep it
    assert not dialog.save_button.disabled
    dialog.view.fields["supports_vision"].value = True               # a toggle clears it
    assert dialog.save_button.disabled
    dialog.test_button.click()
    dialog.view.fields["max_tokens"].value = 10
    assert dialog.save_button.disabled
    dialog.test_button.click()
    dialog.view.fields["provider"].value = "together"
    assert dialog.save_button.disabled


def test_t3_failed_test_shows_the_exact_error(fake):
    fake.result = ConnectionTest(ok=False, message="404 Not Found: model not found", status_code=404,
                                 hint="turn Supports JSON mode off")
    dialog = AddModelDialog(fake)
    fill_fireworks(dialog)
    dialog.test_button.click()
    assert "404 Not Found: model not found" in dialog.result.message.value
    assert "turn Supports JSON mode off" in dialog.result.hint.value
    assert dialog.save_button.disabled


def test_t4_costs_autofilled_and_pricing_warning_yellow(fake):
    fake.result = ConnectionTest(ok=True, message="Connection test passed.",
                                 input_cost_per_token=Decimal("0.0000002"),
                                 warning="Cost tracking requires per-token pricing")
    dialog = AddModelDialog(fake)
    fill_fireworks(dialog)
    dialog.view.fields["output_cost_per_token"].value = ""
    dialog.test_button.click()
    assert dialog.view.fields["input_cost_per_token"].value == "0.0000002"
    warning = one(dialog, "byok-pricing-warning").value
    assert "Cost tracking requires per-token pricing" in warning and "#fff8c5" in warning


def test_m8_m10_warnings_shown(fake):
    dialog = AddModelDialog(fake)
    dialog.view.fields["input_cost_per_token"].value = "0.5"
    dialog.view.fields["supports_reasoning"].value = True
    dialog.view.fields["reasoning_parameter"].value = "Max_Tokens"
    text = one(dialog, "byok-warnings").value
    assert "per-1M-token" in text and "Max_Tokens" in text


# -- C-7: Password widgets -----------------------------------------------------------------------
def test_c7_secret_inputs_are_password_widgets(fake):
    dialog = AddModelDialog(fake)
    assert isinstance(dialog.view.fields["api_key"], widgets.Password)
    assert isinstance(dialog.view.fields["aws_secret_access_key"], widgets.Password)


def test_c7_password_cleared_right_after_test_and_never_in_widget_state(fake):
    dialog = AddModelDialog(fake)
    fill_fireworks(dialog)
    dialog.test_button.click()
    assert dialog.view.fields["api_key"].value == ""
    assert dialog.view.fields["api_key"].placeholder == "(entered and hidden; type to replace)"
    assert SECRET not in widget_state_text(dialog)
    ((_, draft, _),) = fake.called("test_connection")
    assert draft.api_key.get_secret_value() == SECRET            # it reached the session


def test_c7_password_cleared_after_save_and_form_forgets_it(fake):
    saved = []
    dialog = AddModelDialog(fake, on_saved=saved.append)
    fill_fireworks(dialog)
    dialog.test_button.click()
    dialog.view.fields["api_key"].value = "fw_typed0after0test0000"   # a new key typed before Save
    dialog.save_button.click()
    ((_, draft, kwargs),) = fake.called("add_model")
    assert kwargs == {"test": False} and draft.api_key.get_secret_value() == "fw_typed0after0test0000"
    assert dialog.view.fields["api_key"].value == "" and dialog.form.api_key is None
    assert saved and saved[0].slug == "llama-3-1-8b-internal-v4"
    assert "fw_typed0after0test0000" not in widget_state_text(dialog)
    assert "Saved model 'llama-3-1-8b-internal-v4'." in dialog.message.value.replace("&#x27;", "'")


def test_c7_cancel_clears_typed_secrets(fake):
    closed = []
    dialog = AddModelDialog(fake, on_cancel=lambda: closed.append(True))
    fill_fireworks(dialog)
    dialog.cancel_button.click()
    assert dialog.view.fields["api_key"].value == "" and dialog.form.api_key is None and closed


# -- U-7: no tracebacks ---------------------------------------------------------------------------
def test_u7_unexpected_error_is_a_short_message_without_traceback_or_secret():
    session = FakeSession(fail={"test_connection": RuntimeError(f"boom with {SECRET} inside")})
    dialog = AddModelDialog(session)
    fill_fireworks(dialog)
    dialog.test_button.click()
    assert "Unexpected error: RuntimeError" in dialog.message.value
    state = widget_state_text(dialog)
    assert "Traceback" not in state and SECRET not in state and "boom" not in state


def test_u7_registry_error_shows_its_message():
    session = FakeSession(fail={"add_model": ProviderError("502 Bad Gateway from provider")})
    dialog = AddModelDialog(session)
    fill_fireworks(dialog)
    dialog.test_button.click()
    dialog.save_button.click()
    assert "502 Bad Gateway from provider" in dialog.message.value
    assert "Traceback" not in widget_state_text(dialog)


def test_u7_models_page_failure_is_a_message():
    page = ModelsPage(FakeSession(fail={"list_models": KeyError("x")}))
    assert "Unexpected error: KeyError" in page.message.value
    assert "Traceback" not in widget_state_text(page)


def test_u7_errors_are_logged_with_details(caplog):
    import logging

    session = FakeSession(fail={"test_connection": RuntimeError(f"details {SECRET}")})
    dialog = AddModelDialog(session)
    fill_fireworks(dialog)
    with caplog.at_level(logging.ERROR, logger="byok_nb.ui"):
        dialog.test_button.click()
    assert "RuntimeError" in caplog.text and "details" in caplog.text
    assert SECRET not in caplog.text                                 # scrubbed (C-3)


# -- U-2 / U-6 Models page ----------------------------------------------------------------------
def test_u2_u10_models_table_rows_custom_first_and_only_custom_rows_open():
    session = FakeSession(models=[make_view(), make_view(id="m2", slug="b-long", display_name="B " + "x" * 90)])
    page = ModelsPage(session)
    assert [label for label, _ in page.type_filter.options] == ["All", "Platform", "Custom"]
    table = one(page, "byok-models-table")
    assert "OpenAI: GPT-4o" in table.text and "Llama FT" in table.text and "Platform" in table.text
    assert [r["ref"] for r in table.rows] == ["llama-ft", "b-long", "openai/gpt-4o"]   # custom first
    assert page.custom_refs() == ["llama-ft", "b-long"]               # platform rows do not open
    assert [r["css"] for r in table.rows] == ["byok-row-custom", "byok-row-custom", "byok-row-platform"]
    assert table.columns[0] == {"title": "Name", "truncate": True}   # ellipsis + full name on hover
    assert by_class(page, "byok-custom-models") == [] and by_class(page, "byok-open-model") == []
    page.type_filter.value = "platform"
    assert "Llama FT" not in page.table.text and page.custom_refs() == []
    page.type_filter.value = "custom"
    assert "OpenAI: GPT-4o" not in page.table.text


def test_u10_a_row_message_from_the_browser_opens_only_custom_rows():
    page = ModelsPage(FakeSession(models=[make_view()]))
    page.table._handle_custom_msg({"event": "open", "ref": "openai/gpt-4o"}, [])   # not openable
    assert by_class(page, "byok-detail") == []
    page.table._handle_custom_msg({"event": "open", "ref": "llama-ft"}, [])
    assert "Llama FT" in one(page, "byok-detail").title.value


def test_u2_add_of_a_deleted_slug_says_it_was_reactivated():
    from byok_nb.ui.models_page import saved_message

    import datetime as dt
    fresh = make_view()
    assert saved_message(fresh) == "Saved model 'llama-ft'."
    revived = make_view(updated_at=fresh.created_at + dt.timedelta(days=3))
    assert saved_message(revived).startswith("Reactivated model 'llama-ft'")


def test_u2_admin_sees_add_custom_model_and_the_dialog_saves():
    session = FakeSession()
    page = ModelsPage(session)
    assert one(page, "byok-add-model").description == "Add Custom Model"
    page.add_button.click()
    dialog = one(page, "byok-add-dialog")
    fill_fireworks(dialog)
    dialog.test_button.click()
    dialog.save_button.click()
    assert by_class(page, "byok-add-dialog") == []                    # closed
    assert "llama-3-1-8b-internal-v4" in page.table.text              # W-3
    assert "Saved model" in one(page, "byok-status").value


def test_u2_clicking_a_custom_model_opens_its_detail_page():
    page = ModelsPage(FakeSession(models=[make_view()]))
    page.open_model(page.custom_refs()[0])
    detail = one(page, "byok-detail")
    assert "Llama FT" in detail.title.value


def test_u6_non_admin_sees_no_management_controls():
    session = FakeSession(admin=False, models=[make_view()])
    page = ModelsPage(session)
    assert page.add_button is None and by_class(page, "byok-add-model") == []
    assert "Llama FT" in page.table.text
    detail = DetailPage(session, "llama-ft")
    for css in ("byok-edit", "byok-test", "byok-delete"):
        assert by_class(detail, css) == []
    assert "****wxyz" in one(detail, "byok-secret-masked").value
    app = AdminApp(session)
    assert by_class(app, "byok-add-model") == []
    assert "Signed in as cy" in app.header.value and "Org Admin" not in app.header.value


def test_u6_role_lookup_failure_hides_controls():
    class Broken(FakeSession):
        @property
        def is_org_admin(self):
            raise RuntimeError("db down")

        @is_org_admin.setter
        def is_org_admin(self, value):
            pass

    assert ModelsPage(Broken()).add_button is None


# -- U-3 detail page ------------------------------------------------------------------------------
def test_u3_c3_detail_shows_masked_secret_and_full_access_key_id():
    view = make_view(provider="bedrock", auth_method="iam", aws_region="us-west-2",
                     aws_access_key_id="AKIAIOSFODNN7EXAMPLE", secret_masked="****EKEY")
    detail = DetailPage(FakeSession(models=[view]), "llama-ft")
    assert "Secret Access Key" in detail.secret.value and "****EKEY" in detail.secret.value
    assert "AKIAIOSFODNN7EXAMPLE" in one(detail, "byok-access-key-id").value
    assert [b.description for b in (detail.edit_button, detail.test_button, detail.delete_button)] == [
        "Edit", "Test", "Delete"]


def test_u3_p3_detail_shows_the_endpoint_note():
    view = make_view(provider="huggingface", endpoint_url="https://api-inference.huggingface.co/models/a/b",
                     endpoint_note="Legacy serverless URL: called through the HuggingFace router")
    detail = DetailPage(FakeSession(models=[view]), "llama-ft")
    assert "Legacy serverless URL" in one(detail, "byok-endpoint-note").value
    assert "API Token" in detail.secret.value


def test_u3_edit_mode_read_only_provider_slug_and_keep_existing_placeholder():
    session = FakeSession(models=[make_view()])
    detail = DetailPage(session, "llama-ft")
    detail.edit_button.click()
    fields = detail.form_view.fields
    assert fields["provider"].disabled and fields["slug"].disabled
    assert fields["api_key"].placeholder == "Leave blank to keep existing"
    assert not one(detail, "byok-save-edit").disabled                  # T-7: not gated
    fields["display_name"].value = "Renamed"
    fields["api_key"].value = "fw_rotated0key00000"
    detail.save_button.click()
    ((_, slug, changes),) = session.called("update_model")
    assert slug == "llama-ft" and changes["display_name"] == "Renamed"
    assert changes["api_key"].get_secret_value() == "fw_rotated0key00000"
    assert "fw_rotated0key00000" not in widget_state_text(detail)      # C-7
    assert "Renamed" in detail.title.value and detail.edit_area.children == ()


def test_t5_detail_test_button_tests_the_saved_model(fake):
    session = FakeSession(models=[make_view()])
    detail = DetailPage(session, "llama-ft")
    detail.test_button.click()
    ((_, target, overrides),) = session.called("test_connection")
    assert target == "llama-ft" and overrides == {}
    assert "Connection test passed." in one(detail, "byok-test-message").value


def test_u3_m11_delete_asks_with_the_workflow_count_then_deletes():
    session = FakeSession(models=[make_view()])
    session.references = 3
    deleted = []
    detail = DetailPage(session, "llama-ft", on_deleted=deleted.append)
    detail.delete_button.click()
    assert session.called("delete_model") == []                        # asked first
    question = one(detail, "byok-delete-question").value
    assert "3 active workflows reference this slug" in question
    one(detail, "byok-confirm-delete").click()
    assert session.called("delete_model") and deleted[0].referencing_workflows == 3
    assert detail.delete_button.disabled


def test_u3_delete_cancel_keeps_the_model():
    session = FakeSession(models=[make_view()])
    detail = DetailPage(session, "llama-ft")
    detail.delete_button.click()
    one(detail, "byok-cancel-delete").click()
    assert by_class(detail, "byok-confirm-delete") == [] and session.called("delete_model") == []


def test_u7_detail_of_unknown_model_is_a_message():
    detail = DetailPage(FakeSession(), "gone")
    assert "no active custom model 'gone'" in detail.message.value.replace("&#x27;", "'")


# -- U-4 picker -----------------------------------------------------------------------------------
def test_u4_w2_picker_groups_and_explains_hidden_models(fake):
    picker = PickerWidget(fake, "support-triage", "reply")
    assert "Platform" in one(picker, "byok-picker-group-platform").value
    assert "Custom" in one(picker, "byok-picker-group-custom").value
    assert picker.choices["Platform"].options == (("OpenAI: GPT-4o (openai/gpt-4o)", "openai/gpt-4o"),)
    assert picker.choices["Custom"].options == ()
    assert "No custom model has what this field needs" in picker.empty_notes["Custom"].value
    hidden = one(picker, "byok-picker-hidden").value
    assert "Llama FT" in hidden and "needs Supports tool use" in hidden


def test_u4_picker_select_and_assign(fake):
    chosen = []
    picker = PickerWidget(fake, "support-triage", "reply", on_select=chosen.append)
    assert picker.value is None and picker.assign_button.disabled
    picker.choices["Platform"].value = "openai/gpt-4o"
    assert picker.value == "openai/gpt-4o" and chosen == ["openai/gpt-4o"]
    picker.assign_button.click()
    assert fake.called("assign_model") == [("assign_model", ("support-triage", "reply"), "openai/gpt-4o")]


# -- U-5 analytics and the app -----------------------------------------------------------------------
def test_u5_analytics_view_tables_and_estimate():
    fake = FakeSession(models=[make_view()])
    view = AnalyticsView(fake, charts=False)
    assert "llama-ft" in one(view, "byok-cost-table").value
    view.by.value = "day"
    assert fake.calls is not None and "byok-cost-table" in view.table._dom_classes
    view.model.value = "llama-ft"
    view.estimate_button.click()
    assert "Cost tracking requires per-token pricing" in view.estimate_result.value
    assert "0.0075" in one(view, "byok-what-if-table").value
    assert "Traceback" not in widget_state_text(view)


def test_app_navigates_between_pages():
    session = FakeSession(models=[make_view()])
    app = AdminApp(session)
    assert isinstance(app.page, ModelsPage)
    app.models_page.open_model(app.models_page.custom_refs()[0])
    assert isinstance(app.page, DetailPage)
    app.page.back_button.click()
    assert isinstance(app.page, ModelsPage)
    app.nav.value = "analytics"
    assert isinstance(app.page, AnalyticsView)
    app.nav.value = "models"
    assert isinstance(app.page, ModelsPage)
    app.open_detail("llama-ft")
    app.page.delete_button.click()
    one(app.page, "byok-confirm-delete").click()
    assert isinstance(app.page, ModelsPage) and "Deleted 'llama-ft'" in app.page.message.value.replace("&#x27;", "'")
    assert len(by_class(app, "byok-status")) == 1


def test_ui_package_exports_entry_points():
    import byok_nb.ui as ui

    assert set(ui.__all__) >= {"AdminApp", "AddModelDialog", "ModelsPage", "DetailPage", "PickerWidget",
                               "AnalyticsView"}
    for css in ("byok-add-model", "byok-provider", "byok-test-connection", "byok-save-model",
                "byok-test-message", "byok-models-table", "byok-detail", "byok-secret-masked", "byok-edit",
                "byok-delete", "byok-confirm-delete"):
        assert css in ui.__doc__
