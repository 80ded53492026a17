"""SPEC P-2, P-4, P-5, P table (Bedrock): converse against an emulator that verifies SigV4 with
botocore's own signer, per-client credentials, bearer API keys that never touch os.environ nor
the DEBUG logs, message/tool/JSON/reasoning translation and AWS's errors."""
from __future__ import annotations

import base64
import json
import logging
import os

import pytest
from provider_kit import (BEDROCK_API_KEY, CLAUDE_HAIKU, IAM_KEY_ID, IAM_SECRET, api_key_target, chat,
                          iam_target)

from byok_nb.core.errors import InvalidRequest, ProviderError
from byok_nb.providers import ChatRequest, ProviderHub, validate_aws_region
from byok_nb.providers.bedrock import model_family, reasoning_fields
from byok_nb.testing.fake_providers import BAD_SIGNATURE, INVALID_TOKEN, bedrock_error

PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 40
SCHEMA = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}


def failure(hub, target, request=None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        hub.adapter(target).chat(request or chat(target.provider_model_id))
    return caught.value


# -- authentication ----------------------------------------------------------------------------------
def test_p2_iam_request_is_sigv4_signed_and_verified(hub, bedrock_fake):
    fake = bedrock_fake()
    result = hub.adapter(iam_target()).chat(chat(CLAUDE_HAIKU))
    assert result.text == '{"status":"ok"}'
    assert result.input_tokens > 0 and result.output_tokens > 0
    auth = fake.last.headers["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={IAM_KEY_ID}/")
    assert "/us-east-1/bedrock/aws4_request" in auth
    assert fake.last.path == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"


def test_p5_wrong_secret_is_invalid_signature_with_awss_message(hub, bedrock_fake):
    bedrock_fake()
    error = failure(hub, iam_target(secret="not/the/right/secret/at/all/0000000000"))
    assert error.status_code == 403
    assert error.provider_message == BAD_SIGNATURE
    assert "InvalidSignatureException" in error.message


def test_p5_unknown_access_key_is_unrecognized_client(hub, bedrock_fake):
    bedrock_fake()
    error = failure(hub, iam_target(key_id="AKIAUNKNOWNKEY000000"))
    assert error.status_code == 403
    assert error.provider_message == INVALID_TOKEN
    assert "UnrecognizedClientException" in error.message


def test_p5_unknown_model_is_validation_exception(hub, bedrock_fake):
    bedrock_fake()
    error = failure(hub, iam_target("anthropic.claude-nope-v9:0"))
    assert error.status_code == 400
    assert error.provider_message == "The provided model identifier is invalid."
    assert "ValidationException" in error.message


def test_m7_bedrock_max_tokens_over_the_model_limit_is_awss_error(hub, bedrock_fake):
    fake = bedrock_fake()
    error = failure(hub, iam_target(), chat(CLAUDE_HAIKU, max_tokens=100_000))
    assert fake.last.json["inferenceConfig"] == {"maxTokens": 100_000}
    assert error.status_code == 400
    assert "exceeds the model limit of 4096" in error.provider_message


def test_p5_throttling_keeps_awss_status(hub, bedrock_fake):
    fake = bedrock_fake()
    fake.add_route("POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
                   lambda r: bedrock_error(429, "ThrottlingException", "Too many requests, please wait."))
    error = failure(hub, iam_target())
    assert error.status_code == 429
    assert "ThrottlingException" in error.message and error.provider_message == "Too many requests, please wait."


def test_p2_api_key_is_a_bearer_header_on_that_client_only(hub, bedrock_fake):
    fake = bedrock_fake()
    hub.adapter(api_key_target()).chat(chat(CLAUDE_HAIKU))
    assert fake.last.headers["authorization"] == f"Bearer {BEDROCK_API_KEY}"
    hub.adapter(iam_target()).chat(chat(CLAUDE_HAIKU))      # another client of the same hub
    assert fake.last.headers["authorization"].startswith("AWS4-HMAC-SHA256")


def test_p2_wrong_api_key_is_refused_by_bedrock(hub, bedrock_fake):
    bedrock_fake()
    error = failure(hub, api_key_target(key="ABSKd3Jvbmcta2V5LXZhbHVlLTAwMDE="))
    assert error.status_code == 403
    assert "ABSKd3Jvbmcta2V5LXZhbHVlLTAwMDE=" not in error.message


def test_p2_api_key_never_enters_the_process_environment(hub, bedrock_fake):
    seen = []

    def reply(request):  # runs in this process while the client's call is in flight
        seen.append({k: v for k, v in os.environ.items() if "BEARER" in k or v == BEDROCK_API_KEY})
        return '{"status":"ok"}'

    bedrock_fake(reply=reply)
    hub.adapter(api_key_target()).chat(chat(CLAUDE_HAIKU))
    assert seen == [{}]
    assert BEDROCK_API_KEY not in os.environ.values()
    assert "AWS_BEARER_TOKEN_BEDROCK" not in os.environ


def test_p2_ambient_aws_settings_do_not_leak_into_a_client(hub, bedrock_fake, monkeypatch, tmp_path):
    """Another tenant's bearer token, env credentials, endpoint and config file are all ignored."""
    fake = bedrock_fake()
    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-west-3\nendpoint_url = http://169.254.169.254\n"
                      "max_attempts = 9\n")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKb3RoZXItb3Jncy1rZXk=")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAAMBIENTKEY000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ambient-secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://169.254.169.254")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    hub.adapter(iam_target()).chat(chat(CLAUDE_HAIKU))
    assert fake.last.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={IAM_KEY_ID}/")
    assert fake.last.headers["amz-sdk-request"] == "attempt=1; max=1"


