"""SPEC P table, P-4, P-9, M-7, T-2: what the OpenAI-shaped adapters put on the wire, checked by
fakes that validate the body the way the real providers do."""
from __future__ import annotations

import base64
import json

import pytest
from provider_kit import KEYS, chat, target_for
from pydantic import SecretStr

from byok_nb.core.errors import InvalidRequest, ProviderError
from byok_nb.providers import ProviderHub, Target
from byok_nb.testing.fake_providers import count_tokens

SCHEMA = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"],
          "additionalProperties": False}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.mark.parametrize("profile, path", [
    ("fireworks", "/inference/v1/chat/completions"),
    ("together", "/v1/chat/completions"),
    ("openai", "/v1/chat/completions"),
    ("openrouter", "/api/v1/chat/completions"),
    ("hf_tgi", "/v1/chat/completions"),
])
def test_p_table_url_bearer_and_max_tokens(hub, openai_fake, profile, path):
    fake = openai_fake(profile, models=None)
    result = hub.adapter(target_for(profile, fake)).chat(chat(max_tokens=77))
    sent = fake.last
    assert sent.path == path
    assert sent.headers["authorization"] == f"Bearer {KEYS[profile]}"
    assert sent.json["max_tokens"] == 77
    assert result.text == '{"status":"ok"}'
    assert result.input_tokens == count_tokens(sent.json["messages"])
    assert result.output_tokens == len('{"status":"ok"}') // 4


def test_p_table_openai_compatible_without_key_sends_no_authorization(hub, openai_fake):
    fake = openai_fake("openai", api_key=None)
    target = Target("openai_compatible", "llama3", base_url=fake.base_url + "/")
    hub.adapter(target).chat(chat("llama3"))
    assert "authorization" not in fake.last.headers
    assert fake.last.path == "/v1/chat/completions"


def test_p_table_openai_compatible_needs_a_base_url(hub):
    with pytest.raises(InvalidRequest, match="Base URL"):
        hub.adapter(Target("openai_compatible", "x", base_url=" "))


def test_p_table_openrouter_uses_operator_key_and_base_url(hub, openai_fake, monkeypatch):
    fake = openai_fake("openrouter", models=["openai/gpt-4o"])
    monkeypatch.setenv("OPENROUTER_API_KEY", KEYS["openrouter"])
    hub.adapter(Target("openrouter", "openai/gpt-4o")).chat(chat("openai/gpt-4o"))
    assert fake.last.headers["authorization"] == f"Bearer {KEYS['openrouter']}"


def test_p7_openrouter_without_operator_key_is_a_clear_error(hub):
    with pytest.raises(ProviderError, match="OPENROUTER_API_KEY"):
        hub.adapter(Target("openrouter", "openai/gpt-4o"))


@pytest.mark.parametrize("profile", ["fireworks", "together", "openai", "openrouter", "hf_router"])
def test_t2_native_json_is_strict_json_schema(hub, openai_fake, monkeypatch, profile):
    fake = openai_fake(profile)
    if profile == "hf_router":
        monkeypatch.setenv("BYOK_NB_HF_ROUTER_URL", fake.base_url)
        target = target_for(profile, endpoint_url="https://api-inference.huggingface.co/models/org/m-1")
    else:
        target = target_for(profile, fake)
    hub.adapter(target).chat(chat(json_schema=SCHEMA, json_schema_name="status check!"))
    assert fake.last.json["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "status_check_", "schema": SCHEMA, "strict": True}}


def test_t2_hf_tgi_native_json_uses_the_json_value_form(hub, openai_fake):
    fake = openai_fake("hf_tgi")
    hub.adapter(target_for("hf_tgi", fake)).chat(chat(json_schema=SCHEMA))
    assert fake.last.json["response_format"] == {"type": "json", "value": SCHEMA}


def test_t2_tgi_fake_refuses_the_openai_wrapper_like_tgi(openai_fake):
    """The fake checks what TGI checks: OpenAI's json_schema wrapper does not parse there."""
    import httpx

    fake = openai_fake("hf_tgi")
    body = {"model": "tgi", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}}
    reply = httpx.post(fake.url + "/v1/chat/completions", json=body,
                       headers={"Authorization": f"Bearer {KEYS['hf_tgi']}"})
    assert reply.status_code == 422
    assert reply.json()["error_type"] == "validation"
    assert "unknown variant `json_schema`" in reply.json()["error"]


