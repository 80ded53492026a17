"""Provider faults, for every provider family: each is bounded in time and becomes a ProviderError
(SPEC P-5, T-3, T-8, T-9, W-9).

tests/providers/test_p5_errors.py covers the well-formed failures through the vendor fakes
(provider error bodies, 429 with Retry-After and 5xx on Fireworks/Together, a 1 MB error body, a
malformed 200, a slow *whole* reply, refused connections, DNS and TLS failures). This file adds
the socket-level faults those fakes cannot play, against every family — Fireworks, Together,
OpenRouter, OpenAI-compatible, HuggingFace and Bedrock (converse through its adapter against a
loopback endpoint) — and checks each through the public Session API too:

* connection reset (RST) after the headers, and before any reply; an orderly close mid-body;
* slow drip: one byte every 0.2 s, forever, in the body and in the headers — the call must end
  by the registry timeout (a deadline for the whole call, not per read);
* huge bodies (64 MB): a 200, a chunked 200 and a 500 — read only up to a cap, never buffered
  whole;
* malformed JSON in a 200; 429 with Retry-After; 5xx.

Timing is asserted coarsely only: every call runs in a thread joined with a generous guard, and
the test fails if the call has not returned by then.
"""
from __future__ import annotations

import threading
import time
import tracemalloc
from typing import Any

import pytest
from faultkit import FaultServer
from pydantic import SecretStr

import byok_nb
from byok_nb.core.errors import ProviderError
from byok_nb.providers import ChatRequest, ProviderHub, Target
from byok_nb.providers.transport import MAX_RESPONSE_BYTES, MAX_SHOWN_CHARS

TIMEOUT = 1.0          # the registry/hub timeout under test (T-8)
GUARD = 10.0           # a call still running after this has no deadline: a failure
HUGE = 64 * 2**20      # bytes the huge-body faults offer
SHOWN_MAX = MAX_SHOWN_CHARS + len(" …[truncated]")

FAMILIES = ["fireworks", "together", "openrouter", "openai_compatible", "huggingface", "bedrock"]
KEYS = {
    "fireworks": "fw_faults_Fireworks_Key_0123456789",
    "together": "tgp_v1_faults-together-key-0123456789",
    "openrouter": "sk-or-v1-faults-openrouter-key-0123",
    "openai_compatible": "sk-faults-openai-compatible-key-01",
    "huggingface": "hf_FaultsEndpointToken0123456789ab",
}
AWS_KEY_ID = "AKIAFAULTSEXAMPLE001"
AWS_SECRET = "faults/AwsSecretAccessKey+0123456789abcd"
BASE_URL_ENV = {"fireworks": "BYOK_NB_FIREWORKS_BASE_URL", "together": "BYOK_NB_TOGETHER_BASE_URL",
                "openrouter": "OPENROUTER_BASE_URL"}
