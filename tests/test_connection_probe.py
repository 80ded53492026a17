"""SPEC T-1, T-2, T-3, T-8: the Test Connection probe against loopback fakes of the real providers."""
from __future__ import annotations

import json
import time

import pytest
from pydantic import SecretStr

from byok_nb.providers.connection_test import (JSON_MODE_HINT, PASSED, PROMPT, STATUS_SCHEMA, probe,
                                     reply_is_expected)
from byok_nb.providers import ProviderHub, Target
from byok_nb.testing import FakeBedrock, FakeOpenAIProvider

FW_KEY = "fw_ProbeTestKey0123456789"
MODEL = "accounts/acme/models/llama-v3p1-8b-ft"
AKID, AWS_SECRET = "AKIAPROBETEST0000001", "probe/secret/0123456789abcdefghijklmnopq"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture
def hub():
    with ProviderHub(timeout=3.0) as provider_hub:
        yield provider_hub


@pytest.fixture
def fireworks(monkeypatch):
    """A Fireworks fake serving MODEL that BYOK_NB_FIREWORKS_BASE_URL points at."""
    with FakeOpenAIProvider("fireworks", api_key=FW_KEY, models=[MODEL]) as fake:
        monkeypatch.setenv("BYOK_NB_FIREWORKS_BASE_URL", fake.base_url)
        yield fake


def fw_target(key: str = FW_KEY) -> Target:
    return Target("fireworks", MODEL, api_key=SecretStr(key))


def run(hub, target=None, *, max_tokens=4096, json_mode=True, model=MODEL):
    return probe(hub.adapter(target or fw_target()), model_id=model, max_tokens=max_tokens,
                 supports_json_mode=json_mode)


def test_t3_success_message_is_exact_and_carries_usage_and_latency(hub, fireworks):
    outcome = run(hub)
    assert outcome.ok is True
    assert outcome.message == "Connection test passed." == PASSED
    assert outcome.reply_ok is True
    assert outcome.input_tokens > 0 and outcome.output_tokens > 0
    assert 0 < outcome.latency_ms < 3000
    assert outcome.status_code == 200 and outcome.hint is None


def test_t1_one_minimal_request_with_the_models_cap_and_no_reasoning_or_tools(hub, fireworks):
    run(hub, max_tokens=1234)
    assert len(fireworks.requests) == 1
    body = fireworks.last.json
    assert body["max_tokens"] == 1234
    assert body["model"] == MODEL
    assert body["messages"] == [{"role": "user", "content": PROMPT}]
    assert '{"status":"ok"}' in PROMPT
    assert not {"tools", "tool_choice", "reasoning", "reasoning_effort", "thinking"} & set(body)


