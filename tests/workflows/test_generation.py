"""generate (SPEC W-7, W-9, P-1, P-4, C-4): what goes on the wire, and one usage row per call."""
from __future__ import annotations

import base64
import math

import pytest

import byok_nb
from byok_nb import Conflict, Forbidden, InvalidRequest, LLMField, NotFound, ProviderError

from .conftest import FIREWORKS_KEY, OPENROUTER_KEY, TOOL

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
SCHEMA = {"type": "object", "properties": {"team": {"type": "string"}}, "required": ["team"],
          "additionalProperties": False}


@pytest.fixture
def wf(world):
    world.admin.create_workflow("triage", "search", fields=[
        LLMField("classify", model="ft-llama", tools=[TOOL]),
        LLMField("extract", model="ft-llama", structured_output=SCHEMA),
        LLMField("any-json", model="ft-llama", structured_output=True),
        LLMField("look", model="ft-llama", image_inputs=True),
        LLMField("think-budget", model="ft-llama", reasoning_budget=3000),
        LLMField("think-effort", model="ft-llama", reasoning_effort="high"),
        LLMField("together-budget", model="tog-effort", reasoning_budget=3000),
        LLMField("platform", model="openai/gpt-4o"),
        LLMField("platform-reasoning", model="openai/o4-mini", reasoning_budget=10000),
        LLMField("plain", model="plain"),
        LLMField("free", model="free-local"),
        LLMField("empty"),
    ])
    return world


def test_w9_custom_model_goes_to_its_provider_with_its_credentials_and_max_tokens(wf):
    c = wf.contributor.generate("triage", "plain", "Hello there")
    assert isinstance(c, byok_nb.Completion)
    assert c.text == '{"status":"ok"}' and c.model == "plain"
    path, headers, body = wf.fakes.compat.last
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == "Bearer sk-compat-test-key-00001"
    assert body["model"] == "plain-model"
    assert body["max_tokens"] == 512                          # the model's Max Tokens (M-7)
    assert body["messages"] == [{"role": "user", "content": "Hello there"}]
    for key in ("response_format", "tools", "reasoning", "reasoning_effort", "thinking"):
        assert key not in body
    assert c.input_tokens > 0 and c.output_tokens > 0 and c.latency_ms > 0