@pytest.mark.parametrize("make_target, secret", [(api_key_target, BEDROCK_API_KEY),
                                                 (iam_target, IAM_SECRET)])
def test_p2_secrets_never_reach_botocore_debug_logs(hub, bedrock_fake, caplog, make_target, secret):
    bedrock_fake()
    caplog.set_level(logging.DEBUG)
    hub.adapter(make_target()).chat(chat(CLAUDE_HAIKU))
    logged = caplog.text
    assert "Sending http request" in logged            # botocore did log the prepared request
    assert "authorization" in logged.lower()           # ... with its headers
    assert secret not in logged
    for record in caplog.records:
        assert secret not in record.getMessage()


def test_p2_malformed_region_is_an_error_naming_it(hub, bedrock_fake):
    bedrock_fake()
    error = failure(hub, iam_target(region="us east 1!"))
    assert "'us east 1!'" in error.message and "malformed" in error.message


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-2", " ap-southeast-1 "])
def test_p2_region_validation_for_registration(region):
    assert validate_aws_region(region) == region.strip()


@pytest.mark.parametrize("region", ["", None, "us_east_1", "-us-east-1", "us east 1"])
def test_p2_malformed_regions_are_refused_at_registration(region):
    with pytest.raises(InvalidRequest, match="AWS Region"):
        validate_aws_region(region)


def test_p2_missing_iam_secret_is_a_clear_error(hub, bedrock_fake):
    bedrock_fake()
    target = iam_target()
    from dataclasses import replace
    error = failure(hub, replace(target, aws_secret_access_key=None))
    assert "Secret Access Key" in error.message


