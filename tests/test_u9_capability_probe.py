"""SPEC U-9 (and M-9): "Probe capabilities" tries JSON mode, tool use, vision and reasoning with
tiny requests through the model's own adapter, and *suggests* flags with the evidence — against
loopback fakes that refuse (or ignore) capabilities with the real servers' error bodies. It never
changes a flag: the stored model is unchanged and the audit log gets one ``probe`` entry."""
from __future__ import annotations

import base64
import json
import struct
import time
import zlib

import pytest

import byok_nb
from byok_nb import CapabilityProbe, Forbidden
from byok_nb.providers.capability_probe import (
    BASELINE_PROMPT, JSON_SCHEMA, NOTE, PROBE_FLAGS, PROBE_IMAGE_URL, PROBE_MAX_TOKENS,
    REASONING_MAX_TOKENS, TOOL_NAME,
)
from byok_nb.testing import FakeBedrock, FakeOpenAIProvider
from byok_nb.testing.fake_providers import CAPABILITY_ERRORS, openai_error

FW_KEY = "fw_U9ProbeFireworksKey0123456789"
TG_KEY = "tgp_v1_u9-probe-together-key-0123"
HF_TOKEN = "hf_U9ProbeEndpointToken0123456789"
VLLM_KEY = "sk-u9-vllm-local-key-000111222"
LITELLM_KEY = "sk-u9-litellm-master-key-777888"
AKID, AWS_SECRET = "AKIAU9PROBE000000001", "u9/probe/secret/0123456789abcdefghijklmn"
BEDROCK_KEY = "ABSKdTktcHJvYmUtYmVkcm9jay1hcGkta2V5LTAwMQ=="
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET_37 = "anthropic.claude-3-7-sonnet-20250219-v1:0"
ALL_SECRETS = (FW_KEY, TG_KEY, HF_TOKEN, VLLM_KEY, LITELLM_KEY, AWS_SECRET, BEDROCK_KEY)

_OVERRIDES = ("BYOK_NB_FIREWORKS_BASE_URL", "BYOK_NB_TOGETHER_BASE_URL", "BYOK_NB_BEDROCK_ENDPOINT_URL",
              "BYOK_NB_HF_ROUTER_URL", "OPENROUTER_BASE_URL", "AWS_BEARER_TOKEN_BEDROCK")


@pytest.fixture(autouse=True)
def _no_operator_overrides(monkeypatch):
    for name in _OVERRIDES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fakes():
    """``start(fake)`` starts a fake for this test only."""
    started = []

    def start(fake):
        started.append(fake.start())
        return fake

    yield start
    for fake in started:
        fake.stop()


def by_flag(result: CapabilityProbe) -> dict:
    return {f.flag: f for f in result.findings()}


def capability_requests(fake) -> dict:
    """The probe's requests a fake received, by what they carry (they run concurrently)."""
    out = {}
    for request in fake.requests:
        body = request.json or {}
        text = json.dumps(body)
        if "converse" in request.path:
            if body.get("additionalModelRequestFields"):
                out["supports_reasoning"] = body
            elif (body.get("toolConfig") or {}).get("toolChoice", {}).get("tool"):
                out["supports_json_mode"] = body
            elif body.get("toolConfig"):
                out["supports_tool_use"] = body
            elif '"image"' in text:
                out["supports_vision"] = body
            else:
                out["baseline"] = body
        elif "response_format" in body:
            out["supports_json_mode"] = body
        elif "tools" in body:
            out["supports_tool_use"] = body
        elif "image_url" in text:
            out["supports_vision"] = body
        elif {"reasoning", "reasoning_effort", "thinking"} & set(body):
            out["supports_reasoning"] = body
        else:
            out["baseline"] = body
    return out


def assert_unchanged_and_audited(session, slug, before, *, probes=1):
    """M-9: the stored model is exactly as before; the audit log has only ``probe`` entries."""
    assert session.get_model(slug) == before
    log = session.audit_log()
    actions = list(log[log["slug"] == slug]["action"])
    assert actions.count("probe") == probes and "edit" not in actions
    entry = log[log["action"] == "probe"].iloc[-1]
    assert entry["actor"] == session.user and set(entry["changes"]) == {"ok", "suggested_changes"}


