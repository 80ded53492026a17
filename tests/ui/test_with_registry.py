"""The forms and widgets against a real registry (SQLite, from tests/conftest.py) and a loopback
OpenAI-compatible provider: the whole Add / Edit / Test / Delete flow without a kernel."""
from __future__ import annotations

from decimal import Decimal

import pytest

from byok_nb.core.domain import ConnectionTest
from byok_nb.testing.fake_providers import FakeOpenAIProvider
from byok_nb.ui import AddModelDialog, AdminApp, DetailPage, ModelsPage
from byok_nb.ui.forms import AddModelForm, EditModelForm

from .uikit import walk, widget_state_text

KEY = "sk-test-key-0001"


@pytest.fixture
def provider():
    with FakeOpenAIProvider("openai", api_key=KEY) as server:
        yield server


def fill_openai(dialog: AddModelDialog, base_url: str, key: str = KEY) -> None:
    f = dialog.view.fields
    f["provider"].value = "openai_compatible"
    f["base_url"].value = base_url
    f["api_key"].value = key
    f["provider_model_id"].value = "meta-llama/Llama-3.1-8B-Instruct"
    f["display_name"].value = "Llama 3.1 8B (vLLM)"


def test_u1_t6_c7_add_dialog_end_to_end(acme, provider):
    s = acme.admin
    dialog = AddModelDialog(s)
    fill_openai(dialog, provider.base_url)
    assert dialog.save_button.disabled
    dialog.test_button.click()
    assert dialog.form.test_message == "Connection test passed.", dialog.form.test_message
    assert provider.last.headers["authorization"] == "Bearer " + KEY
    assert dialog.form.pricing_warning == "Cost tracking requires per-token pricing"   # self-hosted: unpriced
    assert not dialog.save_button.disabled
    dialog.save_button.click()
    model = s.get_model("llama-3-1-8b-vllm")
    assert model.secret_masked == "****0001" and model.base_url == provider.base_url
    assert KEY not in widget_state_text(dialog)
    assert "llama-3-1-8b-vllm" in set(s.list_models(type="custom")["ref"])       # W-3


def test_t3_wrong_key_shows_the_provider_error_and_keeps_save_disabled(acme, provider):
    dialog = AddModelDialog(acme.admin)
    fill_openai(dialog, provider.base_url, key="sk-wrong-key-9999")
    dialog.test_button.click()
    assert dialog.form.test_ok is False and dialog.save_button.disabled
    assert "401" in dialog.form.test_message
    assert "sk-wrong-key-9999" not in widget_state_text(dialog)


def test_t4_typed_cost_kept_after_a_real_test(acme, provider):
    form = AddModelForm(acme.admin, provider="openai_compatible")
    form.base_url, form.api_key = provider.base_url, KEY
    form.provider_model_id, form.display_name = "m", "M"
    form.input_cost_per_token = "0.0000001"
    form.test()
    assert form.input_cost_per_token == "0.0000001" and form.can_save


def test_c6_reuse_with_the_real_registry(acme, provider):
    s = acme.admin
    s.add_model(provider="openai_compatible", base_url=provider.base_url, api_key=KEY,
                provider_model_id="m", display_name="Source", test=False)
    form = AddModelForm(s, provider="openai_compatible")
    assert [slug for _, slug in form.reuse_options] == ["source"]
    form.reuse_credentials_from = "source"
    form.provider_model_id, form.display_name = "m2", "Reused"
    form.test()
    assert form.test_message == "Connection test passed."
    assert provider.last.headers["authorization"] == "Bearer " + KEY    # the copied key went out
    saved = form.save()
    assert saved.base_url == provider.base_url and saved.secret_masked == "****0001"
    assert AddModelForm(s, provider="fireworks").show_reuse is False


def test_t6_save_uses_add_model_test_false(acme, monkeypatch):
    s = acme.admin
    monkeypatch.setattr(s, "test_connection", lambda draft=None, **kw: ConnectionTest(
        ok=True, message="Connection test passed.", input_cost_per_token=Decimal("0.0000002"),
        output_cost_per_token=Decimal("0.0000008"), price_source="genai-prices"))
    form = AddModelForm(s, provider="fireworks")
    form.api_key, form.provider_model_id = "fw_abcdefghijklmnop", "accounts/acme/models/x"
    form.display_name = "Llama 3.1 8B (internal v4)"
    form.test()
    model = form.save()                       # no provider is reachable: test=False saved it
    assert model.slug == "llama-3-1-8b-internal-v4"
    assert model.input_cost_per_token == Decimal("0.0000002") and form.api_key is None


def test_t5_t7_edit_test_blank_key_uses_the_stored_one(acme, provider):
    s = acme.admin
    s.add_model(provider="openai_compatible", base_url=provider.base_url, api_key=KEY,
                provider_model_id="m", display_name="Edit me", test=False)
    form = EditModelForm(s, "edit-me")
    assert form.placeholder("api_key") == "Leave blank to keep existing"
    form.max_tokens = 128
    form.test()
    assert form.test_message == "Connection test passed."
    assert provider.last.headers["authorization"] == "Bearer " + KEY
    assert provider.last.json["max_tokens"] == 128
    form.api_key = "sk-rotated-key-7777"
    form.test()                                   # the edited key is what is tested
    assert form.test_ok is False and form.can_save   # T-7: a failed test never gates Save
    form.api_key = None
    view = form.save()
    assert view.max_tokens == 128 and view.secret_masked == "****0001"


