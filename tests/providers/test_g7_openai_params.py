"""SPEC G-7 (OpenAI-shaped vendors): each OpenAI chat parameter is passed, translated or refused
per vendor as docs/providers.md's table says — checked against fakes that validate the parameters
as the real servers do (ranges, TGI's forms), and refusals happen before any request is sent."""
from __future__ import annotations

import pytest
from provider_kit import chat, target_for

from byok_nb.core.errors import InvalidRequest, ProviderError
from byok_nb.providers.openai_params import translate_params

LABELS = {"fireworks": "Fireworks", "together": "Together AI", "openai": "OpenAI-compatible endpoint",
          "hf_tgi": "HuggingFace endpoint", "hf_router": "HuggingFace router", "openrouter": "OpenRouter"}
PROFILES = pytest.mark.parametrize("profile", list(LABELS))
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.fixture
def served(hub, openai_fake, monkeypatch):
    """``served(profile, **fake_options) -> (fake, adapter)`` for a model behind that vendor."""
    def make(profile: str, **options):
        fake = openai_fake(profile, **options)
        if profile == "hf_router":
            monkeypatch.setenv("BYOK_NB_HF_ROUTER_URL", fake.base_url)
            target = target_for(profile, endpoint_url="https://api-inference.huggingface.co/models/org/m-1")
        else:
            target = target_for(profile, fake)
        return fake, hub.adapter(target)
    return make


@PROFILES
def test_g7_sampling_parameters_pass_through_on_every_openai_shaped_vendor(served, profile):
    fake, adapter = served(profile)
    params = {"temperature": 0.3, "top_p": 0.9, "stop": ["\n\n", "END"], "seed": 42,
              "frequency_penalty": 0.5, "presence_penalty": -0.5}
    result = adapter.chat(chat(params=params))
    sent = fake.last.json
    for name, value in params.items():
        assert sent[name] == value, name
    assert sent["max_tokens"] == 64
    assert result.text == '{"status":"ok"}'


@PROFILES
def test_g7_stop_as_one_string_is_sent_as_a_list_and_the_reply_stops_before_it(served, profile):
    fake, adapter = served(profile, reply="alpha STOP beta")
    result = adapter.chat(chat(params={"stop": "STOP"}))
    assert fake.last.json["stop"] == ["STOP"]
    assert result.text == "alpha "
    assert result.finish_reason == "stop"


@PROFILES
def test_g7_a_none_parameter_counts_as_not_given(served, profile):
    fake, adapter = served(profile)
    adapter.chat(chat(params={"temperature": None, "seed": None, "n": 1}))
    assert not {"temperature", "seed", "n"} & set(fake.last.json)


def test_g7_top_p_one_is_left_out_on_tgi_which_refuses_it(served):
    fake, adapter = served("hf_tgi")
    adapter.chat(chat(params={"top_p": 1, "temperature": 0.7}))
    assert "top_p" not in fake.last.json and fake.last.json["temperature"] == 0.7


def test_g7_tgi_refuses_top_p_outside_its_open_range_with_its_own_words(served):
    fake, adapter = served("hf_tgi")
    with pytest.raises(ProviderError) as caught:
        adapter.chat(chat(params={"top_p": 0}))
    assert caught.value.status_code == 422
    assert "`top_p` must be > 0.0 and < 1.0" in caught.value.message


@pytest.mark.parametrize("profile", ["openai", "together", "openrouter"])
def test_g7_out_of_range_temperature_is_the_providers_400(served, profile):
    fake, adapter = served(profile)
    with pytest.raises(ProviderError) as caught:
        adapter.chat(chat(params={"temperature": 3}))
    assert caught.value.status_code == 400
    assert "Invalid 'temperature': decimal above maximum value" in caught.value.message
    assert "HTTP 400 400" not in caught.value.message


@pytest.mark.parametrize("profile", ["openai", "hf_tgi"])
def test_g7_five_stop_sequences_are_refused_by_the_provider(served, profile):
    fake, adapter = served(profile)
    with pytest.raises(ProviderError) as caught:
        adapter.chat(chat(params={"stop": ["a", "b", "c", "d", "e"]}))
    assert "4" in caught.value.provider_message and "stop" in caught.value.provider_message


# -- response_format ------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["fireworks", "together", "openai", "hf_router", "openrouter"])
def test_g7_json_schema_response_format_is_translated_as_test_connections_json_mode(served, profile):
    fake, adapter = served(profile)
    fmt = {"type": "json_schema", "json_schema": {"name": "city answer!", "schema": SCHEMA}}
    adapter.chat(chat(params={"response_format": fmt}))
    assert fake.last.json["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "city_answer_", "schema": SCHEMA, "strict": True}}
    # the same body Test Connection's JSON mode sends for a typed schema
    typed = adapter.build_body(chat(json_schema=SCHEMA, json_schema_name="city answer!"))[0]
    assert typed["response_format"] == fake.last.json["response_format"]


def test_g7_json_schema_keeps_the_callers_strict_setting(served):
    fake, adapter = served("openai")
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA, "strict": False}}
    adapter.chat(chat(params={"response_format": fmt}))
    assert fake.last.json["response_format"]["json_schema"]["strict"] is False