def assert_no_secret(result: CapabilityProbe, *secrets: str):
    dumped = [repr(result), str(result), result.model_dump_json(), result.message,
              json.dumps(result.request_previews, default=str)]
    dumped += [f.evidence for f in result.findings()]
    for secret in secrets or ALL_SECRETS:
        assert all(secret not in text for text in dumped), secret


# -- OpenAI-compatible (vLLM, LiteLLM) -------------------------------------------------------------
def test_u9_m9_vllm_refusals_are_suggested_off_and_the_model_is_not_changed(acme, fakes):
    s = acme.admin
    fake = fakes(FakeOpenAIProvider("vllm", api_key=VLLM_KEY, unsupported={"vision", "tools"}))
    before = s.add_model(provider="openai_compatible", base_url=fake.base_url, api_key=VLLM_KEY,
                         provider_model_id="meta-llama/Llama-3.1-8B-Instruct", display_name="vLLM 8B",
                         supports_vision=True, supports_tool_use=True, max_tokens=4096, test=False)
    result = s.probe_capabilities("vllm-8b")
    found = by_flag(result)
    assert result.ok and result.slug == "vllm-8b" and NOTE in result.message
    assert found["supports_json_mode"].suggested is True
    assert "reply parsed as JSON" in found["supports_json_mode"].evidence
    assert "response_format json_schema" in found["supports_json_mode"].evidence
    tools = found["supports_tool_use"]
    assert tools.suggested is False and tools.status_code == 400 and tools.current is True
    assert tools.evidence.endswith('400: "auto" tool choice requires --enable-auto-tool-choice and '
                                   '--tool-call-parser to be set')
    vision = found["supports_vision"]
    assert vision.suggested is False
    assert "400: meta-llama/Llama-3.1-8B-Instruct is not a multimodal model" in vision.evidence
    # vLLM takes reasoning fields without a reasoning parser and returns nothing: inconclusive.
    reasoning = found["supports_reasoning"]
    assert reasoning.suggested is None and reasoning.status_code == 200
    assert "may have ignored it" in reasoning.evidence
    assert result.suggested_changes() == {"supports_tool_use": False, "supports_vision": False}
    assert_unchanged_and_audited(s, "vllm-8b", before)
    audit = s.audit_log().iloc[-1]
    assert audit["action"] == "probe" and audit["changes"]["suggested_changes"] == result.suggested_changes()
    assert_no_secret(result)


def test_u9_requests_are_tiny_and_each_adds_one_capability(acme, fakes):
    s = acme.admin
    fake = fakes(FakeOpenAIProvider("openai", api_key=None, tool_call="first", reasoning_reply="2+3=5"))
    s.add_model(provider="openai_compatible", base_url=fake.base_url, provider_model_id="m",
                display_name="Tiny", max_tokens=16384, supports_reasoning=True,
                reasoning_parameter="effort", test=False)
    s.probe_capabilities("tiny")
    assert len(fake.requests) == 5
    assert fake.requests[0].json["messages"] == [{"role": "user", "content": BASELINE_PROMPT}]
    sent = capability_requests(fake)
    assert set(sent) == {"baseline", *PROBE_FLAGS}
    for name in ("baseline", "supports_json_mode", "supports_tool_use", "supports_vision"):
        assert sent[name]["max_tokens"] == PROBE_MAX_TOKENS
    assert sent["supports_json_mode"]["response_format"]["json_schema"]["schema"] == JSON_SCHEMA
    assert [t["function"]["name"] for t in sent["supports_tool_use"]["tools"]] == [TOOL_NAME]
    image = sent["supports_vision"]["messages"][0]["content"][1]["image_url"]["url"]
    assert image == PROBE_IMAGE_URL and image.startswith("data:image/png;base64,")
    # the model's reasoning parameter (effort) at its smallest setting, under a small cap
    assert sent["supports_reasoning"]["reasoning_effort"] == "low"
    assert sent["supports_reasoning"]["max_tokens"] == REASONING_MAX_TOKENS
    for name, body in sent.items():     # nothing but the one capability per request
        extra = {"response_format", "tools", "reasoning_effort", "reasoning", "thinking"} & set(body)
        assert len(extra) == (0 if name in ("baseline", "supports_vision") else 1), (name, extra)