def test_m16_edit_bedrock_auth_switch_with_the_real_registry(acme):
    s = acme.admin
    s.add_model(provider="bedrock", aws_region="us-west-2", auth_method="iam",
                aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                provider_model_id="anthropic.claude-3-5-sonnet-20240620-v1:0", display_name="Claude", test=False)
    detail = DetailPage(s, "claude")
    assert "AKIAIOSFODNN7EXAMPLE" in detail.access_key.value and "****EKEY" in detail.secret.value
    detail.edit_button.click()
    fields = detail.form_view.fields
    fields["auth_method"].value = "api_key"
    assert fields["api_key"].layout.display != "none" and fields["api_key"].description == "Bedrock API Key"
    detail.save_button.click()                    # no new key: refused (M-16), named by its label
    assert "Bedrock API Key is required" in detail.message.value
    assert "Bedrock API Key is required" in detail.form_view.errors["api_key"].value
    fields["api_key"].value = "ABSKbedrockbearerkey0042"
    detail.save_button.click()
    view = s.get_model("claude")
    assert view.auth_method == "api_key" and view.secret_masked == "****0042" and view.aws_access_key_id is None
    assert "ABSKbedrockbearerkey0042" not in widget_state_text(detail)


def test_u2_u3_app_flow_and_delete_count(acme):
    s = acme.admin
    s.add_model(provider="fireworks", api_key="fw_abcdefghijklmnop", provider_model_id="x",
                display_name="Used", test=False)
    from byok_nb import LLMField

    s.create_workflow("triage", "search", fields=[LLMField("reply", model="used")])
    app = AdminApp(s)
    assert "Used" in app.models_page.table.text
    app.models_page.open_model(app.models_page.custom_refs()[0])
    detail = app.page
    assert isinstance(detail, DetailPage) and "****mnop" in detail.secret.value
    detail.delete_button.click()
    assert "1 active workflow references this slug" in detail.confirm_area.children[0].value
    detail.confirm_area.children[1].children[0].click()
    assert isinstance(app.page, ModelsPage) and "Used" not in app.page.table.text


def test_u6_contributor_app_has_no_management_controls(acme):
    acme.admin.add_model(provider="fireworks", api_key="fw_abcdefghijklmnop", provider_model_id="x",
                         display_name="Shared", test=False)
    app = AdminApp(acme.contributor)
    page = app.models_page
    assert page.add_button is None and "Shared" in page.table.text
    page.open_model(page.custom_refs()[0])
    detail = app.page
    assert detail.edit_button is None and detail.delete_button is None
    assert "****mnop" in detail.secret.value


def test_u7_outsider_sees_a_short_message(acme):
    app = AdminApp(acme.outsider)
    state = widget_state_text(app)
    assert "is not a member of the organization" in state and "Traceback" not in state


def test_u6_outsider_sees_one_message_and_no_member_label_or_pages(acme):
    app = AdminApp(acme.outsider)
    assert app.page is None and app.models_page is None and not any("byok-nav" in w._dom_classes for w in walk(app))
    header = app.header.value
    assert f"Signed in as {acme.outsider.user}" in header
    assert "Member" not in header and "Contributor" not in header and "Admin" not in header
    assert app.message.value.count("not a member") == 1 and 'role="alert"' in app.message.value


def test_u6_header_names_the_members_role(acme):
    assert "Org Admin" in AdminApp(acme.admin).header.value
    header = AdminApp(acme.contributor).header.value
    assert "Contributor" in header and "Org Admin" not in header
    assert "BYOK_NB" not in header and "Voila" not in header


@pytest.fixture
def together(monkeypatch):
    with FakeOpenAIProvider("together", api_key="tg-test-key-0002") as server:
        monkeypatch.setenv("BYOK_NB_TOGETHER_BASE_URL", server.base_url)
        yield server


def _together_dialog(session) -> AddModelDialog:
    dialog = AddModelDialog(session)
    f = dialog.view.fields
    f["provider"].value = "together"
    f["api_key"].value = "tg-test-key-0002"
    f["provider_model_id"].value = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    f["display_name"].value = "Llama 3.3 70B (Together)"
    return dialog


def test_t4_p8_prices_filled_by_the_dialog_keep_their_source(acme, together):
    dialog = _together_dialog(acme.admin)
    dialog.test_button.click()
    assert dialog.form.input_cost_per_token == "0.00000088"          # filled from genai-prices
    dialog.save_button.click()
    model = acme.admin.get_model("llama-3-3-70b-together")
    assert model.input_cost_per_token == Decimal("0.00000088")
    assert model.price_source.startswith("genai-prices") and model.price_source.endswith("(together)")