_ENV_TO_CLEAR = ("BYOK_NB_FIREWORKS_BASE_URL", "BYOK_NB_TOGETHER_BASE_URL", "BYOK_NB_BEDROCK_ENDPOINT_URL",
                 "BYOK_NB_HF_ROUTER_URL", "OPENROUTER_BASE_URL", "OPENROUTER_API_KEY", "BYOK_NB_EGRESS",
                 "AWS_BEARER_TOKEN_BEDROCK", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_BEDROCK_RUNTIME")


@pytest.fixture(autouse=True)
def _clean_provider_env(monkeypatch):
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fault_server():
    """``fault_server(mode, **options)`` -> a started FaultServer, stopped after the test."""
    started: list[FaultServer] = []

    def start(mode: str, **options: Any) -> FaultServer:
        server = FaultServer(mode, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def point_at(family: str, server: FaultServer, monkeypatch) -> dict[str, Any]:
    """Route ``family`` to ``server`` (P-9 overrides or the model's own URL); the model's fields."""
    if family in BASE_URL_ENV:
        monkeypatch.setenv(BASE_URL_ENV[family], server.url + "/v1")
        model_id = {"fireworks": "accounts/acme/models/ft", "together": "acme/ft",
                    "openrouter": "openai/gpt-4o"}[family]
        return {"provider": family, "provider_model_id": model_id, "api_key": KEYS[family]}
    if family == "openai_compatible":
        return {"provider": family, "provider_model_id": "qwen", "api_key": KEYS[family],
                "base_url": server.url + "/v1"}
    if family == "huggingface":
        return {"provider": family, "provider_model_id": "tgi", "api_key": KEYS[family],
                "endpoint_url": server.url}
    monkeypatch.setenv("BYOK_NB_BEDROCK_ENDPOINT_URL", server.url)
    return {"provider": "bedrock", "provider_model_id": "anthropic.claude-3-haiku-20240307-v1:0",
            "aws_region": "us-east-1", "auth_method": "iam", "aws_access_key_id": AWS_KEY_ID,
            "aws_secret_access_key": AWS_SECRET}


def target_of(fields: dict[str, Any]) -> Target:
    secrets = {k: SecretStr(fields[k]) for k in ("api_key", "aws_secret_access_key") if k in fields}
    plain = {k: v for k, v in fields.items() if k not in secrets}
    return Target(provider=plain.pop("provider"), provider_model_id=plain.pop("provider_model_id"),
                  **plain, **secrets)


def bounded(call, guard: float = GUARD) -> tuple[Any, BaseException | None, float]:
    """Run ``call`` in a thread; fail unless it returns within ``guard`` s. (result, error, s)."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            out["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True, name="bounded-call")
    thread.start()
    thread.join(guard)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"the call was still running after {guard:g} s: no deadline"
    return out.get("result"), out.get("error"), elapsed


def provider_error(call, guard: float = GUARD) -> ProviderError:
    result, error, _ = bounded(call, guard)
    assert error is not None, f"expected a ProviderError, got a result: {result!r}"
    assert isinstance(error, ProviderError), f"{type(error).__name__} escaped: {error!r}"
    return error


def chat_request() -> ChatRequest:
    return ChatRequest(model="", messages=[{"role": "user", "content": "Say hi"}], max_tokens=64)


# Each fault: (FaultServer mode, options, expected status, words the message must contain).
# ``None`` for words means "any non-empty text".
FAULTS = {
    "reset_after_headers": ("reset_after_headers", {}, 502, ("connection",)),
    "close_mid_body": ("close_after_headers", {}, 502, ("connection",)),
    "reset_before_reply": ("reset_before_reply", {}, 502, ("connection",)),
    "drip_body": ("drip_body", {}, 502, ("timed out",)),
    "drip_headers": ("drip_headers", {}, 502, ("timed out",)),
    "huge_200": ("huge_ok", {"huge_bytes": HUGE}, 502, ("larger than",)),
    "huge_chunked_200": ("huge_chunked", {"huge_bytes": HUGE}, 502, ("larger than",)),
    "huge_500": ("huge_error", {"huge_bytes": HUGE}, 500, ("500",)),
    "malformed_json": ("malformed", {}, 502, ("malformed",)),
    "rate_limited": ("rate_limited", {"retry_after": "17"}, 429, ("429", "Retry-After: 17")),
    "server_error": ("server_error", {"status": 503}, 503, ("503",)),
}


def check_error(error: ProviderError, fault: str, *, secrets: tuple[str, ...] = ()) -> None:
    _, _, status, words = FAULTS[fault]
    assert error.status_code == status, (fault, error.status_code, error.message)
    for word in words:
        assert word in error.message, (fault, word, error.message)
    assert error.provider_message and error.provider_message.strip()
    assert len(error.provider_message) <= SHOWN_MAX + 200
    assert len(error.message) <= SHOWN_MAX + 600
    for secret in secrets:
        assert secret not in error.message and secret not in error.provider_message


def all_secrets() -> tuple[str, ...]:
    return (*KEYS.values(), AWS_SECRET)


# -- adapter level: every family x every fault ----------------------------------------------------
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("family", FAMILIES)
def test_p5_t8_fault_becomes_a_bounded_provider_error(family, fault, fault_server, monkeypatch):
    mode, options, _, _ = FAULTS[fault]
    server = fault_server(mode, bedrock=family == "bedrock", **options)
    target = target_of(point_at(family, server, monkeypatch))
    with ProviderHub(timeout=TIMEOUT) as hub:
        result, error, elapsed = bounded(lambda: hub.adapter(target).chat(chat_request()))
    assert isinstance(error, ProviderError), f"expected a ProviderError, got {error!r} / {result!r}"
    check_error(error, fault, secrets=all_secrets())
    assert len(server.requests) >= 1          # the fault was reached, not a local refusal
    # Coarse: the call's own deadline ended it, not the guard. A drip (a byte every 0.2 s) never
    # trips a 1 s per-read timeout, so only a deadline for the whole call gets here.
    assert elapsed < 4 * TIMEOUT + 2
    if mode.startswith("drip"):
        assert server.bytes_sent < 200        # a few dripped bytes, not the megabyte on offer


@pytest.mark.parametrize("fault", ["huge_200", "huge_chunked_200", "huge_500"])
@pytest.mark.parametrize("family", ["openai_compatible", "bedrock"])
def test_p5_huge_body_is_read_only_up_to_a_cap(family, fault, fault_server, monkeypatch):
    mode, options, _, _ = FAULTS[fault]
    server = fault_server(mode, bedrock=family == "bedrock", **options)
    target = target_of(point_at(family, server, monkeypatch))
    with ProviderHub(timeout=5.0) as hub:
        adapter = hub.adapter(target)
        tracemalloc.start()
        try:
            error = provider_error(lambda: adapter.chat(chat_request()))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    check_error(error, fault)
    # The client stopped reading near the cap: the server could not push the whole 64 MB, and
    # the process never held it (the peak is the cap plus copies, far below the offer).
    assert server.bytes_sent < HUGE * 3 // 4
    assert peak < 3 * MAX_RESPONSE_BYTES + 8 * 2**20, peak


def test_p5_huge_error_keeps_the_providers_status_and_first_4000_characters(fault_server, monkeypatch):
    server = fault_server("huge_error", huge_bytes=HUGE)
    target = target_of(point_at("openai_compatible", server, monkeypatch))
    with ProviderHub(timeout=TIMEOUT) as hub:
        error = provider_error(lambda: hub.adapter(target).chat(chat_request()))
    assert error.status_code == 500
    assert error.provider_message.startswith("<html><body>upstream exploded")
    assert error.provider_message.endswith("[truncated]")


def test_p5_hub_recovers_after_faults(fault_server, monkeypatch):
    """A reset or a dripping connection must not poison the pool: the next call succeeds."""
    server = fault_server("reset_after_headers")
    target = target_of(point_at("openai_compatible", server, monkeypatch))
    with ProviderHub(timeout=TIMEOUT) as hub:
        for mode in ("reset_after_headers", "drip_body", "huge_ok", "ok"):
            server.mode = mode
            result, error, _ = bounded(lambda: hub.adapter(target).chat(chat_request()))
        assert error is None and result.text == '{"status":"ok"}'


# -- through the public Session API -------------------------------------------------------------
@pytest.fixture
def faulty_registry(tmp_path):
    reg = byok_nb.open_registry(f"sqlite:///{tmp_path / 'faults.db'}",
                                master_key=byok_nb.generate_master_key(), timeout=TIMEOUT)
    reg.create_org("acme")
    reg.create_project("acme", "search")
    reg.add_member("acme", "ana", role="org_admin")
    try:
        yield reg
    finally:
        reg.close()


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("family", ["openai_compatible", "bedrock"])
def test_t3_t9_w9_fault_through_the_session_api(family, fault, fault_server, monkeypatch,
                                                 faulty_registry):
    """test_connection reports ok=False with the error; add_model (T-9) raises without saving;
    generate raises ProviderError and records a failed usage row; afterwards all works again."""
    mode, options, status, words = FAULTS[fault]
    server = fault_server(mode, bedrock=family == "bedrock", **options)
    fields = point_at(family, server, monkeypatch)
    s = faulty_registry.session(org="acme", user="ana")

    result, error, _ = bounded(lambda: s.test_connection(dict(fields, display_name="Probe")))
    assert error is None, f"test_connection raised {error!r}"
    assert result.ok is False
    assert result.status_code == status
    for word in words:
        assert word in result.message
    assert all(secret not in result.message for secret in all_secrets())

    error = provider_error(lambda: s.add_model(dict(fields, display_name="Faulty")))
    check_error(error, fault, secrets=all_secrets())
    assert s.list_models(type="custom").empty                 # T-9: nothing saved

    model = s.add_model(dict(fields, display_name="Faulty"), test=False)
    s.create_workflow("wf", "search", fields=[byok_nb.LLMField("answer", model=model.slug)])
    error = provider_error(lambda: s.generate("wf", "answer", "Say hi"))
    check_error(error, fault, secrets=all_secrets())
    usage = s.usage()
    assert len(usage) == 1 and not bool(usage["ok"].iloc[0])  # W-9: the failed call is recorded

    server.mode = "ok"                                          # the provider heals
    result, error, _ = bounded(lambda: s.test_connection(model.slug))
    assert error is None and result.ok, result.message
    completion = s.generate("wf", "answer", "Say hi")
    assert completion.text == '{"status":"ok"}'
    assert len(s.usage()) == 2


@pytest.mark.parametrize("fault", ["drip_headers", "reset_after_headers", "huge_200", "rate_limited",
                                   "malformed_json"])
@pytest.mark.parametrize("family", ["fireworks", "together", "openrouter", "huggingface"])
def test_t3_fault_through_test_connection_for_the_other_families(family, fault, fault_server,
                                                                  monkeypatch, faulty_registry):
    mode, options, status, words = FAULTS[fault]
    server = fault_server(mode, **options)
    fields = point_at(family, server, monkeypatch)
    s = faulty_registry.session(org="acme", user="ana")
    if family == "openrouter":
        # Platform models go through OpenRouter with the operator's key: reach it via generate.
        monkeypatch.setenv("OPENROUTER_API_KEY", KEYS["openrouter"])
        s.create_workflow("wf", "search", fields=[byok_nb.LLMField("answer", model="openai/gpt-4o")])
        error = provider_error(lambda: s.generate("wf", "answer", "Say hi"))
        check_error(error, fault, secrets=all_secrets())
        return
    result, error, _ = bounded(lambda: s.test_connection(dict(fields, display_name="Probe")))
    assert error is None, f"test_connection raised {error!r}"
    assert result.ok is False and result.status_code == status
    for word in words:
        assert word in result.message