def test_u9_a_small_model_cap_is_kept(acme, fakes):
    s = acme.admin
    fake = fakes(FakeOpenAIProvider("openai", api_key=None))
    s.add_model(provider="openai_compatible", base_url=fake.base_url, provider_model_id="m",
                display_name="Small", max_tokens=8, test=False)
    s.probe_capabilities("small")
    sent = capability_requests(fake)
    assert sent["baseline"]["max_tokens"] == 8 and sent["supports_tool_use"]["max_tokens"] == 8


def test_u9_png_is_a_valid_32px_image():
    data = base64.b64decode(PROBE_IMAGE_URL.split(",", 1)[1])
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (32, 32) and len(data) < 200
    length = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    rows = zlib.decompress(data[41:41 + length])
    assert len(rows) == 32 * (1 + 32 * 3)


# -- Fireworks and Together ------------------------------------------------------------------------
def test_u9_fireworks_everything_supported_suggests_on_with_evidence(acme, fakes, monkeypatch):
    s = acme.admin
    fake = fakes(FakeOpenAIProvider("fireworks", api_key=FW_KEY, tool_call="first",
                                    reasoning_reply="The user asks 2 + 3; that is 5.",
                                    reply=lambda r: "Red" if "image_url" in json.dumps(r.json) else '{"ok": true}'))
    monkeypatch.setenv("BYOK_NB_FIREWORKS_BASE_URL", fake.base_url)
    before = s.add_model(provider="fireworks", api_key=FW_KEY, provider_model_id="accounts/acme/models/ft",
                         display_name="FW", supports_vision=False, supports_reasoning=False, test=False)
    result = s.probe_capabilities("fw")
    found = by_flag(result)
    assert all(f.suggested is True for f in result.findings()), [f.evidence for f in result.findings()]
    assert f"the reply called it: {TOOL_NAME}(" in found["supports_tool_use"].evidence
    assert '{"ok": true}' in found["supports_tool_use"].evidence
    assert "names the image's colour (red)" in found["supports_vision"].evidence
    assert "cannot verify" in found["supports_vision"].evidence
    reasoning = found["supports_reasoning"].evidence
    assert 'thinking":{"type":"enabled","budget_tokens":1024}' in reasoning
    assert "reasoning tokens" in reasoning and "reasoning content" in reasoning
    assert capability_requests(fake)["supports_reasoning"]["thinking"]["budget_tokens"] == 1024
    assert result.suggested_changes() == {"supports_vision": True, "supports_reasoning": True}
    assert_unchanged_and_audited(s, "fw", before)
    assert_no_secret(result)
    assert fake.last.headers["authorization"] == f"Bearer {FW_KEY}"


def test_u9_together_refusals_quote_the_providers_message(acme, fakes, monkeypatch):
    s = acme.admin
    fake = fakes(FakeOpenAIProvider("together", api_key=TG_KEY,
                                    unsupported={"vision", "reasoning", "json"}))
    monkeypatch.setenv("BYOK_NB_TOGETHER_BASE_URL", fake.base_url)
    s.add_model(provider="together", api_key=TG_KEY, provider_model_id="meta-llama/Llama-3.3-70B-Instruct-Turbo",
                display_name="TG", supports_vision=True, supports_reasoning=True,
                reasoning_parameter="effort", test=False)
    found = by_flag(s.probe_capabilities("tg"))
    assert found["supports_vision"].evidence.endswith(
        "rejected — 400: Invalid content type. image_url is only supported by certain models.")
    assert found["supports_reasoning"].suggested is False
    assert "400: Unsupported parameter: 'reasoning_effort' is not supported with this model." in \
        found["supports_reasoning"].evidence
    assert found["supports_json_mode"].suggested is False
    assert "response_format of type 'json_schema' is not supported" in found["supports_json_mode"].evidence
    assert found["supports_tool_use"].suggested is None          # text reply, no tool call
    assert "answered in text instead of calling it" in found["supports_tool_use"].evidence