def test_p8_a_filled_price_edited_before_save_is_the_users(acme, together):
    dialog = _together_dialog(acme.admin)
    dialog.test_button.click()
    dialog.view.fields["output_cost_per_token"].value = "0.000002"   # a price edit needs no new test
    assert not dialog.save_button.disabled
    dialog.save_button.click()
    model = acme.admin.get_model("llama-3-3-70b-together")
    assert model.output_cost_per_token == Decimal("0.000002") and model.price_source == "user"


# -- the Workflows page (U-4, W-1, W-2, W-5) -----------------------------------------------------
def _workflow_world(acme):
    from byok_nb import LLMField

    acme.admin.add_model(provider="fireworks", api_key="fw_abcdefghijklmnop", provider_model_id="x",
                         display_name="No Tools FT", supports_tool_use=False, test=False)
    acme.admin.add_model(provider="fireworks", api_key="fw_abcdefghijklmnop", provider_model_id="y",
                         display_name="Tools FT", test=False)
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    acme.admin.create_workflow("triage", "search", fields=[LLMField("reply", tools=[tool]),
                                                           LLMField("summary")])


def test_u4_w2_workflows_page_lists_fields_and_explains_hidden_models(acme):
    from byok_nb.ui.workflows_page import WorkflowsPage

    _workflow_world(acme)
    app = AdminApp(acme.contributor)
    app.nav.value = "workflows"
    page = app.page
    assert isinstance(page, WorkflowsPage)
    assert page.project.options == ("All projects", "search")
    assert [cells[0] for cells in (r["cells"] for r in page.fields.rows)] == ["reply", "summary"]
    reply = page.fields.rows[0]["cells"]
    assert reply[1] == "Supports tool use (the field has tool bindings)" and reply[2] == "not assigned"
    page.fields.open_row("reply")
    picker = page.picker
    assert picker is not None and "reply" in picker.title.value and "search / triage" in picker.title.value
    custom = [ref for _, ref in picker.choices["Custom"].options]
    assert custom == ["tools-ft"]                                    # W-2: only what qualifies
    assert "No Tools FT" in picker.hidden_view.value and "needs Supports tool use" in picker.hidden_view.value


def test_w5_contributor_assigns_from_the_workflows_page_and_the_table_follows(acme):
    from byok_nb.ui.workflows_page import WorkflowsPage

    _workflow_world(acme)
    page = WorkflowsPage(acme.contributor)
    page.select("triage", "reply")
    page.picker.value = "tools-ft"
    page.picker.assign_button.click()
    assert "Assigned 'tools-ft'" in page.picker.message.value.replace("&#x27;", "'")
    assert page.fields.rows[0]["cells"][2] == "tools-ft"             # re-read from the registry
    assert acme.admin.picker("triage", "reply")["Custom"][0].ref == "tools-ft"
    assert acme.admin.get_workflow("triage").fields[0].model == "tools-ft"


def test_w5_outsider_to_the_project_gets_the_refusal_as_a_message(acme):
    from byok_nb.ui.workflows_page import WorkflowsPage

    _workflow_world(acme)
    acme.registry.create_project("acme", "other")
    acme.registry.add_member("acme", "oz", role="contributor", project="other")
    page = WorkflowsPage(acme.registry.session(org="acme", user="oz"))
    page.select("triage", "summary")
    page.picker.value = "tools-ft"
    page.picker.assign_button.click()
    assert "may not change workflows of project" in page.picker.message.value
    assert 'role="alert"' in page.picker.message.value and "Traceback" not in widget_state_text(page)


def test_u4_workflows_page_without_workflows_says_so(acme):
    from byok_nb.ui.workflows_page import NO_WORKFLOWS, WorkflowsPage

    page = WorkflowsPage(acme.admin)
    assert NO_WORKFLOWS in page.message.value and page.fields.rows == [] and page.picker is None


def test_u5_analytics_headers_have_units_and_charts_have_alternative_text(acme):
    from byok_nb.services.analytics import record_usage_batch
    from byok_nb.ui import AnalyticsView

    acme.admin.add_model(provider="fireworks", api_key="fw_abcdefghijklmnop", provider_model_id="x",
                         display_name="Priced", input_cost_per_token="0.000001",
                         output_cost_per_token="0.000002", test=False)
    record_usage_batch(acme.admin, [{"model": "priced", "input_tokens": 1000, "output_tokens": 10}])
    view = AnalyticsView(acme.admin)
    table = view.table.value
    for header in ("<th>Model</th>", "<th>Calls</th>", "<th>Input tokens</th>", "<th>Cost (USD)</th>",
                   "<th>Calls without a price</th>"):
        assert header in table
    assert "<th>cost_usd</th>" not in table and "untracked_calls" not in table
    assert list(acme.admin.cost_report().columns[:3]) != ["Model", "Type", "Provider"]   # API names stay
    for chart in (view.cost_chart.value, view.tokens_chart.value):
        assert chart.startswith('<img class="byok-chart-img" alt="Chart: ') and "base64," in chart
    assert "Cost per day by model (USD)" in view.cost_chart.value
