"""Issue 12 (the Add dialog and the Edit form as an admin meets them), without a browser:
no key follows a provider change, the shown test outcome always matches the gate, changes after a
passing test are announced, pasted whitespace is stripped, a stored optional key can be removed,
every problem shows at once in the page's labels, the draft survives a second Add click, and the
slug is checked live. The browser tests in tests/browser/test_add_dialog_browser.py repeat each
behaviour in Chromium."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from byok_nb.core.domain import ConnectionTest
from byok_nb.core.errors import Conflict, InvalidRequest
from byok_nb.ui import AddModelDialog, DetailPage, ModelsPage
from byok_nb.ui.forms import MESSAGES, AddModelForm, EditModelForm

from .test_forms import filled_form as fireworks_form
from .test_widgets import SECRET, by_class, fill_fireworks, visible
from .uikit import FakeSession, make_view, widget_state_text

CHANGED = "Changed since the last test — Test Connection again to check"
PRICED = ConnectionTest(ok=True, message="Connection test passed.",
                        input_cost_per_token=Decimal("0.0000002"), output_cost_per_token=Decimal("0.0000008"),
                        price_source="genai-prices")


def openai_compatible_dialog(session) -> AddModelDialog:
    """An Add dialog filled for an OpenAI-compatible model, its optional API Key still empty."""
    dialog = AddModelDialog(session)
    dialog.view.fields["provider"].value = "openai_compatible"
    dialog.view.fields["base_url"].value = "https://my-vllm.example.com/v1"
    dialog.view.fields["provider_model_id"].value = "qwen"
    dialog.view.fields["display_name"].value = "Qwen"
    return dialog


# -- item 1: a Provider or Authentication Method change clears every credential input ------------
def test_u1_provider_change_clears_every_credential_input_and_the_reuse_choice():
    source = make_view(slug="other", provider="openai_compatible", base_url="https://a.example/v1")
    session = FakeSession(sources={("openai_compatible", None): [source]})
    form = AddModelForm(session, provider="openai_compatible")
    form.base_url, form.api_key = "https://my-vllm.example.com/v1", "sk-typed-for-vllm-0001"
    form.reuse_credentials_from = "other"
    form.provider = "huggingface"
    assert (form.api_key, form.base_url, form.reuse_credentials_from) == (None, "", "")
    form.endpoint_url, form.api_key = "https://x.endpoints.huggingface.cloud", "hf_tokentokentoken"
    form.provider = "bedrock"
    assert (form.api_key, form.endpoint_url) == (None, "")


def test_u1_bedrock_auth_method_change_clears_every_credential_input():
    form = AddModelForm(FakeSession(), provider="bedrock")
    form.aws_region, form.aws_access_key_id = "us-west-2", "AKIAIOSFODNN7EXAMPLE"
    form.aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    form.auth_method = "api_key"
    assert (form.aws_region, form.aws_access_key_id, form.aws_secret_access_key) == ("", "", None)
    form.api_key = "ABSKbearerbearer0001"
    form.auth_method = "iam"
    assert form.api_key is None


def test_u1_typed_fireworks_key_is_not_sent_to_together(fake):
    """The reported bug: type a Fireworks key, switch to Together AI, Test Connection."""
    dialog = AddModelDialog(fake)
    fill_fireworks(dialog)
    dialog.view.fields["provider"].value = "together"
    assert dialog.view.fields["api_key"].value == "" and dialog.form.api_key is None
    dialog.view.fields["provider_model_id"].value = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    dialog.test_button.click()
    assert fake.called("test_connection") == []          # nothing sent: API Key is required
    assert dialog.form.field_errors["api_key"] == "API Key is required"


# -- item 2: the outcome on screen follows the gate; "Testing… N s" while it runs ----------------
@pytest.mark.parametrize("field, value", [("provider", "together"), ("max_tokens", 100),
                                          ("supports_json_mode", False), ("supports_vision", True),
                                          ("supports_tool_use", False), ("supports_reasoning", True)])
def test_t6_passed_message_cleared_with_the_pass(fake, field, value):
    form = fireworks_form(fake)
    form.test()
    assert form.test_message == "Connection test passed."
    setattr(form, field, value)
    assert form.can_save is False and form.test_message == "" and form.test_ok is None


def test_t6_testing_state_replaces_the_outcome_and_a_second_test_is_refused(fake):
    form = fireworks_form(fake)
    form.test()
    call = form.begin_test()
    assert form.testing and form.test_message == "" and form.can_save is False
    with pytest.raises(InvalidRequest):
        form.begin_test()
    form.finish_test(form.call_test(call))
    assert not form.testing and form.test_message == "Connection test passed." and form.can_save


def test_t6_outcome_of_a_test_voided_while_running_is_not_shown(fake):
    form = fireworks_form(fake)
    call = form.begin_test()
    form.max_tokens = 10                  # changed while the provider was answering
    form.finish_test(form.call_test(call))
    assert form.test_message == "" and form.can_save is False


class SlowSession(FakeSession):
    """A session whose test_connection waits until released, to watch the dialog meanwhile."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.release = threading.Event()

    def test_connection(self, draft=None, /, **overrides):
        self.release.wait(30)
        return super().test_connection(draft, **overrides)