# -- HuggingFace (TGI endpoint, router) ------------------------------------------------------------
def test_u9_huggingface_tgi_refused_json_and_silently_ignored_image_and_tools(acme, fakes):
    s = acme.admin
    fake = fakes(FakeOpenAIProvider("hf_tgi", api_key=HF_TOKEN, unsupported=set(CAPABILITY_ERRORS["hf_tgi"]),
                                    reply="I cannot see any picture."))
    before = s.add_model(provider="huggingface", endpoint_url=fake.url, api_key=HF_TOKEN,
                         provider_model_id="tgi", display_name="TGI", test=False)
    result = s.probe_capabilities("tgi")
    found = by_flag(result)
    assert found["supports_json_mode"].suggested is False
    assert "response_format json" in found["supports_json_mode"].evidence      # TGI's own grammar form
    assert "422: Input validation error: grammar is not supported" in found["supports_json_mode"].evidence
    # TGI answers an image for a text-only model without complaint: acceptance proves nothing.
    assert found["supports_vision"].suggested is None
    assert "TGI endpoints pass images to text-only models" in found["supports_vision"].evidence
    assert found["supports_tool_use"].suggested is None
    assert result.suggested_changes() == {"supports_json_mode": False}
    assert_unchanged_and_audited(s, "tgi", before)


def test_u9_huggingface_tgi_vision_counts_when_the_answer_names_the_colour(acme, fakes):
    s = acme.admin
    fake = fakes(FakeOpenAIProvider("hf_tgi", api_key=HF_TOKEN, reply="Red."))
    s.add_model(provider="huggingface", endpoint_url=fake.url, api_key=HF_TOKEN,
                provider_model_id="tgi", display_name="TGI VL", test=False)
    vision = by_flag(s.probe_capabilities("tgi-vl"))["supports_vision"]
    assert vision.suggested is True and "names the image's colour" in vision.evidence


def test_u9_huggingface_router_refuses_images_with_openais_words(acme, fakes, monkeypatch):
    s = acme.admin
    fake = fakes(FakeOpenAIProvider("hf_router", api_key=HF_TOKEN, unsupported={"vision"},
                                    models=["meta-llama/Llama-3.1-8B-Instruct"]))
    monkeypatch.setenv("BYOK_NB_HF_ROUTER_URL", fake.base_url)
    s.add_model(provider="huggingface", api_key=HF_TOKEN, provider_model_id="llama",
                endpoint_url="https://api-inference.huggingface.co/models/meta-llama/Llama-3.1-8B-Instruct",
                display_name="Router", supports_vision=True, test=False)
    found = by_flag(s.probe_capabilities("router"))
    assert found["supports_vision"].suggested is False
    assert "image_url is only supported by certain models" in found["supports_vision"].evidence
    assert found["supports_json_mode"].suggested is True
    assert capability_requests(fake)["baseline"]["model"] == "meta-llama/Llama-3.1-8B-Instruct"


# -- Bedrock converse --------------------------------------------------------------------------------
def test_u9_bedrock_iam_validation_exceptions_are_rejections(acme, fakes, monkeypatch):
    s = acme.admin
    fake = fakes(FakeBedrock(credentials={AKID: AWS_SECRET}, unsupported={"tools", "vision", "reasoning"}))
    monkeypatch.setenv("BYOK_NB_BEDROCK_ENDPOINT_URL", fake.url)
    before = s.add_model(provider="bedrock", aws_region="us-east-1", auth_method="iam",
                         aws_access_key_id=AKID, aws_secret_access_key=AWS_SECRET,
                         provider_model_id=HAIKU, display_name="Haiku", supports_vision=True,
                         supports_reasoning=True, test=False)
    result = s.probe_capabilities("haiku")
    found = by_flag(result)
    assert found["supports_tool_use"].evidence.endswith("rejected — 400: This model doesn't support tool use.")
    # JSON mode on Bedrock is a forced tool (P table), so a model without tool use cannot do it.
    assert found["supports_json_mode"].suggested is False
    assert "native JSON (a forced tool, toolChoice.tool) rejected" in found["supports_json_mode"].evidence
    assert "This model doesn't support the image content block that you provided." in \
        found["supports_vision"].evidence
    assert "extraneous key [thinking] is not permitted" in found["supports_reasoning"].evidence
    assert all(f.suggested is False and f.status_code == 400 for f in result.findings())
    assert result.suggested_changes() == {"supports_json_mode": False, "supports_tool_use": False,
                                          "supports_vision": False, "supports_reasoning": False}
    assert_unchanged_and_audited(s, "haiku", before)
    assert_no_secret(result)
    assert result.request_previews["supports_tool_use"]["auth"]["aws_secret_access_key"] == "[REDACTED]"


