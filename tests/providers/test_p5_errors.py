"""SPEC P-5, T-3, T-8, C-3: provider failures become ProviderError with the provider's own words,
its status, secrets scrubbed, at most 4,000 characters of a body; transport failures are 502 with
a message naming the kind."""
from __future__ import annotations

import socket
import time

import pytest
from provider_kit import chat, target_for
from pydantic import SecretStr

from byok_nb.core.errors import ProviderError
from byok_nb.providers import ProviderHub, Target
from byok_nb.providers.transport import MAX_SHOWN_CHARS, provider_message_from_body


def call(hub, target, request=None):
    with pytest.raises(ProviderError) as caught:
        hub.adapter(target).chat(request or chat())
    return caught.value


@pytest.mark.parametrize("profile, status, message", [
    ("together", 401, "Invalid API key provided. You can find your API key at "
                      "https://api.together.ai/settings/api-keys."),
    ("hf_router", 401, "Invalid credentials in Authorization header"),
    ("hf_tgi", 401, "Authorization header is correct, but the token seems invalid"),
    ("fireworks", 401, "The API key you provided is invalid."),
    ("openrouter", 401, "User not found."),
])
def test_p5_bad_key_gives_the_providers_status_and_message(hub, openai_fake, monkeypatch,
                                                           profile, status, message):
    fake = openai_fake(profile)
    if profile == "hf_router":
        monkeypatch.setenv("BYOK_NB_HF_ROUTER_URL", fake.base_url)
        target = target_for(profile, api_key="hf_WrongToken0000000000",
                            endpoint_url="https://api-inference.huggingface.co/models/org/m-1")
    else:
        target = target_for(profile, fake, api_key="wrong-key-0000000000")
    error = call(hub, target)
    assert error.status_code == status
    assert error.provider_message == message
    assert message in error.message and str(status) in error.message


def test_p5_openai_bad_key_message_shows_no_part_of_the_key(hub, openai_fake):
    fake = openai_fake("openai")
    wrong = "sk-proj-wrongwrongwrong1234"
    error = call(hub, target_for("openai", fake, api_key=wrong))
    assert error.status_code == 401
    assert error.provider_message.startswith("Incorrect API key provided:")
    assert wrong not in error.message


@pytest.mark.parametrize("profile, status, message", [
    ("fireworks", 404, "Model not found, inaccessible, and/or not deployed"),
    ("together", 404, "Unable to access model nope/model. Please visit https://api.together.ai/models"),
    ("hf_router", 400, "The requested model 'nope/model' does not exist."),
    ("litellm", 400, "/chat/completions: Invalid model name passed in model=nope/model."),
    ("openai", 404, "The model `nope/model` does not exist or you do not have access to it."),
])
def test_p5_unknown_model_gives_the_providers_error(hub, openai_fake, monkeypatch, profile, status, message):
    fake = openai_fake(profile, models=["real/model"])
    if profile == "hf_router":
        monkeypatch.setenv("BYOK_NB_HF_ROUTER_URL", fake.base_url)
        target = target_for(profile, endpoint_url="https://router.huggingface.co/v1")
        # A router URL typed by the user is used as is; point this one at the fake instead.
        adapter = hub.adapter(target)
        adapter.url = fake.base_url + "/chat/completions"
        with pytest.raises(ProviderError) as caught:
            adapter.chat(chat("nope/model"))
        error = caught.value
    else:
        error = call(hub, target_for(profile, fake, model="nope/model"), chat("nope/model"))
    assert error.status_code == status
    assert error.provider_message.startswith(message)


def test_c3_a_key_echoed_by_the_provider_is_scrubbed(hub, openai_fake):
    """LiteLLM echoes the key it received; neither message may carry it."""
    fake = openai_fake("litellm")
    wrong = "sk-litellm-wrong-key-7777777"
    error = call(hub, target_for("litellm", fake, api_key=wrong))
    assert error.status_code == 401
    assert wrong in fake.last.headers["authorization"]          # it was sent ...
    assert wrong not in error.message and wrong not in error.provider_message   # ... never shown
    assert "Received API Key = [REDACTED]" in error.provider_message
    assert wrong not in repr(error)


def test_c3_an_unshaped_secret_is_scrubbed_too(hub, openai_fake):
    fake = openai_fake("openai")
    odd_key = "plainsecretvalue"        # not key-shaped: only the Target's own secret list catches it
    target = Target("openai_compatible", "m", api_key=SecretStr(odd_key), base_url=fake.base_url)

    def echo(request):  # a server that puts the caller's token into its error text
        from byok_nb.testing import Reply
        token = request.headers["authorization"].split()[-1]
        return Reply(500, {"error": {"message": f"backend rejected token={token}"}})

    fake.add_route("POST", "/v1/chat/completions", echo)
    error = call(hub, target)
    assert odd_key not in error.message
    assert error.provider_message == "backend rejected token=[REDACTED]"