def test_t6_background_test_shows_testing_and_ignores_a_second_click():
    session = SlowSession()
    dialog = AddModelDialog(session, background=True)
    fill_fireworks(dialog)
    dialog.test_button.click()
    message = by_class(dialog, "byok-test-message")[0]
    assert dialog.form.testing and dialog.test_button.disabled
    assert "Testing…" in message.value and 'role="status"' in message.value
    dialog._on_test()                     # a click that reached the kernel anyway
    session.release.set()
    dialog.runner.wait(30)
    assert len(session.called("test_connection")) == 1
    assert not dialog.form.testing and not dialog.test_button.disabled
    assert "Connection test passed." in message.value and not dialog.save_button.disabled


# -- item 3: changes the seed does not gate on are announced --------------------------------------
@pytest.mark.parametrize("field, value", [
    ("api_key", "fw_another0key0000000"), ("provider_model_id", "accounts/acme/models/other"),
    ("reasoning_parameter", "effort"), ("input_cost_per_token", "0.0000009"),
    ("output_cost_per_token", "0.0000009"),
])
def test_t6_ungated_change_after_a_pass_keeps_save_and_says_so(fake, field, value):
    form = fireworks_form(fake, supports_reasoning=True)
    form.test()
    assert form.stale_notice == ""
    setattr(form, field, value)
    assert form.can_save is True                                   # the seed keeps Save enabled
    assert form.stale_notice.startswith(CHANGED) and form.label(field) in form.stale_notice
    form.test()
    assert form.stale_notice == ""


def test_t6_changed_notice_for_bedrock_and_url_credentials(fake):
    form = AddModelForm(fake, provider="openai_compatible")
    form.base_url, form.provider_model_id, form.display_name = "https://a.example/v1", "m", "M"
    form.test()
    form.base_url = "https://b.example/v1"
    assert "Base URL" in form.stale_notice


def test_t6_prices_filled_by_the_test_are_not_a_change():
    form = fireworks_form(FakeSession(result=PRICED))
    form.test()
    assert form.input_cost_per_token == "0.0000002" and form.stale_notice == ""


def test_t6_changed_notice_shown_by_the_dialog(fake):
    dialog = AddModelDialog(fake)
    fill_fireworks(dialog)
    dialog.test_button.click()
    dialog.view.fields["api_key"].value = "fw_changed0after0test00"
    notice = by_class(dialog, "byok-changed-since-test")[0].value
    assert CHANGED in notice and 'role="status"' in notice and not dialog.save_button.disabled


