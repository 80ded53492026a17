"""SPEC P-3: HuggingFace endpoint URL rules, the legacy serverless URL called through the router,
and the note the detail view shows for it."""
from __future__ import annotations

import pytest
from provider_kit import KEYS, chat, target_for

from byok_nb.core.errors import InvalidRequest
from byok_nb.providers import describe_endpoint, validate_endpoint_url
from byok_nb.providers.huggingface import DEFAULT_ROUTER_URL, endpoint_chat_url, route

ENDPOINT = "https://xyz123.us-east-1.aws.endpoints.huggingface.cloud"
LEGACY = "https://api-inference.huggingface.co/models/meta-llama/Llama-3.1-8B-Instruct"


@pytest.mark.parametrize("url", [ENDPOINT, ENDPOINT + "/", ENDPOINT + "/v1", LEGACY,
                                 "https://router.huggingface.co/v1", "http://127.0.0.1:8080",
                                 "http://localhost:8080/v1"])
def test_p3_full_urls_are_accepted(url):
    assert validate_endpoint_url(f"  {url} ") == url


def test_p3_a_hub_repo_id_is_refused_with_advice_to_paste_the_full_url():
    with pytest.raises(InvalidRequest) as caught:
        validate_endpoint_url("meta-llama/Llama-3.1-8B-Instruct")
    assert "Hub repo id" in caught.value.message
    assert "paste the full https:// URL" in caught.value.message
    assert caught.value.status_code == 422


@pytest.mark.parametrize("url, fragment", [
    ("", "required"), (None, "required"), ("xyz.endpoints.huggingface.cloud", "full https:// URL"),
    ("http://xyz.endpoints.huggingface.cloud", "must use https://"),
    ("ftp://xyz.endpoints.huggingface.cloud", "must use https://"),
    ("https://", "no host"), ("https://api-inference.huggingface.co/models/", "names no model"),
])
def test_p3_other_malformed_urls_are_refused(url, fragment):
    with pytest.raises(InvalidRequest, match=fragment):
        validate_endpoint_url(url)


@pytest.mark.parametrize("url, chat_url", [
    (ENDPOINT, ENDPOINT + "/v1/chat/completions"),
    (ENDPOINT + "/", ENDPOINT + "/v1/chat/completions"),
    (ENDPOINT + "/v1", ENDPOINT + "/v1/chat/completions"),
    (ENDPOINT + "/v1/", ENDPOINT + "/v1/chat/completions"),
    (ENDPOINT + "/v1/chat/completions", ENDPOINT + "/v1/chat/completions"),
])
def test_p3_chat_path_rules(url, chat_url):
    assert endpoint_chat_url(url) == chat_url
    assert route(url).url == chat_url and route(url).profile == "huggingface"


@pytest.mark.parametrize("url", [LEGACY, LEGACY + "/", LEGACY + "/v1/chat/completions"])
def test_p3_legacy_url_goes_through_the_router_with_the_repo_as_model(url):
    hf = route(url)
    assert hf.url == DEFAULT_ROUTER_URL == "https://router.huggingface.co/v1/chat/completions"
    assert hf.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert hf.profile == "huggingface_router"


def test_p3_router_url_given_directly_is_used_as_is():
    hf = route("https://router.huggingface.co/v1/chat/completions")
    assert hf.url == "https://router.huggingface.co/v1/chat/completions"
    assert hf.model is None and hf.profile == "huggingface_router"


def test_p3_detail_view_note_for_the_legacy_url():
    note = describe_endpoint(LEGACY)
    assert "410 Gone" in note
    assert "https://router.huggingface.co/v1/chat/completions" in note
    assert "model=meta-llama/Llama-3.1-8B-Instruct" in note
    assert describe_endpoint(ENDPOINT) is None
    assert describe_endpoint(None) is None


def test_p3_legacy_call_reaches_the_router_with_model_and_openai_json(hub, openai_fake, monkeypatch):
    router = openai_fake("hf_router", models=["meta-llama/Llama-3.1-8B-Instruct"])
    monkeypatch.setenv("BYOK_NB_HF_ROUTER_URL", router.url + "/v1")
    target = target_for("hf_router", model="ignored-id", endpoint_url=LEGACY)
    result = hub.adapter(target).chat(chat("ignored-id", json_schema={"type": "object"}))
    assert result.text == '{"status":"ok"}'
    sent = router.last
    assert sent.path == "/v1/chat/completions"
    assert sent.json["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert sent.json["response_format"]["type"] == "json_schema"
    assert sent.headers["authorization"] == f"Bearer {KEYS['hf_router']}"
    assert router.url + "/v1/chat/completions" in describe_endpoint(LEGACY)  # the override is named


def test_p3_endpoint_call_sends_the_models_id_and_tgi_json(hub, openai_fake):
    fake = openai_fake("hf_tgi")
    hub.adapter(target_for("hf_tgi", fake, model="tgi")).chat(chat("tgi", json_schema={"type": "object"}))
    assert fake.last.path == "/v1/chat/completions"
    assert fake.last.json["model"] == "tgi"
    assert fake.last.json["response_format"] == {"type": "json", "value": {"type": "object"}}


def test_p3_hub_refuses_a_repo_id_as_endpoint(hub):
    with pytest.raises(InvalidRequest, match="Hub repo id"):
        hub.adapter(target_for("hf_tgi", endpoint_url="org/model"))