def test_p2_connection_refused_is_a_502(hub, monkeypatch):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("BYOK_NB_BEDROCK_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    error = failure(hub, iam_target())
    assert error.status_code == 502
    assert "could not be reached" in error.message


def test_t8_bedrock_timeout_is_bounded(bedrock_fake):
    bedrock_fake(delay=2.0)
    import time
    with ProviderHub(timeout=0.3) as hub:
        started = time.perf_counter()
        error = failure(hub, iam_target())
    assert error.status_code == 502 and "timed out" in error.message
    assert time.perf_counter() - started < 1.5


# -- translation ---------------------------------------------------------------------------------------
def test_p4_messages_system_and_images(hub, bedrock_fake):
    fake = bedrock_fake()
    request = ChatRequest(model=CLAUDE_HAIKU, max_tokens=100, messages=[
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, PNG]},
    ])
    hub.adapter(iam_target()).chat(request)
    body = fake.last.json
    assert body["system"] == [{"text": "Be terse."}]
    assert body["messages"] == [{"role": "user", "content": [
        {"text": "What is this?"},
        {"image": {"format": "png", "source": {"bytes": base64.b64encode(PNG).decode()}}}]}]


def test_p4_tools_become_tool_config_and_tool_use_comes_back_openai_shaped(hub, bedrock_fake):
    fake = bedrock_fake(tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}})
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                             "parameters": {"type": "object", "properties": {}}}}
    result = hub.adapter(iam_target()).chat(chat(CLAUDE_HAIKU, tools=[tool], tool_choice="required"))
    assert fake.last.json["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather",
                                "inputSchema": {"json": {"type": "object", "properties": {}}}}}],
        "toolChoice": {"any": {}}}
    assert result.tool_calls == [{"id": "tooluse_fake_1", "type": "function",
                                  "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]


def test_p4_a_tool_conversation_round_trips(hub, bedrock_fake):
    fake = bedrock_fake()
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    request = ChatRequest(model=CLAUDE_HAIKU, max_tokens=50, tools=[tool], messages=[
        {"role": "user", "content": "Look it up"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "found"},
    ])
    hub.adapter(iam_target()).chat(request)
    assert fake.last.json["messages"][1:] == [
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"q": "x"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "found"}]}}]}]


def test_t2_native_json_is_a_forced_tool_and_its_input_is_the_text(hub, bedrock_fake):
    fake = bedrock_fake()
    result = hub.adapter(iam_target()).chat(chat(CLAUDE_HAIKU, json_schema=SCHEMA,
                                                 json_schema_name="connection_test"))
    assert fake.last.json["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "connection_test",
                                "description": "Return the response as JSON matching this schema.",
                                "inputSchema": {"json": SCHEMA}}}],
        "toolChoice": {"tool": {"name": "connection_test"}}}
    assert json.loads(result.text) == {"status": "ok"}
    assert result.tool_calls == []