# -- item 4: pasted whitespace stripped; anything else wrong is said --------------------------------
def test_u1_surrounding_whitespace_is_stripped_from_credentials_and_urls(fake):
    form = AddModelForm(fake, provider="openai_compatible")
    form.base_url = "  https://my-vllm.example.com/v1 \n"
    form.api_key = " \tsk-pasted-with-spaces-0001\n"
    form.provider_model_id, form.display_name = "  qwen  ", "Qwen"
    form.test()
    ((_, draft, _),) = fake.called("test_connection")
    assert draft.api_key.get_secret_value() == "sk-pasted-with-spaces-0001"
    assert draft.base_url == "https://my-vllm.example.com/v1" and draft.provider_model_id == "qwen"


def test_u1_bedrock_text_credentials_are_stripped(fake):
    form = AddModelForm(fake, provider="bedrock")
    form.aws_region, form.aws_access_key_id = " us-west-2 ", "\tAKIAIOSFODNN7EXAMPLE "
    form.aws_secret_access_key = " wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY "
    form.provider_model_id, form.display_name = "anthropic.x", "Claude"
    draft = form.draft()
    assert (draft.aws_region, draft.aws_access_key_id) == ("us-west-2", "AKIAIOSFODNN7EXAMPLE")
    assert draft.aws_secret_access_key.get_secret_value() == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize("pasted, says", [
    ("fw_abc def0000000000", "space or line break inside"),
    ("fw_abc\ndef0000000000", "space or line break inside"),
    ("Bearer fw_abcdef000000", 'starts with "Bearer "'),
    ("fw_abcdéf0000000000", "non-ASCII"),
])
def test_u1_a_key_that_looks_wrong_beyond_whitespace_is_named_and_not_sent(fake, pasted, says):
    form = fireworks_form(fake, api_key=pasted)
    form.test()
    assert says in form.field_errors["api_key"] and form.field_errors["api_key"].startswith("API Key")
    assert pasted.split()[-1] not in form.test_message and pasted not in str(form.field_errors)
    assert fake.called("test_connection") == []


def test_u1_a_url_with_a_space_inside_is_named(fake):
    form = AddModelForm(fake, provider="openai_compatible")
    form.base_url, form.provider_model_id = "https://my vllm.example.com/v1", "m"
    form.test()
    assert form.field_errors["base_url"].startswith("Base URL")
    assert fake.called("test_connection") == []


# -- item 5: removing a stored optional key; dropping a typed one -----------------------------------
def oai_session(**view) -> FakeSession:
    return FakeSession(models=[make_view(slug="oc", provider="openai_compatible",
                                         base_url="https://my-vllm.example.com/v1", **view)])


def test_m14_edit_remove_stored_key_control_only_for_openai_compatible_with_a_key():
    form = EditModelForm(oai_session(), "oc")
    assert "remove_api_key" in form.visible_fields
    assert "remove_api_key" not in EditModelForm(oai_session(secret_masked=None), "oc").visible_fields
    assert "remove_api_key" not in EditModelForm(FakeSession(models=[make_view()]), "llama-ft").visible_fields
    form.remove_api_key = True
    assert form.changes() == {"remove_api_key": True}
    form.save()
    assert form.session.called("update_model")[-1][2] == {"remove_api_key": True}


def test_m14_edit_remove_and_a_new_key_together_is_a_problem():
    session = oai_session()
    form = EditModelForm(session, "oc")
    form.remove_api_key, form.api_key = True, "sk-new-key-0000000001"
    with pytest.raises(InvalidRequest):
        form.save()
    assert "remove_api_key" in form.field_errors and session.called("update_model") == []


def test_m14_edit_remove_stored_key_in_the_detail_page():
    session = oai_session()
    detail = DetailPage(session, "oc")
    detail.edit_button.click()
    box = detail.form_view.fields["remove_api_key"]
    assert box.description == "Remove stored key" and visible(box)
    box.value = True
    assert detail.form_view.fields["api_key"].placeholder == "(stored key will be removed)"
    detail.save_button.click()
    assert session.called("update_model")[-1][2] == {"remove_api_key": True}


@pytest.mark.parametrize("view", [
    dict(slug="oc", provider="openai_compatible", base_url="https://a.example/v1", secret_masked=None),
])
def test_u3_edit_secret_with_nothing_stored_does_not_promise_to_keep_it(view):
    form = EditModelForm(FakeSession(models=[make_view(**view)]), "oc")
    assert form.placeholder("api_key") != MESSAGES["keep_existing"]
    assert "no key stored" in form.placeholder("api_key")