def test_u9_bedrock_api_key_supported_capabilities(acme, fakes, monkeypatch):
    s = acme.admin
    fake = fakes(FakeBedrock(api_keys=[BEDROCK_KEY], reasoning_reply="Adding 2 and 3 gives 5.",
                             tool_call={"name": TOOL_NAME, "arguments": {"ok": True}},
                             reply=lambda r: "red" if '"image"' in json.dumps(r.json) else '{"ok": true}'))
    monkeypatch.setenv("BYOK_NB_BEDROCK_ENDPOINT_URL", fake.url)
    s.add_model(provider="bedrock", aws_region="us-west-2", auth_method="api_key", api_key=BEDROCK_KEY,
                provider_model_id=SONNET_37, display_name="Sonnet", supports_vision=False, test=False)
    result = s.probe_capabilities("sonnet")
    found = by_flag(result)
    assert all(f.suggested is True for f in result.findings()), [f.evidence for f in result.findings()]
    assert "reasoning content" in found["supports_reasoning"].evidence
    assert capability_requests(fake)["supports_reasoning"]["inferenceConfig"]["maxTokens"] == REASONING_MAX_TOKENS
    assert result.suggested_changes() == {"supports_vision": True, "supports_reasoning": True}
    assert fake.last.headers["authorization"] == f"Bearer {BEDROCK_KEY}"
    assert_no_secret(result)


# -- inconclusive ------------------------------------------------------------------------------------
class FailingCapabilities(FakeOpenAIProvider):
    """Answers the plain baseline; fails every capability request with ``status``."""

    def __init__(self, *args, status=500, **kwargs):
        super().__init__(*args, **kwargs)
        self.status = status

    def handle(self, request):
        body = request.json or {}
        if body.get("messages", [{}])[0].get("content") != BASELINE_PROMPT:
            return openai_error(self.status, "The server had an error while processing your request.",
                                type="server_error")
        return super().handle(request)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_u9_inconclusive_when_the_capability_request_fails_server_side(acme, fakes, status):
    s = acme.admin
    fake = fakes(FailingCapabilities("openai", api_key=None, status=status))
    before = s.add_model(provider="openai_compatible", base_url=fake.base_url, provider_model_id="m",
                         display_name="Flaky", test=False)
    result = s.probe_capabilities("flaky")
    assert result.ok
    for finding in result.findings():
        assert finding.suggested is None and finding.status_code == status
        assert finding.evidence.startswith("inconclusive") and f"HTTP {status}" in finding.evidence
    assert result.suggested_changes() == {}
    assert_unchanged_and_audited(s, "flaky", before)


def test_u9_a_failing_baseline_probes_nothing(acme, fakes):
    s = acme.admin
    fake = fakes(FakeOpenAIProvider("openai", api_key=None, fail_status=500))
    s.add_model(provider="openai_compatible", base_url=fake.base_url, provider_model_id="m",
                display_name="Down", test=False)
    result = s.probe_capabilities("down")
    assert result.ok is False and "HTTP 500" in result.message
    assert len(fake.requests) == 1
    assert all(f.suggested is None and "not probed" in f.evidence for f in result.findings())
    assert s.audit_log().iloc[-1]["changes"] == {"ok": False, "suggested_changes": {}}


class SlowImages(FakeOpenAIProvider):
    def handle(self, request):
        if "image_url" in json.dumps(request.json):
            time.sleep(1.5)
        return super().handle(request)


def test_u9_t8_a_timeout_is_inconclusive_and_bounded(master_key, fakes):
    reg = byok_nb.open_registry("sqlite://", master_key=master_key, timeout=0.5)
    try:
        reg.create_org("acme")
        reg.add_member("acme", "ana", role="org_admin")
        s = reg.session("acme", "ana")
        fake = fakes(SlowImages("openai", api_key=None))
        s.add_model(provider="openai_compatible", base_url=fake.base_url, provider_model_id="m",
                    display_name="Slow", test=False)
        started = time.monotonic()
        vision = by_flag(s.probe_capabilities("slow"))["supports_vision"]
        assert time.monotonic() - started < 1.4       # the capability requests run concurrently
        assert vision.suggested is None and "timed out after 0.5 s" in vision.evidence
    finally:
        reg.close()


