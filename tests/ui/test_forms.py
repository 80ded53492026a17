"""The pure-Python form models (U-1, T-4 … T-7, C-7, M-3, M-8, M-10, M-14, M-16) — no widgets."""
from __future__ import annotations

import sys
from decimal import Decimal

import pytest

from byok_nb.services import model_rules as rules
from byok_nb.core.domain import PROVIDERS, ConnectionTest
from byok_nb.core.errors import Forbidden, InvalidRequest
from byok_nb.ui.forms import (
    AUTH_METHOD_LABELS, LABELS, AddModelForm, EditModelForm, credential_layout, label_for, reused_fields,
)

from .uikit import FakeSession, make_view

FAILED = ConnectionTest(ok=False, message="401 Unauthorized: invalid API key", status_code=401)
PRICED = ConnectionTest(ok=True, message="Connection test passed.",
                        input_cost_per_token=Decimal("0.0000002"), output_cost_per_token=Decimal("0.0000008"),
                        price_source="genai-prices")
UNPRICED = ConnectionTest(ok=True, message="Connection test passed.",
                          warning="Cost tracking requires per-token pricing")


def filled_form(session, **fields) -> AddModelForm:
    form = AddModelForm(session)
    form.api_key = "fw_abcdefghijklmnop"
    form.provider_model_id = "accounts/acme/models/llama-ft-v2"
    form.display_name = "Llama 3.1 8B (internal v4)"
    for name, value in fields.items():
        setattr(form, name, value)
    return form


def passed_form(session) -> AddModelForm:
    form = filled_form(session)
    form.test()
    assert form.can_save
    return form


def test_ui_forms_import_no_widgets():
    """ARCHITECTURE: forms.py imports no widgets (checked in a fresh interpreter)."""
    import subprocess

    code = ("import sys, byok_nb.ui.forms; "
            "assert 'ipywidgets' not in sys.modules, sorted(m for m in sys.modules if 'widget' in m)")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- T-6 gating ---------------------------------------------------------------------------------
def test_t6_save_disabled_until_test_passes(fake):
    form = filled_form(fake)
    assert form.can_save is False
    result = form.test()
    assert result.ok and form.test_passed and form.can_save
    assert form.test_message == "Connection test passed."


def test_t6_failed_test_keeps_save_disabled_and_shows_exact_error():
    form = filled_form(FakeSession(result=FAILED))
    form.test()
    assert form.can_save is False and form.test_ok is False
    assert form.test_message == "401 Unauthorized: invalid API key"


def test_t6_failed_retest_revokes_an_earlier_success():
    session = FakeSession()
    form = passed_form(session)
    session.result = FAILED
    form.test()
    assert form.can_save is False


def test_t6_provider_change_clears_success(fake):
    form = passed_form(fake)
    form.provider = "together"
    assert form.can_save is False and form.test_passed is False


def test_t6_max_tokens_change_clears_success(fake):
    form = passed_form(fake)
    form.max_tokens = 8192
    assert form.can_save is False


@pytest.mark.parametrize("flag", ["supports_json_mode", "supports_vision", "supports_tool_use",
                                  "supports_reasoning"])
def test_t6_each_capability_toggle_clears_success(fake, flag):
    form = passed_form(fake)
    setattr(form, flag, not getattr(form, flag))
    assert form.can_save is False


@pytest.mark.parametrize("field, value", [
    ("api_key", "fw_another_key_123456"),
    ("provider_model_id", "accounts/acme/models/other"),
    ("reasoning_parameter", "effort"),
    ("input_cost_per_token", "0.0000003"),
    ("output_cost_per_token", "0.0000006"),
    ("display_name", "Another name"),
    ("slug", "another-slug"),
])
def test_t6_edits_that_keep_the_success(fake, field, value):
    form = passed_form(fake)
    setattr(form, field, value)
    assert form.can_save is True


def test_t6_bedrock_credential_edits_keep_the_success(fake):
    form = AddModelForm(fake, provider="bedrock")
    form.aws_region, form.aws_access_key_id = "us-west-2", "AKIAIOSFODNN7EXAMPLE"
    form.aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    form.provider_model_id = "anthropic.claude-3-5-sonnet-20240620-v1:0"
    form.display_name = "Claude"
    form.test()
    form.aws_region = "eu-west-1"
    form.aws_access_key_id = "AKIAOTHER0000EXAMPLE"
    form.aws_secret_access_key = "another-secret-value-123"
    assert form.can_save is True


def test_t6_save_refused_without_a_passing_test(fake):
    form = filled_form(fake)
    with pytest.raises(InvalidRequest, match="Test Connection"):
        form.save()
    assert fake.called("add_model") == []