def test_p1_claude_thinking_budget_is_sent_in_additional_fields(hub, bedrock_fake):
    fake = bedrock_fake()
    model = "anthropic.claude-3-7-sonnet-20250219-v1:0"
    hub.adapter(iam_target(model)).chat(chat(model, max_tokens=4000, reasoning={"max_tokens": 2000}))
    assert fake.last.json["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2000}}


def test_p1_thinking_with_a_forced_tool_is_bedrocks_error_not_a_silent_change(hub, bedrock_fake):
    bedrock_fake()
    model = "anthropic.claude-3-7-sonnet-20250219-v1:0"
    error = failure(hub, iam_target(model), chat(model, max_tokens=4000, json_schema=SCHEMA,
                                                 reasoning={"max_tokens": 2000}))
    assert error.status_code == 400
    assert "Thinking may not be enabled when tool_choice forces tool use" in error.provider_message


@pytest.mark.parametrize("model, family, version", [
    ("anthropic.claude-3-7-sonnet-20250219-v1:0", "claude", (3, 7)),
    ("anthropic.claude-3-haiku-20240307-v1:0", "claude", (3, 0)),
    ("us.anthropic.claude-sonnet-4-20250514-v1:0", "claude", (4, 0)),
    ("anthropic.claude-opus-4-1-20250805-v1:0", "claude", (4, 1)),
    ("eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude", (4, 5)),
    ("global.anthropic.claude-opus-4-6-v1", "claude", (4, 6)),
    ("arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude-opus-4-7", "claude", (4, 7)),
    ("us.amazon.nova-2-lite-v1:0", "nova", None),
    ("openai.gpt-oss-120b-1:0", "gpt-oss", None),
    ("meta.llama3-1-8b-instruct-v1:0", "other", None),
])
def test_p1_bedrock_model_families(model, family, version):
    assert model_family(model) == (family, version)


@pytest.mark.parametrize("model, reasoning, expected, warns", [
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", {"max_tokens": 3000},
     {"thinking": {"type": "enabled", "budget_tokens": 3000}}, False),
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", {"effort": "medium"},
     {"thinking": {"type": "enabled", "budget_tokens": 4096}}, True),
    ("anthropic.claude-opus-4-6-v1", {"effort": "high"},
     {"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}}, False),
    ("anthropic.claude-opus-4-7", {"max_tokens": 3000},
     {"thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"}}, True),
    ("us.amazon.nova-2-lite-v1:0", {"effort": "low"},
     {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}}, False),
    ("us.amazon.nova-2-lite-v1:0", {"max_tokens": 9000},
     {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}}, True),
    ("openai.gpt-oss-20b-1:0", {"effort": "medium"}, {"reasoning_effort": "medium"}, False),
    ("openai.gpt-oss-20b-1:0", {"max_tokens": 1000}, {"reasoning_effort": "low"}, True),
    ("deepseek.r1-v1:0", {"max_tokens": 2048}, {"thinking": {"type": "enabled", "budget_tokens": 2048}}, False),
])
def test_p1_bedrock_reasoning_by_model_family(model, reasoning, expected, warns):
    fields, warnings = reasoning_fields(model, reasoning, max_tokens=32_000)
    assert fields == expected
    assert bool(warnings) is warns


def test_preview_redacts_bedrock_secrets(hub, bedrock_fake):
    fake = bedrock_fake()
    for target, secret in ((iam_target(), IAM_SECRET), (api_key_target(), BEDROCK_API_KEY)):
        preview = hub.adapter(target).preview(chat(CLAUDE_HAIKU, content=["x", PNG]))
        text = json.dumps(preview)
        assert secret not in text
        assert preview["endpoint_url"] == fake.url
        assert f"<{len(PNG)} bytes>" in text
    assert fake.requests == []


def test_p2_default_endpoint_is_the_regional_aws_one(hub):
    preview = hub.adapter(iam_target(region="eu-west-1")).preview(chat(CLAUDE_HAIKU))
    assert preview["endpoint_url"] == "https://bedrock-runtime.eu-west-1.amazonaws.com"


def test_p2_clients_are_cached_per_credentials(hub, bedrock_fake):
    bedrock_fake()
    cache = hub._bedrock_cache()
    first = cache.get(iam_target(), os.environ["BYOK_NB_BEDROCK_ENDPOINT_URL"])
    again = cache.get(iam_target(), os.environ["BYOK_NB_BEDROCK_ENDPOINT_URL"])
    other = cache.get(iam_target(secret="other/secret/000000000000000000000000"),
                      os.environ["BYOK_NB_BEDROCK_ENDPOINT_URL"])
    assert first is again and other is not first


def test_fake_bedrock_refuses_a_signature_for_another_service(bedrock_fake):
    """The emulator checks the credential scope: a request signed for 's3' is refused."""
    import httpx
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    fake = bedrock_fake()
    url = f"{fake.url}/model/{CLAUDE_HAIKU.replace(':', '%3A')}/converse"
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()
    outcomes = {}
    for service in ("bedrock", "s3"):
        request = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(IAM_KEY_ID, IAM_SECRET), service, "us-east-1").add_auth(request)
        reply = httpx.post(url, content=body, headers=dict(request.headers.items()))
        outcomes[service] = (reply.status_code, reply.headers.get("x-amzn-errortype", "").split(":")[0])
    assert outcomes == {"bedrock": (200, ""), "s3": (403, "InvalidSignatureException")}