def test_u9_p6_egress_refusal_is_a_failed_probe(acme, monkeypatch):
    import socket

    s = acme.admin
    # A metadata URL is refused at save time now; a name resolving to it is refused at call time.
    s.add_model(provider="openai_compatible", base_url="http://llm.attacker.example/v1",
                provider_model_id="m", display_name="Metadata", test=False)
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: (
        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        if host == "llm.attacker.example" else real(host, port, *a, **k)))
    result = s.probe_capabilities("metadata")
    assert result.ok is False and "link-local" in result.message
    assert all(f.suggested is None for f in result.findings())


# -- who, what, secrets --------------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["project_admin", "contributor", "outsider"])
def test_u9_m1_only_org_admins_may_probe(acme, fakes, who):
    fake = fakes(FakeOpenAIProvider("openai", api_key=None))
    acme.admin.add_model(provider="openai_compatible", base_url=fake.base_url, provider_model_id="m",
                         display_name="Guarded", test=False)
    with pytest.raises(Forbidden):
        getattr(acme, who).probe_capabilities("guarded")
    with pytest.raises(Forbidden):
        getattr(acme, who).probe_capabilities({"provider": "openai_compatible", "base_url": fake.base_url,
                                               "provider_model_id": "m"})
    assert fake.requests == []
    assert "probe" not in set(acme.admin.audit_log()["action"])


def test_u9_probes_a_draft_and_edit_overrides_like_test_connection(acme, fakes):
    s = acme.admin
    fake = fakes(FakeOpenAIProvider("litellm", api_key=LITELLM_KEY, unsupported={"vision"}))
    draft = {"provider": "openai_compatible", "base_url": fake.base_url, "api_key": LITELLM_KEY,
             "provider_model_id": "gpt-4o-mini", "supports_vision": True}
    result = s.probe_capabilities(draft)
    assert result.slug is None and result.suggested_changes() == {"supports_vision": False}
    assert s.list_models(type="custom").empty            # a draft probe saves nothing
    before = s.add_model(draft, display_name="Proxy", test=False)
    edited = s.probe_capabilities("proxy", supports_vision=False, api_key="")   # blank = stored key
    assert by_flag(edited)["supports_vision"].current is False
    assert edited.suggested_changes() == {}
    assert fake.last.headers["authorization"] == f"Bearer {LITELLM_KEY}"
    assert_unchanged_and_audited(s, "proxy", before)
    assert_no_secret(result)
    assert_no_secret(edited)


def test_u9_c3_a_provider_echoing_the_key_is_scrubbed(acme, fakes):
    s = acme.admin
    fake = fakes(FakeOpenAIProvider("litellm", api_key=LITELLM_KEY))
    s.add_model(provider="openai_compatible", base_url=fake.base_url, api_key="sk-u9-wrong-key-9999999999",
                provider_model_id="m", display_name="Echo", test=False)
    result = s.probe_capabilities("echo")          # LiteLLM's 401 echoes the key it received
    assert result.ok is False and "401" in result.message
    assert_no_secret(result, "sk-u9-wrong-key-9999999999")


class EchoingToolRefusal(FakeOpenAIProvider):
    def handle(self, request):
        if (request.json or {}).get("tools"):
            auth = request.headers.get("authorization", "")
            return openai_error(400, f"tools are not enabled for the key {auth[7:]}", param="tools")
        return super().handle(request)


def test_u9_c3_evidence_quoting_a_key_is_scrubbed(acme, fakes):
    s = acme.admin
    fake = fakes(EchoingToolRefusal("openai", api_key=VLLM_KEY))
    s.add_model(provider="openai_compatible", base_url=fake.base_url, api_key=VLLM_KEY,
                provider_model_id="m", display_name="Echo tools", test=False)
    tools = by_flag(s.probe_capabilities("echo-tools"))["supports_tool_use"]
    assert tools.suggested is False and "tools are not enabled for the key" in tools.evidence
    assert VLLM_KEY not in tools.evidence


# -- the fakes keep their old behaviour by default -----------------------------------------------------
def test_u9_fakes_default_to_full_support_and_check_capability_names():
    assert FakeOpenAIProvider("openai").unsupported == frozenset()
    assert FakeBedrock().unsupported == frozenset()
    with pytest.raises(ValueError, match="unsupported capabilities"):
        FakeOpenAIProvider("openai", unsupported={"telepathy"})