def test_t6_registry_error_during_test_is_a_failed_test_with_its_message():
    form = filled_form(FakeSession(fail={"test_connection": Forbidden("managing custom models requires the org_admin role in 'acme'")}))
    result = form.test()
    assert result.ok is False and form.can_save is False
    assert form.test_message == "managing custom models requires the org_admin role in 'acme'"


def test_t6_invalid_field_is_a_failed_test_without_calling_the_session(fake):
    form = filled_form(fake, input_cost_per_token="abc")
    form.test()
    # Issue 12 item 6: the app speaks the page's labels (the API keeps the keyword, M-2).
    assert form.test_ok is False and "Input cost/token (USD)" in form.test_message
    assert "input_cost_per_token" not in form.test_message
    assert form.field_errors["input_cost_per_token"].startswith("Input cost/token (USD)")
    assert fake.called("test_connection") == []


# -- U-1: slug auto-fill (M-3) -----------------------------------------------------------------
def test_u1_m3_slug_autofills_from_display_name(fake):
    form = AddModelForm(fake)
    form.display_name = "Llama 3.1 8B (internal v4)"
    assert form.slug == "llama-3-1-8b-internal-v4" == rules.derive_slug(form.display_name)
    form.display_name = "Llama 3.1 8B (internal v5)"
    assert form.slug == "llama-3-1-8b-internal-v5"
    assert form.slug_edited is False


def test_u1_slug_autofill_stops_after_manual_edit(fake):
    form = AddModelForm(fake)
    form.display_name = "First"
    form.slug = "my-own-slug"
    assert form.slug_edited is True
    form.display_name = "Second name"
    assert form.slug == "my-own-slug"


def test_u1_underivable_display_name_leaves_slug_blank(fake):
    form = AddModelForm(fake)
    form.display_name = "!!!"
    assert form.slug == "" and form.slug_edited is False


# -- U-1: visibility per provider and Bedrock method (C-1) -------------------------------------
@pytest.mark.parametrize("provider, auth_method, expected", [
    ("fireworks", None, ("api_key",)),
    ("together", None, ("api_key",)),
    ("bedrock", "iam", ("auth_method", "aws_region", "aws_access_key_id", "aws_secret_access_key")),
    ("bedrock", "api_key", ("auth_method", "aws_region", "api_key")),
    ("huggingface", None, ("api_key", "endpoint_url")),
    ("openai_compatible", None, ("base_url", "api_key")),
])
def test_u1_c1_visible_credentials_per_provider(fake, provider, auth_method, expected):
    form = AddModelForm(fake, provider=provider)
    if auth_method:
        form.auth_method = auth_method
    creds = [f for f in form.visible_fields if f in rules.ALL_CREDENTIAL_FIELDS]
    assert tuple(creds) == expected
    allowed, _ = rules.credential_fields(provider, auth_method)
    assert set(credential_layout(provider, auth_method)) == set(allowed)
    assert form.visible_fields[0] == "provider"
    for common in ("provider_model_id", "display_name", "slug", "max_tokens", "supports_json_mode",
                   "supports_vision", "supports_tool_use", "supports_reasoning", "input_cost_per_token",
                   "output_cost_per_token"):
        assert common in form.visible_fields


@pytest.mark.parametrize("provider, auth_method, label", [
    ("fireworks", None, "API Key"), ("together", None, "API Key"), ("openai_compatible", None, "API Key"),
    ("huggingface", None, "API Token"), ("bedrock", "api_key", "Bedrock API Key"),
])
def test_u1_secret_label_per_provider(fake, provider, auth_method, label):
    form = AddModelForm(fake, provider=provider)
    if auth_method:
        form.auth_method = auth_method
    assert form.label("api_key") == label == label_for("api_key", provider)


def test_u1_bedrock_auth_method_labels():
    assert AUTH_METHOD_LABELS == {"iam": "IAM Key Pair (Access Key + Secret Key)",
                                  "api_key": "Bedrock API Key (Bearer Token)"}


def test_u1_labels_word_for_word():
    assert LABELS == {
        "provider": "Provider", "reuse_credentials_from": "Reuse saved credentials",
        "provider_model_id": "Provider Model ID", "display_name": "Display Name", "slug": "Model Slug",
        "max_tokens": "Max Tokens", "supports_json_mode": "Supports JSON mode",
        "supports_vision": "Supports vision / image inputs", "supports_tool_use": "Supports tool use",
        "supports_reasoning": "Supports extended reasoning", "reasoning_parameter": "Reasoning parameter name",
        "input_cost_per_token": "Input cost/token (USD)", "output_cost_per_token": "Output cost/token (USD)",
        "api_key": "API Key", "base_url": "Base URL", "endpoint_url": "Inference Endpoint URL",
        "aws_region": "AWS Region", "auth_method": "Authentication Method",
        "aws_access_key_id": "Access Key ID", "aws_secret_access_key": "Secret Access Key",
        "remove_api_key": "Remove stored key",
    }