def test_w9_platform_model_goes_through_openrouter_with_the_operator_key(wf):
    c = wf.billing_member.generate("search/triage", "platform",
                                   [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert c.model == "openai/gpt-4o"
    path, headers, body = wf.fakes.openrouter.last
    assert path == "/api/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {OPENROUTER_KEY}"
    assert body["model"] == "openai/gpt-4o" and body["max_tokens"] == 16384
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert not wf.fakes.fireworks.requests   # BYOK and platform never cross


def test_w9_tools_are_sent_and_tool_calls_returned(wf):
    wf.fakes.fireworks.tool_call = {"name": "route_ticket", "arguments": {"team": "search"}}
    c = wf.admin.generate("triage", "classify", "Route this", tool_choice="auto")
    body = wf.fakes.fireworks.last.json
    assert body["tools"] == [TOOL] and body["tool_choice"] == "auto"
    assert body["model"] == "accounts/acme/models/ft-llama" and body["max_tokens"] == 2048
    assert wf.fakes.fireworks.last.headers["authorization"] == f"Bearer {FIREWORKS_KEY}"
    assert c.tool_calls[0]["function"]["name"] == "route_ticket"
    assert c.tool_calls[0]["function"]["arguments"] == '{"team": "search"}'


def test_w9_structured_output_uses_native_json_schema_and_parses_json(wf):
    wf.fakes.fireworks.reply = '{"team": "billing"}'
    c = wf.admin.generate("triage", "extract", "Which team?")
    fmt = wf.fakes.fireworks.last.json["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"] == SCHEMA and fmt["json_schema"]["name"] == "extract"
    assert c.json == {"team": "billing"}
    # structured_output=True: any JSON object, with an instruction to answer in JSON.
    wf.fakes.fireworks.reply = '```json\n{"ok": true}\n```'
    c = wf.admin.generate("triage", "any-json", "Answer")
    body = wf.fakes.fireworks.last.json
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert body["messages"][0]["role"] == "system" and "JSON" in body["messages"][0]["content"]
    assert c.json == {"ok": True}
    # Not JSON: the text is kept and json is None.
    wf.fakes.fireworks.reply = "sorry"
    assert wf.admin.generate("triage", "extract", "x").json is None


def test_w9_images_become_image_url_parts(wf):
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    wf.admin.generate("triage", "look", "What is this?", images=[PNG])
    content = wf.fakes.fireworks.last.json["messages"][-1]["content"]
    assert content == [{"type": "text", "text": "What is this?"},
                       {"type": "image_url", "image_url": {"url": data_url}}]
    wf.admin.generate("triage", "look", [{"role": "user", "content": [
        {"type": "text", "text": "and this?"}, {"type": "image_url", "image_url": {"url": data_url}}]}])
    assert wf.fakes.fireworks.last.json["messages"][-1]["content"][1]["image_url"]["url"] == data_url


def test_p4_images_to_a_model_without_vision_are_refused_before_any_call(wf):
    with pytest.raises(InvalidRequest, match="supports_vision"):
        wf.admin.generate("triage", "plain", "see", images=[PNG])
    assert not wf.fakes.compat.requests
    assert wf.admin.usage().empty


@pytest.mark.parametrize("field, fake, expected", [
    # Fireworks, parameter max_tokens: the budget as `thinking`; an effort converted to a budget
    # kept below max_tokens (2048): high 16384 -> 2047.
    ("think-budget", "fireworks", {"thinking": {"type": "enabled", "budget_tokens": 3000}}),
    ("think-effort", "fireworks", {"thinking": {"type": "enabled", "budget_tokens": 2047}}),
    # Together, parameter "effort": a 3000-token budget is converted to medium.
    ("together-budget", "together", {"reasoning_effort": "medium"}),
    # OpenRouter, o4-mini takes effort: 10000 tokens -> high, canonical form.
    ("platform-reasoning", "openrouter", {"reasoning": {"effort": "high"}}),
])
def test_p1_reasoning_is_translated_per_provider(wf, field, fake, expected):
    wf.admin.generate("triage", field, "Think")
    body = getattr(wf.fakes, fake).last.json
    for key, value in expected.items():
        assert body[key] == value
    for other in {"thinking", "reasoning", "reasoning_effort"} - set(expected):
        assert other not in body


def test_p1_no_reasoning_sent_when_the_field_sets_none(wf):
    wf.admin.generate("triage", "classify", "x")
    assert not {"thinking", "reasoning", "reasoning_effort"} & set(wf.fakes.fireworks.last.json)


def test_w9_one_usage_row_per_successful_call(wf):
    c = wf.contributor.generate("triage", "plain", "hi")
    wf.contributor.generate("triage", "platform", "hi")
    u = wf.admin.usage()
    assert len(u) == 2
    first = u.iloc[0]
    assert (first["org"], first["project"], first["workflow"], first["field"], first["model"],
            first["model_type"], first["provider"]) == ("acme", "search", "triage", "plain", "plain", "custom",
                                                        "openai_compatible")
    assert first["input_tokens"] == c.input_tokens and first["output_tokens"] == c.output_tokens
    assert bool(first["ok"]) and first["latency_ms"] > 0
    assert math.isnan(first["cost_usd"])                       # unpriced
    second = u.iloc[1]
    assert (second["model_type"], second["provider"]) == ("platform", "openrouter")
    assert second["cost_usd"] == pytest.approx(second["input_tokens"] * 2.5e-6 + second["output_tokens"] * 1e-5)


def test_w9_failed_calls_are_recorded_then_reraised(wf):
    wf.fakes.fireworks.fail_status = 503
    with pytest.raises(ProviderError) as info:
        wf.admin.generate("triage", "classify", "x")
    assert info.value.status_code == 503
    wf.fakes.fireworks.fail_status = None
    wf.fakes.fireworks.api_key = "fw_rotated_elsewhere_0001"   # our stored key is now wrong: 401
    with pytest.raises(ProviderError) as info:
        wf.admin.generate("triage", "classify", "x")
    assert info.value.status_code == 401
    assert FIREWORKS_KEY not in str(info.value)
    u = wf.admin.usage()
    assert len(u) == 2 and not u["ok"].any()
    assert (u["input_tokens"] == 0).all() and (u["output_tokens"] == 0).all()
    assert (u["cost_usd"] == 0).all()                           # priced model, no tokens
    report = wf.admin.cost_report(by="model")
    assert report.loc[0, "calls"] == 2 and report.loc[0, "failed_calls"] == 2


def test_w9_transport_failures_are_recorded_too(wf, monkeypatch):
    monkeypatch.setenv("BYOK_NB_FIREWORKS_BASE_URL", "http://127.0.0.1:9/inference/v1")   # nothing listens
    with pytest.raises(ProviderError):
        wf.admin.generate("triage", "classify", "x")
    u = wf.admin.usage()
    assert len(u) == 1 and not u.loc[0, "ok"]


def test_w7_deleted_model_fails_with_the_exact_conflict(wf):
    wf.admin.delete_model("ft-llama")
    with pytest.raises(Conflict) as info:
        wf.contributor.generate("triage", "classify", "x")
    assert info.value.message == "model 'ft-llama' is deleted; assign another model to field 'classify'"
    assert info.value.status_code == 409
    assert not wf.fakes.fireworks.requests


def test_w7_unknown_model_reference_fails_with_the_same_conflict(wf):
    from byok_nb.store import schema, write_tx

    with write_tx(wf.registry._engine) as conn:   # e.g. a platform model dropped from the catalogue
        conn.execute(schema.workflow_fields.update().where(schema.workflow_fields.c.name == "platform")
                     .values(model_ref="vendor/retired-model"))
    with pytest.raises(Conflict) as info:
        wf.admin.generate("triage", "platform", "x")
    assert str(info.value) == "model 'vendor/retired-model' is deleted; assign another model to field 'platform'"


def test_w7_reactivated_model_generates_again(wf):
    wf.admin.delete_model("plain")
    with pytest.raises(Conflict):
        wf.admin.generate("triage", "plain", "x")
    wf.admin.add_model(provider="openai_compatible", base_url=wf.fakes.compat.base_url, api_key="sk-compat-test-key-00001",
                       provider_model_id="plain-model", display_name="", slug="plain", max_tokens=256,
                       supports_json_mode=False, supports_tool_use=False, test=False)
    wf.admin.generate("triage", "plain", "x")
    assert wf.fakes.compat.last.json["max_tokens"] == 256


def test_c4_undecryptable_credentials_fail_clearly_and_record_a_failed_row(wf, registry_url):
    other = byok_nb.open_registry(registry_url, master_key=byok_nb.generate_master_key())
    try:
        s = other.session(org="acme", user="cy")
        with pytest.raises(byok_nb.RegistryError) as info:
            s.generate("triage", "classify", "x")
        assert "credentials cannot be decrypted — re-enter them" in info.value.message
        assert "ft-llama" in info.value.message
        assert not wf.fakes.fireworks.requests
        # Platform models and the model list keep working.
        s.generate("triage", "platform", "x")
        assert "ft-llama" in set(s.list_models()["ref"])
        u = s.usage()
        assert list(u["ok"]) == [False, True]
        assert u.loc[0, "model"] == "ft-llama"
    finally:
        other.close()


def test_w9_field_without_a_model_and_bad_options(wf):
    with pytest.raises(InvalidRequest, match="no model"):
        wf.admin.generate("triage", "empty", "x")
    with pytest.raises(InvalidRequest, match="temperature"):
        wf.admin.generate("triage", "plain", "x", temperature=0.2)
    with pytest.raises(InvalidRequest, match="max_tokens"):
        wf.admin.generate("triage", "plain", "x", max_tokens=0)
    with pytest.raises(InvalidRequest):
        wf.admin.generate("triage", "plain", [])
    assert wf.admin.usage().empty


def test_w9_max_tokens_option_lowers_the_cap(wf):
    wf.admin.generate("triage", "plain", "x", max_tokens=64)
    assert wf.fakes.compat.last.json["max_tokens"] == 64


def test_w9_capability_removed_after_assignment_is_refused_naming_the_flag(wf):
    wf.admin.update_model("ft-llama", supports_tool_use=False)
    with pytest.raises(InvalidRequest, match="supports_tool_use"):
        wf.admin.generate("triage", "classify", "x")
    assert not wf.fakes.fireworks.requests


def test_m1_generate_is_for_members_only(wf):
    with pytest.raises(Forbidden):
        wf.outsider.generate("triage", "plain", "x")
    with pytest.raises(NotFound):   # globex has no workflow "triage"; acme's is invisible to it
        wf.globex_admin.generate("triage", "plain", "x")
    assert not wf.fakes.compat.requests


def test_w9_bedrock_custom_model_through_converse(wf):
    wf.admin.add_model(provider="bedrock", aws_region="us-east-1", auth_method="iam",
                       aws_access_key_id="AKIAFAKEBEDROCK00001",
                       aws_secret_access_key="fake/secret/key/0123456789abcdefghijklmn",
                       provider_model_id="anthropic.claude-3-haiku-20240307-v1:0", display_name="Haiku BR",
                       max_tokens=1000, input_cost_per_token="0.00000025", output_cost_per_token="0.00000125",
                       test=False)
    wf.admin.create_workflow("br", "search", fields=[LLMField("chat", model="haiku-br")])
    c = wf.admin.generate("br", "chat", "Hello")
    assert c.text and c.model == "haiku-br"
    req = wf.fakes.bedrock.last
    assert "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse" in req.path or "converse" in req.path
    assert req.json["inferenceConfig"]["maxTokens"] == 1000
    u = wf.admin.usage()
    assert u.iloc[-1]["provider"] == "bedrock" and u.iloc[-1]["cost_usd"] > 0