# -- the detail page (U-9 via widgets, U-6, U-7) -------------------------------------------------------
def walk(widget):
    yield widget
    for child in getattr(widget, "children", ()) or ():
        yield from walk(child)


def with_class(root, css):
    return [w for w in walk(root) if css in getattr(w, "_dom_classes", ())]


def state_text(root):
    return "\n".join(json.dumps({k: v for k, v in w.get_state().items()
                                 if not isinstance(v, (bytes, memoryview))}, default=str)
                     for w in walk(root))


def test_u9_detail_page_probe_button_shows_the_table_and_applies_only_to_the_form(acme, fakes):
    from byok_nb.ui import DetailPage

    s = acme.admin
    fake = fakes(FakeOpenAIProvider("vllm", api_key=VLLM_KEY, unsupported={"vision"}))
    before = s.add_model(provider="openai_compatible", base_url=fake.base_url, api_key=VLLM_KEY,
                         provider_model_id="m", display_name="Detail", supports_vision=True, test=False)
    page = DetailPage(s, "detail")
    assert page.probe_button is not None and page.probe_button.description == "Probe capabilities"
    assert with_class(page, "byok-probe-capabilities") == [page.probe_button]
    page.probe_button.click()
    table = with_class(page, "byok-probe-table")[0].value
    assert table.count("<tr class='byok-probe-") == 4
    for words in ("Capability", "Current flag", "Suggested", "Evidence", "Supports vision / image inputs",
                  "is not a multimodal model"):
        assert words in table
    assert "data-flag='supports_vision'" in table and "byok-probe-differs" in table
    assert "never changes the model" in with_class(page, "byok-probe-note")[0].value
    assert s.get_model("detail") == before                     # probing changed nothing
    page.apply_button.click()
    assert page.edit_area.children and page.form.supports_vision is False
    assert page.form_view.fields["supports_vision"].value is False
    assert page.form.changes() == {"supports_vision": False}
    assert "nothing has been saved" in page.message.value
    assert s.get_model("detail") == before                     # applying only pre-fills the form
    assert "edit" not in set(s.audit_log()["action"])
    assert VLLM_KEY not in state_text(page)


def test_u9_detail_page_probe_uses_the_edited_form_values(acme, fakes):
    from byok_nb.ui import DetailPage

    s = acme.admin
    fake = fakes(FakeOpenAIProvider("openai", api_key=VLLM_KEY))
    s.add_model(provider="openai_compatible", base_url=fake.base_url, api_key=VLLM_KEY,
                provider_model_id="m", display_name="Edited", test=False)
    page = DetailPage(s, "edited")
    page.edit_button.click()
    page.form_view.fields["provider_model_id"].value = "m-v2"
    page.probe_button.click()
    assert {r.json["model"] for r in fake.requests} == {"m-v2"}
    assert s.get_model("edited").provider_model_id == "m"
    # a plain OpenAI-shaped fake takes images: vision (stored off) is suggested on
    assert page.probe_result.suggested_changes() == {"supports_vision": True}
    assert page.apply_button is not None


def test_u9_u6_non_admins_have_no_probe_button(acme, fakes):
    from byok_nb.ui import DetailPage

    acme.admin.add_model(provider="fireworks", api_key=FW_KEY, provider_model_id="x",
                         display_name="Shared", test=False)
    page = DetailPage(acme.contributor, "shared")
    assert page.probe_button is None and not with_class(page, "byok-probe-capabilities")


def test_u9_u7_a_failing_probe_shows_a_short_message(acme, fakes, monkeypatch):
    from byok_nb.ui import DetailPage

    s = acme.admin
    s.add_model(provider="fireworks", api_key=FW_KEY, provider_model_id="x", display_name="Boom", test=False)
    page = DetailPage(s, "boom")

    def explode(*args, **kwargs):
        raise RuntimeError(f"kaboom with {FW_KEY}")

    monkeypatch.setattr(s, "probe_capabilities", explode)
    page.probe_button.click()
    assert "Unexpected error: RuntimeError" in page.message.value
    text = state_text(page)
    assert "Traceback" not in text and FW_KEY not in text

    def forbidden(*args, **kwargs):
        raise Forbidden("managing custom models requires the org_admin role in 'acme'")

    monkeypatch.setattr(s, "probe_capabilities", forbidden)
    page.probe_button.click()
    assert "requires the org_admin role" in page.message.value