def test_p4_tools_pass_through_and_tool_calls_come_back_in_openai_shape(hub, openai_fake):
    fake = openai_fake("fireworks", tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}})
    result = hub.adapter(target_for("fireworks", fake)).chat(
        chat(tools=[WEATHER_TOOL], tool_choice="auto"))
    assert fake.last.json["tools"] == [WEATHER_TOOL]
    assert fake.last.json["tool_choice"] == "auto"
    assert result.text == ""
    assert result.tool_calls == [{"id": "call_fake_1", "type": "function",
                                  "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]


@pytest.mark.parametrize("image", [
    PNG,
    {"type": "image", "image": PNG},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}},
    {"type": "image_url", "image_url": "data:image/png;base64," + base64.b64encode(PNG).decode()},
])
def test_p4_images_become_image_url_parts_with_data_urls(hub, openai_fake, image):
    fake = openai_fake("together")
    hub.adapter(target_for("together", fake)).chat(chat(content=["What is this?", image]))
    parts = fake.last.json["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    assert parts[1] == {"type": "image_url",
                        "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}}


def test_p4_image_bytes_that_are_not_an_image_are_refused(hub, openai_fake):
    fake = openai_fake("together")
    with pytest.raises(InvalidRequest, match="PNG, JPEG"):
        hub.adapter(target_for("together", fake)).chat(chat(content=[b"not an image at all"]))
    assert fake.requests == []


def test_m7_max_tokens_is_never_clamped_and_an_oversized_cap_is_the_providers_error(hub, openai_fake):
    fake = openai_fake("openai", context_limit=8192)
    with pytest.raises(ProviderError) as caught:
        hub.adapter(target_for("openai", fake)).chat(chat(max_tokens=100_000))
    assert fake.last.json["max_tokens"] == 100_000
    assert caught.value.status_code == 400
    assert "maximum context length is 8192 tokens" in caught.value.provider_message


def test_m7_tgi_context_limit_error_is_tgis_validation_text(hub, openai_fake):
    fake = openai_fake("hf_tgi", context_limit=4096)
    with pytest.raises(ProviderError) as caught:
        hub.adapter(target_for("hf_tgi", fake)).chat(chat(max_tokens=5000))
    assert caught.value.status_code == 422
    assert caught.value.provider_message.startswith(
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096.")


def test_p9_override_is_read_when_the_adapter_is_built(hub, openai_fake, monkeypatch):
    first = openai_fake("together")
    target = target_for("together", first)
    adapter_before = hub.adapter(target)
    second = openai_fake("together")          # re-points BYOK_NB_TOGETHER_BASE_URL
    hub.adapter(target).chat(chat())
    adapter_before.chat(chat())
    assert len(second.requests) == 1 and len(first.requests) == 1


def test_p9_default_endpoints_are_the_real_ones(hub):
    urls = {p: hub.adapter(Target(p, "m", api_key=SecretStr("k"))).url
            for p in ("fireworks", "together", "openrouter")}
    assert urls == {"fireworks": "https://api.fireworks.ai/inference/v1/chat/completions",
                    "together": "https://api.together.xyz/v1/chat/completions",
                    "openrouter": "https://openrouter.ai/api/v1/chat/completions"}


def test_preview_shows_the_request_with_the_key_redacted(hub, openai_fake):
    fake = openai_fake("fireworks")
    adapter = hub.adapter(target_for("fireworks", fake))
    preview = adapter.preview(chat(json_schema=SCHEMA, content=["look", PNG]))
    text = json.dumps(preview)
    assert KEYS["fireworks"] not in text
    assert preview["headers"]["Authorization"] == "Bearer [REDACTED]"
    assert preview["url"] == fake.base_url + "/chat/completions"
    assert preview["body"]["response_format"]["type"] == "json_schema"
    assert fake.requests == []   # previewing sends nothing


def test_hub_close_releases_the_pool_and_can_be_reused(openai_fake):
    fake = openai_fake("together")
    hub = ProviderHub(timeout=2)
    hub.adapter(target_for("together", fake)).chat(chat())
    first_client = hub.http_client()
    hub.close()
    hub.adapter(target_for("together", fake)).chat(chat())
    assert hub.http_client() is not first_client
    hub.close()