def test_p5_server_error_keeps_the_status(hub, openai_fake):
    fake = openai_fake("fireworks", fail_status=503)
    error = call(hub, target_for("fireworks", fake))
    assert error.status_code == 503
    assert "The server had an error" in error.provider_message


def test_p5_rate_limit_shows_retry_after(hub, openai_fake):
    fake = openai_fake("together", rate_limit=True, retry_after=17)
    error = call(hub, target_for("together", fake))
    assert error.status_code == 429
    assert "Retry-After: 17" in error.message


def test_p5_huge_non_json_body_is_cut_to_4000_characters(hub, openai_fake):
    fake = openai_fake("openai", huge_body=True)
    error = call(hub, target_for("openai", fake))
    assert error.status_code == 500
    assert error.provider_message.startswith("<html><body>upstream exploded")
    assert len(error.provider_message) <= MAX_SHOWN_CHARS + len(" …[truncated]")
    assert error.provider_message.endswith("[truncated]")
    assert len(error.message) < MAX_SHOWN_CHARS + 200


def test_p5_malformed_200_reply_is_a_502(hub, openai_fake):
    fake = openai_fake("together", malformed=True)
    error = call(hub, target_for("together", fake))
    assert error.status_code == 502
    assert "malformed reply" in error.message and "not JSON" in error.message
    assert '{"id": "chatcmpl-broken"' in error.provider_message


def test_p5_200_reply_without_choices_is_a_502(hub, openai_fake):
    fake = openai_fake("openai", reply="x")
    from byok_nb.testing import Reply
    fake.add_route("POST", "/v1/chat/completions", lambda r: Reply(200, {"object": "list", "data": []}))
    error = call(hub, target_for("openai", fake))
    assert error.status_code == 502
    assert "no choices[0].message" in error.message


def test_p5_openrouter_error_inside_a_200_body_is_an_error(hub, openai_fake):
    fake = openai_fake("openrouter")
    from byok_nb.testing import Reply
    fake.add_route("POST", "/api/v1/chat/completions", lambda r: Reply(
        200, {"error": {"message": "Provider returned error", "code": 429}}))
    error = call(hub, target_for("openrouter", fake))
    assert error.status_code == 429
    assert error.provider_message == "Provider returned error"


@pytest.mark.parametrize("body, expected", [
    (b'{"error":{"message":"m1","type":"x"}}', "m1"),
    (b'{"error":"plain"}', "plain"),
    (b'{"message":"aws style"}', "aws style"),
    (b'{"detail":[{"loc":["body"],"msg":"bad"}]}', '[{"loc": ["body"], "msg": "bad"}]'),
    (b"Bad Gateway\n", "Bad Gateway"),
    (b'{"error":{"code":"E1"}}', '{"code": "E1"}'),
])
def test_p5_provider_message_is_found_in_each_body_shape(body, expected):
    assert provider_message_from_body(body) == expected


# -- transport failures ------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_t3_refused_connection_is_a_502_naming_it(hub):
    target = Target("openai_compatible", "m", base_url=f"http://127.0.0.1:{_closed_port()}/v1")
    error = call(hub, target)
    assert error.status_code == 502
    assert "refused the connection" in error.message


def test_t8_timeout_is_bounded_by_the_hub_timeout(openai_fake):
    fake = openai_fake("openai", delay=2.0)
    with ProviderHub(timeout=0.2) as hub:
        started = time.perf_counter()
        error = call(hub, target_for("openai", fake))
        elapsed = time.perf_counter() - started
    assert error.status_code == 502
    assert "timed out after 0.2 s" in error.message
    assert elapsed < 1.5


def test_t3_dns_failure_is_a_502_naming_the_host(hub, monkeypatch):
    def no_such_host(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    error = call(hub, Target("openai_compatible", "m", base_url="https://llm.invalid/v1"))
    assert error.status_code == 502
    assert "could not be resolved" in error.message
    assert "llm.invalid" in error.message


def test_t3_tls_failure_is_a_502_naming_it(hub, openai_fake):
    fake = openai_fake("openai")          # plain HTTP: a TLS client hello gets garbage back
    error = call(hub, Target("openai_compatible", "m", base_url=f"https://127.0.0.1:{fake.port}/v1"))
    assert error.status_code == 502
    assert "TLS handshake" in error.message


def test_t3_non_http_url_is_a_clear_error(hub):
    error = call(hub, Target("openai_compatible", "m", base_url="ftp://example.com/v1"))
    assert error.status_code == 502
    assert "not an http(s) URL" in error.message