def test_t2_json_mode_on_uses_native_structured_output(hub, fireworks):
    run(hub, json_mode=True)
    assert fireworks.last.json["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "connection_test", "schema": STATUS_SCHEMA, "strict": True}}
    assert STATUS_SCHEMA == {"type": "object",
                             "properties": {"status": {"type": "string", "enum": ["ok"]}},
                             "required": ["status"], "additionalProperties": False}


def test_t2_json_mode_off_uses_the_prompt_alone(hub, fireworks):
    outcome = run(hub, json_mode=False)
    assert "response_format" not in fireworks.last.json
    assert outcome.ok and outcome.reply_ok


def test_t2_rejected_native_json_shows_the_providers_error_and_a_hint_without_fallback(hub, fireworks):
    fireworks.reject_native_json = True
    outcome = run(hub, json_mode=True)
    assert outcome.ok is False
    assert outcome.status_code == 400
    assert outcome.message == ("Fireworks returned HTTP 400: response_format of type 'json_schema' "
                               "is not supported by this model.")
    assert outcome.hint == JSON_MODE_HINT
    assert len(fireworks.requests) == 1          # no silent retry without native JSON
    assert run(hub, json_mode=False).ok          # and turning JSON mode off does pass


def test_t2_tgi_rejecting_grammar_gets_the_hint(hub):
    with FakeOpenAIProvider("hf_tgi", api_key="hf_TgiProbeToken000000", reject_native_json=True) as fake:
        target = Target("huggingface", "tgi", api_key=SecretStr("hf_TgiProbeToken000000"), endpoint_url=fake.url)
        outcome = run(hub, target, model="tgi")
    assert outcome.status_code == 422 and outcome.hint == JSON_MODE_HINT
    assert "grammar is not supported" in outcome.message


def test_t3_failure_is_the_exact_provider_error_without_a_hint(hub, fireworks):
    outcome = run(hub, fw_target("fw_WrongKey000000000000000"))
    assert outcome.ok is False
    assert outcome.status_code == 401
    assert outcome.message == "Fireworks returned HTTP 401: The API key you provided is invalid."
    assert outcome.hint is None
    assert outcome.reply_ok is False


def test_t3_unknown_model_failure(hub, fireworks):
    outcome = run(hub, Target("fireworks", "accounts/acme/models/nope", api_key=SecretStr(FW_KEY)),
                  model="accounts/acme/models/nope")
    assert outcome.message == "Fireworks returned HTTP 404: Model not found, inaccessible, and/or not deployed"
    assert outcome.hint is None       # JSON mode was on, but the refusal is not about JSON


def test_t3_preview_is_redacted(hub, fireworks):
    outcome = run(hub)
    text = json.dumps(outcome.request_preview)
    assert FW_KEY not in text
    assert outcome.request_preview["headers"]["Authorization"] == "Bearer [REDACTED]"
    assert outcome.request_preview["body"]["max_tokens"] == 4096


def test_t3_secrets_are_scrubbed_from_failure_messages(hub):
    key = "sk-probe-litellm-key-55555"
    with FakeOpenAIProvider("litellm", api_key="sk-the-right-one-000000") as fake:
        target = Target("openai_compatible", "m", api_key=SecretStr(key), base_url=fake.url)
        outcome = run(hub, target, model="m")
    assert outcome.status_code == 401
    assert key not in outcome.message and "[REDACTED]" in outcome.message


def test_t3_reply_that_is_not_the_expected_json_passes_with_reply_ok_false(hub, fireworks):
    fireworks.reply = "Sure! Here you go: status ok"
    outcome = run(hub)
    assert outcome.ok is True and outcome.message == PASSED
    assert outcome.reply_ok is False


@pytest.mark.parametrize("text, expected", [
    ('{"status":"ok"}', True), (' {"status": "ok"}\n', True), ('```json\n{"status":"ok"}\n```', True),
    ('{"status":"OK"}', False), ('{"status":"ok","x":1}', False), ("ok", False), ("", False)])
def test_t3_reply_ok_reads_the_json(text, expected):
    assert reply_is_expected(text) is expected


def test_t3_transport_error_is_the_message(hub):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = Target("openai_compatible", "m", base_url=f"http://127.0.0.1:{port}/v1")
    outcome = run(hub, target, model="m")
    assert outcome.ok is False and outcome.status_code == 502
    assert "refused the connection" in outcome.message


def test_t8_probe_is_bounded_by_the_timeout(fireworks):
    fireworks.delay = 2.0
    with ProviderHub(timeout=0.25) as hub:
        started = time.perf_counter()
        outcome = run(hub)
    assert outcome.ok is False and "timed out after 0.25 s" in outcome.message
    assert time.perf_counter() - started < 1.5


def test_t2_bedrock_probe_uses_the_forced_tool_and_reads_its_input(hub, monkeypatch):
    with FakeBedrock(credentials={AKID: AWS_SECRET}) as fake:
        monkeypatch.setenv("BYOK_NB_BEDROCK_ENDPOINT_URL", fake.url)
        target = Target("bedrock", HAIKU, aws_region="us-west-2", auth_method="iam",
                        aws_access_key_id=AKID, aws_secret_access_key=SecretStr(AWS_SECRET))
        outcome = run(hub, target, model=HAIKU, max_tokens=512)
        body = fake.last.json
    assert outcome.ok and outcome.reply_ok and outcome.message == PASSED
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "connection_test"}}
    assert body["inferenceConfig"] == {"maxTokens": 512}
    assert "additionalModelRequestFields" not in body
    assert AWS_SECRET not in json.dumps(outcome.request_preview)


def test_t3_bedrock_signature_failure_message(hub, monkeypatch):
    with FakeBedrock(credentials={AKID: AWS_SECRET}) as fake:
        monkeypatch.setenv("BYOK_NB_BEDROCK_ENDPOINT_URL", fake.url)
        target = Target("bedrock", HAIKU, aws_region="us-west-2", auth_method="iam",
                        aws_access_key_id=AKID, aws_secret_access_key=SecretStr("wrong/secret/value/000000"))
        outcome = run(hub, target, model=HAIKU)
    assert outcome.ok is False and outcome.status_code == 403
    assert outcome.message.startswith("Bedrock returned HTTP 403 InvalidSignatureException: "
                                      "The request signature we calculated does not match")