@pytest.mark.parametrize("profile", ["fireworks", "together", "openai", "hf_router", "openrouter"])
def test_g7_json_object_passes_as_it_is(served, profile):
    fake, adapter = served(profile)
    adapter.chat(chat(params={"response_format": {"type": "json_object"}}))
    assert fake.last.json["response_format"] == {"type": "json_object"}


def test_g7_tgi_gets_its_own_json_form_for_json_schema_and_json_object(served):
    fake, adapter = served("hf_tgi")
    adapter.chat(chat(params={"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}}))
    assert fake.last.json["response_format"] == {"type": "json", "value": SCHEMA}
    adapter.chat(chat(params={"response_format": {"type": "json_object"}}))
    assert fake.last.json["response_format"] == {"type": "json", "value": {"type": "object"}}


def test_g7_tgi_response_format_with_tools_is_refused_before_sending(served):
    fake, adapter = served("hf_tgi")
    with pytest.raises(InvalidRequest) as caught:
        adapter.chat(chat(tools=[WEATHER], params={"response_format": {"type": "json_object"}}))
    assert caught.value.field == "response_format"
    assert "HuggingFace endpoint" in caught.value.message
    assert fake.requests == []


@PROFILES
def test_g7_text_response_format_is_the_default_and_left_out(served, profile):
    fake, adapter = served(profile)
    adapter.chat(chat(params={"response_format": {"type": "text"}}))
    assert "response_format" not in fake.last.json


def test_g7_typed_json_schema_wins_over_a_response_format_parameter(served):
    fake, adapter = served("openai")
    adapter.chat(chat(json_schema=SCHEMA, params={"response_format": {"type": "json_object"}}))
    assert fake.last.json["response_format"]["type"] == "json_schema"


def test_g7_a_malformed_response_format_is_refused(served):
    fake, adapter = served("openai")
    with pytest.raises(InvalidRequest) as caught:
        adapter.chat(chat(params={"response_format": {"type": "yaml"}}))
    assert caught.value.field == "response_format" and fake.requests == []


# -- tools and reasoning, as before ---------------------------------------------------------------
@pytest.mark.parametrize("profile", ["fireworks", "together", "openrouter"])
def test_g7_tools_and_tool_choice_pass_beside_the_parameters(served, profile):
    fake, adapter = served(profile, tool_call="first")
    result = adapter.chat(chat(tools=[WEATHER], tool_choice="auto", params={"temperature": 0}))
    assert fake.last.json["tools"] == [WEATHER] and fake.last.json["tool_choice"] == "auto"
    assert result.tool_calls[0]["function"]["name"] == "get_weather"
    assert result.finish_reason == "tool_calls"


@pytest.mark.parametrize("profile, field", [("fireworks", "thinking"), ("together", "reasoning"),
                                            ("openrouter", "reasoning"), ("openai", "reasoning")])
def test_g7_reasoning_still_goes_through_the_profile_translators(served, profile, field):
    fake, adapter = served(profile)
    adapter.chat(chat(max_tokens=4096, reasoning={"max_tokens": 2048}, params={"seed": 1}))
    assert field in fake.last.json and fake.last.json["seed"] == 1


# -- refusals ---------------------------------------------------------------------------------------
@PROFILES
@pytest.mark.parametrize("name, value", [("logprobs", True), ("logit_bias", {"50256": -100}),
                                         ("n", 2), ("user", "u-1"), ("parallel_tool_calls", False)])
def test_g7_unsupported_parameters_are_refused_naming_parameter_and_provider(served, profile, name, value):
    fake, adapter = served(profile)
    with pytest.raises(InvalidRequest) as caught:
        adapter.chat(chat(params={name: value}))
    assert caught.value.message.startswith(f"{name} is not supported by {LABELS[profile]}")
    assert caught.value.field == name
    assert fake.requests == []        # refused before any I/O


def test_g7_refusals_happen_before_io_for_streams_too(served):
    fake, adapter = served("together")
    with pytest.raises(InvalidRequest):
        adapter.stream(chat(params={"logprobs": True}))
    assert fake.requests == []


@pytest.mark.parametrize("name, hint", [("reasoning_effort", "reasoning="), ("max_completion_tokens", "max_tokens"),
                                        ("stream", "stream()")])
def test_g7_a_refusal_points_to_the_typed_field_when_there_is_one(served, name, hint):
    fake, adapter = served("openai")
    with pytest.raises(InvalidRequest) as caught:
        adapter.chat(chat(params={name: "low" if name == "reasoning_effort" else 5}))
    assert hint in caught.value.message


@pytest.mark.parametrize("params, field", [({"temperature": "hot"}, "temperature"),
                                           ({"top_p": float("nan")}, "top_p"),
                                           ({"seed": 1.5}, "seed"), ({"seed": True}, "seed"),
                                           ({"stop": []}, "stop"), ({"stop": ["ok", 3]}, "stop")])
def test_g7_values_of_the_wrong_type_are_refused_before_sending(served, params, field):
    fake, adapter = served("fireworks")
    with pytest.raises(InvalidRequest) as caught:
        adapter.chat(chat(params=params))
    assert caught.value.field == field and fake.requests == []


def test_g7_seed_passes_on_the_vendors_the_spec_pins():
    for label in ("Fireworks", "Together AI", "OpenAI-compatible endpoint", "OpenRouter"):
        assert translate_params(label, "json_schema", chat(params={"seed": 7})) == {"seed": 7}