def test_u1_m10_reasoning_parameter_visible_only_with_reasoning(fake):
    form = AddModelForm(fake)
    assert "reasoning_parameter" not in form.visible_fields
    form.supports_reasoning = True
    assert "reasoning_parameter" in form.visible_fields
    form.supports_reasoning = False
    assert "reasoning_parameter" not in form.visible_fields


@pytest.mark.parametrize("provider, field, example", [
    ("fireworks", "provider_model_id", "accounts/acme/models/llama-ft-v2"),
    ("bedrock", "provider_model_id", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ("fireworks", "api_key", "fw_..."),
    ("huggingface", "api_key", "hf_..."),
    ("huggingface", "endpoint_url", "https://xxxx.us-east-1.aws.endpoints.huggingface.cloud"),
    ("openai_compatible", "base_url", "https://my-vllm.example.com/v1"),
    ("bedrock", "aws_region", "us-west-2"),
    ("bedrock", "aws_access_key_id", "AKIA..."),
])
def test_u1_placeholder_examples_per_provider(fake, provider, field, example):
    assert AddModelForm(fake, provider=provider).placeholder(field) == example


def test_u1_placeholders_differ_between_providers(fake):
    examples = {AddModelForm(fake, provider=p).placeholder("provider_model_id") for p in PROVIDERS}
    assert len(examples) == len(PROVIDERS)


# -- U-1 / C-6: reuse ---------------------------------------------------------------------------
def test_u1_c6_reuse_dropdown_only_when_sources_exist():
    source = make_view(slug="old-fw", display_name="Old FW")
    session = FakeSession(sources={("fireworks", None): [source]})
    form = AddModelForm(session)
    assert form.show_reuse and "reuse_credentials_from" in form.visible_fields
    assert form.reuse_options == [("Old FW (old-fw) ****wxyz", "old-fw")]
    form.provider = "together"
    assert not form.show_reuse and "reuse_credentials_from" not in form.visible_fields
    assert AddModelForm(FakeSession()).show_reuse is False


def test_u1_c6_reuse_sources_follow_bedrock_auth_method():
    iam = make_view(slug="br-iam", provider="bedrock", auth_method="iam")
    session = FakeSession(sources={("bedrock", "iam"): [iam]})
    form = AddModelForm(session, provider="bedrock")
    assert [slug for _, slug in form.reuse_options] == ["br-iam"]
    form.reuse_credentials_from = "br-iam"
    form.auth_method = "api_key"
    assert form.reuse_options == [] and form.reuse_credentials_from == ""
    assert ("reuse_sources", "bedrock", "api_key") in session.calls


def test_u1_c6_choosing_a_source_disables_credential_inputs(fake):
    source = make_view(slug="vllm", provider="openai_compatible", base_url="https://my-vllm.example.com/v1")
    session = FakeSession(sources={("openai_compatible", None): [source]})
    form = AddModelForm(session, provider="openai_compatible")
    form.base_url, form.api_key = "https://typed.example.com/v1", "sk-typedkey12345"
    form.reuse_credentials_from = "vllm"
    assert set(form.disabled_fields) == {"api_key", "base_url"}
    assert form.placeholder("api_key") == "(Using saved credentials)"
    assert form.placeholder("base_url") == "(Using saved credentials)"
    assert form.api_key is None and form.base_url == ""
    form.provider_model_id, form.display_name = "m", "Reused"
    draft = form.draft()
    assert draft.reuse_credentials_from == "vllm"
    assert draft.api_key is None and draft.base_url is None
    form.reuse_credentials_from = ""
    assert form.disabled_fields == ()


def test_u1_c6_bedrock_iam_reuse_disables_secret_and_access_key_id_not_region():
    assert reused_fields("bedrock", "iam") == ("aws_secret_access_key", "aws_access_key_id")
    assert reused_fields("bedrock", "api_key") == ("api_key",)
    assert reused_fields("huggingface", None) == ("api_key",)


def test_u1_reuse_source_lookup_failure_means_no_dropdown():
    form = AddModelForm(FakeSession(fail={"reuse_sources": RuntimeError("db down")}))
    assert form.show_reuse is False


# -- T-4 costs and warnings ---------------------------------------------------------------------
def test_t4_cost_autofill_fills_only_empty_fields():
    form = filled_form(FakeSession(result=PRICED), input_cost_per_token="0.0000005")
    form.test()
    assert form.input_cost_per_token == "0.0000005"          # typed: never overwritten
    assert form.output_cost_per_token == "0.0000008"         # empty: filled
    assert form.can_save


def test_t4_cost_autofill_both_empty():
    form = filled_form(FakeSession(result=PRICED))
    form.test()
    assert (form.input_cost_per_token, form.output_cost_per_token) == ("0.0000002", "0.0000008")


def test_t4_pricing_warning_from_the_result():
    form = filled_form(FakeSession(result=UNPRICED))
    form.test()
    assert form.pricing_warning == "Cost tracking requires per-token pricing"
    assert form.input_cost_per_token == "" and form.can_save


def test_t4_failed_test_fills_nothing():
    failed_but_priced = FAILED.model_copy(update={"input_cost_per_token": Decimal("1")})
    form = filled_form(FakeSession(result=failed_but_priced))
    form.test()
    assert form.input_cost_per_token == "" and form.pricing_warning == ""


def test_m8_per_million_cost_warning(fake):
    form = AddModelForm(fake)
    assert form.warnings == []
    form.input_cost_per_token = "0.30"
    assert any("per-1M-token" in w and "Input cost/token (USD)" in w for w in form.warnings)
    form.input_cost_per_token = "0.0000003"
    assert form.warnings == []


def test_m8_unparseable_cost_is_a_warning_not_an_exception(fake):
    form = AddModelForm(fake)
    form.output_cost_per_token = "cheap"
    assert any("Output cost/token (USD)" in w for w in form.warnings)


def test_m10_unrecognized_reasoning_parameter_warning_only_with_reasoning(fake):
    form = AddModelForm(fake)
    form.reasoning_parameter = "reasoning_effort"
    assert form.warnings == []
    form.supports_reasoning = True
    assert any("reasoning_effort" in w and "not recognized" in w for w in form.warnings)
    form.reasoning_parameter = "effort"
    assert form.warnings == []


# -- Save and C-7 ---------------------------------------------------------------------------------
def test_u1_save_calls_add_model_with_test_false(fake):
    form = passed_form(fake)
    model = form.save()
    ((_, draft, kwargs),) = fake.called("add_model")
    assert kwargs == {"test": False}
    assert draft.slug == "llama-3-1-8b-internal-v4" and draft.api_key.get_secret_value() == "fw_abcdefghijklmnop"
    assert model.slug == "llama-3-1-8b-internal-v4" and form.saved is model
    assert form.status == "Saved model 'llama-3-1-8b-internal-v4'."


def test_c7_form_clears_secrets_after_save(fake):
    form = passed_form(fake)
    form.save()
    assert form.api_key is None and form.aws_secret_access_key is None
    assert form.secret_values() == []
    assert form.can_save is False            # saved once; a second save would only collide


def test_c7_failed_save_keeps_secrets_for_a_retry():
    from byok_nb.core.errors import Conflict

    session = FakeSession(fail={"add_model": Conflict("slug 'x' is taken")})
    form = passed_form(session)
    with pytest.raises(Conflict):
        form.save()
    assert form.api_key is not None and form.can_save


def test_c3_form_repr_and_draft_never_show_the_secret(fake):
    form = filled_form(fake)
    assert "fw_abcdefghijklmnop" not in repr(form.api_key)
    assert "fw_abcdefghijklmnop" not in repr(form.draft())


def test_u1_provider_change_forgets_typed_secrets(fake):
    form = filled_form(fake)
    form.provider = "openai_compatible"
    assert form.api_key is None


def test_c1_draft_sends_only_the_visible_credentials(fake):
    form = AddModelForm(fake, provider="bedrock")
    form.aws_region, form.aws_access_key_id = "us-west-2", "AKIAIOSFODNN7EXAMPLE"
    form.aws_secret_access_key, form.api_key = "secret-secret-secret", "ABSKbearer123456"
    form.provider_model_id, form.display_name = "anthropic.claude-3-5-sonnet-20240620-v1:0", "Claude"
    draft = form.draft()
    assert draft.auth_method == "iam" and draft.api_key is None
    assert draft.aws_secret_access_key.get_secret_value() == "secret-secret-secret"
    form.auth_method = "api_key"          # clears every credential input (issue 12 item 1)
    form.aws_region, form.api_key = "us-west-2", "ABSKbearer123456"
    draft = form.draft()
    assert draft.aws_access_key_id is None and draft.aws_secret_access_key is None
    assert draft.api_key.get_secret_value() == "ABSKbearer123456"


def test_m2_blank_slug_means_derive(fake):
    form = filled_form(fake, display_name="!!!")      # nothing to derive: the slug stays blank
    form.slug = ""
    assert form.draft().slug is None


# -- Edit mode (U-3, T-5, T-7, M-13, M-14, M-16) ---------------------------------------------------
def edit_session(**view) -> FakeSession:
    return FakeSession(models=[make_view(**view)])


def test_t7_edit_save_is_never_gated_on_a_test():
    session = edit_session()
    form = EditModelForm(session, "llama-ft")
    assert form.can_save is True
    form.supports_vision = True
    form.max_tokens = 100
    assert form.can_save is True
    session.result = FAILED
    form.test()
    assert form.can_save is True
    form.save()
    assert session.called("update_model")[0][2] == {"supports_vision": True, "max_tokens": 100}


def test_u3_m13_edit_provider_and_slug_are_read_only():
    form = EditModelForm(edit_session(), "llama-ft")
    assert (form.provider, form.slug) == ("fireworks", "llama-ft")
    from traitlets import TraitError

    with pytest.raises(TraitError):
        form.provider = "together"
    with pytest.raises(TraitError):
        form.slug = "other"


def test_u3_m14_edit_secret_placeholder_and_blank_secret_omitted():
    form = EditModelForm(edit_session(), "llama-ft")
    assert form.placeholder("api_key") == "Leave blank to keep existing"
    assert form.api_key is None
    assert form.changes() == {}


def test_m14_edit_changes_only_changed_fields():
    session = edit_session(input_cost_per_token=Decimal("0.0000003"))
    form = EditModelForm(session, "llama-ft")
    assert form.input_cost_per_token == "0.0000003"
    form.display_name = "Renamed"
    form.input_cost_per_token = "3e-7"                   # same value, other spelling: unchanged
    form.output_cost_per_token = "0.0000006"
    form.api_key = "fw_rotated_key_0000"
    changes = form.changes()
    assert set(changes) == {"display_name", "output_cost_per_token", "api_key"}
    assert changes["output_cost_per_token"] == Decimal("0.0000006")
    assert changes["api_key"].get_secret_value() == "fw_rotated_key_0000"
    form.input_cost_per_token = ""
    assert form.changes()["input_cost_per_token"] is None   # blank disables cost tracking (M-8)


def test_t5_edit_test_runs_on_the_slug_with_overrides():
    session = edit_session()
    form = EditModelForm(session, "llama-ft")
    form.max_tokens = 64
    form.test()
    ((_, target, overrides),) = session.called("test_connection")
    assert target == "llama-ft" and overrides == {"max_tokens": 64}    # no api_key: stored one (T-5)
    assert form.test_message == "Connection test passed."


def test_m16_edit_bedrock_auth_switch_shows_new_fields_and_sends_them():
    session = edit_session(provider="bedrock", auth_method="iam", aws_region="us-west-2",
                           aws_access_key_id="AKIAIOSFODNN7EXAMPLE", provider_model_id="anthropic.x")
    form = EditModelForm(session, "llama-ft")
    assert "aws_secret_access_key" in form.visible_fields and "api_key" not in form.visible_fields
    assert form.aws_access_key_id == "AKIAIOSFODNN7EXAMPLE"
    form.auth_method = "api_key"
    assert "api_key" in form.visible_fields
    assert "aws_access_key_id" not in form.visible_fields and "aws_secret_access_key" not in form.visible_fields
    assert form.label("api_key") == "Bedrock API Key"
    form.api_key = "ABSKnewbearerkey0001"
    changes = form.changes()
    assert set(changes) == {"auth_method", "api_key"} and changes["auth_method"] == "api_key"


def test_c7_edit_clears_secrets_after_save_and_reloads():
    session = edit_session()
    form = EditModelForm(session, "llama-ft")
    form.api_key = "fw_rotated_key_0000"
    form.display_name = "Renamed"
    form.save()
    assert form.api_key is None and form.changes() == {}
    assert form.model.display_name == "Renamed"
    assert form.status == "Saved changes to 'llama-ft'."


def test_t4_edit_test_fills_empty_costs_which_then_become_changes():
    session = edit_session()
    session.result = PRICED
    form = EditModelForm(session, "llama-ft")
    form.test()
    assert form.changes() == {"input_cost_per_token": Decimal("0.0000002"),
                              "output_cost_per_token": Decimal("0.0000008"),
                              "price_source": "genai-prices"}     # P-8: the lookup's, recorded
