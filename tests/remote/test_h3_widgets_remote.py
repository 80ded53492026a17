"""The notebook widgets built on a remote session, unchanged: the Add dialog saves through the
service (the key typed in the notebook goes to the service and nowhere else), the picker assigns,
the analytics view shows the service's numbers — the same as on the embedded session."""
from __future__ import annotations

from byok_nb.ui import AddModelDialog, AdminApp, AnalyticsView, DetailPage, ModelsPage, PickerWidget

from tests.ui.uikit import walk, widget_state_text

from .conftest import PLANTED_KEY

HI = [{"role": "user", "content": "Say hi"}]


def one(root, css: str):
    found = [w for w in walk(root) if css in w._dom_classes]
    assert len(found) == 1, (css, found)
    return found[0]


def test_h3_add_dialog_on_a_remote_session_tests_and_saves(world):
    s = world.admin()
    dialog = AddModelDialog(s)
    f = dialog.view.fields
    f["provider"].value = "openai_compatible"
    f["base_url"].value = world.fake.base_url
    f["api_key"].value = PLANTED_KEY
    f["provider_model_id"].value = "meta-llama/Llama-3.1-8B-Instruct"
    f["display_name"].value = "Llama 3.1 8B (vLLM)"
    assert dialog.save_button.disabled
    dialog.test_button.click()
    assert dialog.form.test_message == "Connection test passed.", dialog.form.test_message
    assert world.fake.last.headers["authorization"] == "Bearer " + PLANTED_KEY   # sent by the service
    assert not dialog.save_button.disabled
    dialog.save_button.click()
    saved = world.acme.admin.get_model("llama-3-1-8b-vllm")
    assert saved.secret_masked == "****" + PLANTED_KEY[-4:] and saved.created_by == "ana"
    assert PLANTED_KEY not in widget_state_text(dialog)
    # Reuse options come from the service too.
    again = AddModelDialog(s)
    again.view.fields["provider"].value = "openai_compatible"
    assert {slug for _, slug in again.form.reuse_options} >= {"echo", "llama-3-1-8b-vllm"}


def test_h3_picker_on_a_remote_session_lists_and_assigns(world):
    s = world.member()
    chosen = []
    picker = PickerWidget(s, "triage", "summary", on_select=chosen.append)
    assert "echo" in {ref for _, ref in picker.choices["Custom"].options}
    assert picker.value == "echo"                           # preselected from the workflow
    platform = [ref for _, ref in picker.choices["Platform"].options]
    assert platform
    picker.choices["Platform"].value = platform[0]
    assert chosen[-1] == platform[0]
    picker.assign_button.click()
    assert world.acme.admin.get_workflow("triage").fields[0].model == platform[0]


def test_h3_analytics_view_on_a_remote_session_matches_the_embedded_one(world):
    s, local = world.member(), world.acme.contributor
    s.chat("echo", HI)
    remote_view, local_view = AnalyticsView(s, charts=False), AnalyticsView(local, charts=False)
    assert "echo" in one(remote_view, "byok-cost-table").value
    assert remote_view.table.value == local_view.table.value
    assert remote_view.model.options == local_view.model.options
    for view in (remote_view, local_view):
        view.model.value = "echo"
        view.input_tokens.value, view.output_tokens.value = 1000, 500
        view.estimate_button.click()
    assert "$0.002" in remote_view.estimate_result.value
    assert remote_view.estimate_result.value == local_view.estimate_result.value
    assert remote_view.what_if.value == local_view.what_if.value
    charted = AnalyticsView(s, charts=True)
    assert "<img" in charted.cost_chart.value and "Traceback" not in widget_state_text(charted)


def test_h3_admin_app_pages_on_a_remote_session(world):
    app = AdminApp(world.admin())
    assert isinstance(app.page, ModelsPage) and "echo" in app.models_page.custom_refs()
    app.open_detail("echo")
    assert isinstance(app.page, DetailPage) and PLANTED_KEY not in widget_state_text(app)
    member_app = AdminApp(world.member())
    assert member_app.is_admin is False