def test_u3_edit_bedrock_switched_method_secret_is_not_kept():
    form = EditModelForm(FakeSession(models=[make_view(
        provider="bedrock", auth_method="iam", aws_region="us-west-2",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE")]), "llama-ft")
    assert form.placeholder("aws_secret_access_key") == MESSAGES["keep_existing"]
    form.auth_method = "api_key"
    assert form.placeholder("api_key") != MESSAGES["keep_existing"]
    with pytest.raises(InvalidRequest):
        form.save()
    assert form.field_errors["api_key"] == "Bedrock API Key is required"


def test_u1_emptying_a_typed_key_drops_it_so_the_test_sends_none():
    session = FakeSession()
    dialog = openai_compatible_dialog(session)
    dialog.view.fields["api_key"].value = "sk-typed-then-cleared-01"
    dialog.view.fields["api_key"].value = ""
    assert dialog.form.api_key is None
    dialog.test_button.click()
    assert session.called("test_connection")[-1][1].api_key is None


def test_u1_clear_typed_key_button_drops_a_submitted_key():
    session = FakeSession()
    dialog = openai_compatible_dialog(session)
    clear = dialog.view.clear_buttons["api_key"]
    assert not visible(clear)
    dialog.view.fields["api_key"].value = "sk-typed-then-cleared-01"
    dialog.test_button.click()                       # the box is emptied (C-7), the form holds it
    assert visible(clear) and clear.description == "Clear typed key"
    clear.click()
    assert dialog.form.api_key is None and not visible(clear)
    dialog.test_button.click()
    assert session.called("test_connection")[-1][1].api_key is None
    assert "sk-typed-then-cleared-01" not in widget_state_text(dialog)


# -- item 6: every problem at once, next to its field, in the page's labels ----------------------
def test_u1_every_problem_at_once_in_the_page_labels(fake):
    dialog = AddModelDialog(fake)
    dialog.view.fields["provider"].value = "bedrock"
    dialog.view.fields["input_cost_per_token"].value = "abc"
    dialog.test_button.click()
    errors = dialog.form.field_errors
    assert errors["provider_model_id"] == "Provider Model ID is required"
    assert errors["aws_region"] == "AWS Region is required"
    assert errors["aws_access_key_id"] == "Access Key ID is required"
    assert errors["aws_secret_access_key"] == "Secret Access Key is required"
    assert errors["input_cost_per_token"].startswith("Input cost/token (USD)")
    assert errors["slug"].startswith("Model Slug is required")
    for field, text in errors.items():          # each one next to its field, as an alert
        shown = dialog.view.errors[field]
        assert visible(shown) and 'role="alert"' in shown.value
        assert text.split(" ")[0] in shown.value
    outcome = dialog.form.test_message                     # and all of them as the test's outcome
    assert outcome.startswith("Please fix the marked fields") and dialog.form.test_ok is False
    for text in errors.values():
        assert text in outcome
    assert "_" not in outcome                               # no keyword leaks into the words
    assert 'role="alert"' in dialog.result.message.value
    assert fake.called("test_connection") == []


def test_u1_api_errors_are_shown_in_labels_next_to_their_field():
    session = FakeSession(fail={"test_connection": InvalidRequest(
        "aws_access_key_id (Access Key ID) is required for Bedrock iam")})
    form = AddModelForm(session, provider="bedrock")
    form.aws_region, form.aws_access_key_id = "us-west-2", "AKIAIOSFODNN7EXAMPLE"
    form.aws_secret_access_key, form.provider_model_id, form.display_name = "s" * 40, "anthropic.x", "C"
    form.test()
    assert form.test_message == "Access Key ID is required for Bedrock IAM Key Pair"
    assert form.field_errors["aws_access_key_id"] == form.test_message


def test_u1_save_conflict_is_shown_next_to_the_slug():
    session = FakeSession(fail={"add_model": Conflict("slug 'llama-3-1-8b-internal-v4' is taken by an "
                                                      "active custom model in org 'acme'")})
    form = fireworks_form(session)
    form.test()
    with pytest.raises(Conflict):
        form.save()
    assert form.field_errors["slug"].startswith("Model Slug 'llama-3-1-8b-internal-v4' is taken")


# -- item 8: a second Add Custom Model click keeps the draft; Cancel discards -----------------------
def test_u2_second_add_click_keeps_the_half_filled_dialog():
    page = ModelsPage(FakeSession())
    page.add_button.click()
    dialog = by_class(page, "byok-add-dialog")[0]
    fill_fireworks(dialog)
    page.add_button.click()
    (again,) = by_class(page, "byok-add-dialog")
    assert again is dialog and again.form.provider_model_id == "accounts/acme/models/llama-ft-v2"
    assert again.form.api_key.get_secret_value() == SECRET
    again.cancel_button.click()
    assert by_class(page, "byok-add-dialog") == []
    page.add_button.click()
    fresh = by_class(page, "byok-add-dialog")[0]
    assert fresh is not dialog and fresh.form.provider_model_id == "" and fresh.form.api_key is None


# -- item 9: the slug, live --------------------------------------------------------------------------
def test_m3_dialog_transliterates_accents(fake):
    form = AddModelForm(fake)
    form.display_name = "Ünïcode Modèl"
    assert form.slug == "unicode-model"


def test_m4_bad_slug_is_flagged_live_without_echoing_it_whole(fake):
    form = AddModelForm(fake)
    bad = "Q" * 200
    form.slug = bad
    message = form.field_errors["slug"]
    assert message.startswith("Model Slug") and "lower-case" in message
    assert bad not in message and "200 characters" in message
    form.slug = "good-slug"
    assert "slug" not in form.field_errors


def test_m5_platform_and_custom_clashes_are_flagged_live():
    form = AddModelForm(FakeSession(models=[make_view(slug="llama-ft")]))
    form.slug = "openai/gpt-4o"
    assert "platform model id" in form.field_errors["slug"]
    form.slug = "llama-ft"
    assert "taken by an active custom model" in form.field_errors["slug"]
    form.display_name = "Llama FT"            # the slug was edited: it no longer follows
    assert form.slug == "llama-ft"


def test_m5_clash_flagged_before_the_test_is_sent():
    session = FakeSession(models=[make_view(slug="llama-3-1-8b-internal-v4")])
    form = fireworks_form(session)
    assert "taken" in form.field_errors["slug"]
    form.test()
    assert session.called("test_connection") == [] and "Model Slug" in form.test_message


def test_u1_clearing_an_edited_slug_resumes_derivation(fake):
    form = AddModelForm(fake)
    form.display_name = "First"
    form.slug = "mine"
    form.slug = ""
    assert form.slug == "first" and form.slug_edited is False
    form.display_name = "Second"
    assert form.slug == "second"


def test_u1_clearing_the_slug_widget_resumes_derivation(fake):
    dialog = AddModelDialog(fake)
    dialog.view.fields["display_name"].value = "Ünïcode Modèl"
    assert dialog.view.fields["slug"].value == "unicode-model"
    dialog.view.fields["slug"].value = "custom"
    dialog.view.fields["slug"].value = ""
    assert dialog.view.fields["slug"].value == "unicode-model"


def test_t7_edit_change_after_a_passing_test_is_announced_and_save_stays_enabled():
    form = EditModelForm(FakeSession(models=[make_view()]), "llama-ft")
    form.test()
    assert form.test_message == "Connection test passed." and form.stale_notice == ""
    form.max_tokens = 64
    assert form.stale_notice.startswith(CHANGED) and "Max Tokens" in form.stale_notice
    assert form.can_save is True
    form.api_key = "fw_rotated_key_000001"
    assert "API Key" in form.stale_notice
    form.test()
    assert form.stale_notice == ""
    form.save()
    assert form.stale_notice == ""
