"""Probe capabilities: tiny requests that *suggest* capability flags, with evidence.

One plain request first (the baseline: if even that fails, nothing can be learnt and every
finding is inconclusive). Then one request per capability, each the baseline plus exactly that
capability, through the model's own adapter — so egress rules, the timeout and secret
scrubbing apply as to every call:

* **JSON mode** — the provider's native structured output (the P table's form: ``response_format``
  ``json_schema``, TGI's ``json`` grammar, Bedrock's forced tool) for a one-field schema. The
  prompt names the field but not the format, so a reply that parses as JSON is evidence the
  constraint was applied, not just that the model was asked nicely.
* **Tool use** — one trivial function tool the prompt asks the model to call; a tool call back
  is the evidence.
* **Vision** — a 32x32 solid red PNG as a data URL. Accepted and answered is the evidence; whether
  the model really saw it cannot be verified reliably (the evidence says so, and notes whether
  the answer named the colour). TGI passes images to text-only models without complaint, so
  there acceptance alone is inconclusive. (32 px, not 1 px: Qwen-VL-style processors refuse
  images under 28 px, which would turn a vision model's probe into a false "rejected".)
* **Reasoning** — the model's reasoning parameter at its smallest useful setting: effort
  ``low``, or a 1024-token budget (the minimum Fireworks and Claude accept) under a 1280-token
  cap, translated per provider by the adapter. Accepted *and* reasoning tokens or reasoning
  text reported is the evidence; accepted without either is inconclusive (many servers ignore
  reasoning fields they do not know).

A capability is *rejected* (suggest off) only when the provider refuses that request with a
client error (400, 404, 415, 422, 501) after the baseline succeeded; the evidence quotes the
provider's own (scrubbed) message. Timeouts, 5xx, 429, 401/403 are inconclusive. The four
capability requests run concurrently, so the probe takes about as long as its slowest request.

The probe never writes anything: flags change only through ``update_model``.
"""
from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..core.domain import CapabilityFinding, CapabilityProbe
from ..core.errors import ProviderError, RegistryError
from ..core.secrets import scrub
from .base import Adapter, ChatRequest, ChatResult
from .messages import to_data_url
from .reasoning import canonical_reasoning

PROBE_FLAGS: tuple[str, ...] = ("supports_json_mode", "supports_tool_use", "supports_vision",
                                "supports_reasoning")
PROBE_MAX_TOKENS = 64          # completion cap of the baseline, JSON, tool and vision requests
REASONING_MAX_TOKENS = 1280    # room for the smallest thinking budget Fireworks and Claude take
REFUSAL_STATUSES = frozenset({400, 404, 415, 422, 501})
NOTE = ("Suggestions only: Probe capabilities never changes the model's flags. "
        "Use Edit to change them.")
EVIDENCE_CHARS = 300           # of a provider message quoted in the evidence
SNIPPET_CHARS = 80             # of a reply quoted in the evidence

BASELINE_PROMPT = "This is a connectivity check. Reply with the single word: ok"
JSON_PROMPT = 'This is a capability probe. Set the field "ok" to true.'
JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}
JSON_SCHEMA_NAME = "capability_probe"
TOOL_NAME = "report_probe_status"
TOOL_PROMPT = f"This is a capability probe. Call the {TOOL_NAME} tool with ok set to true."
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Report that the capability probe reached you.",
        "parameters": {"type": "object", "properties": {"ok": {"type": "boolean"}},
                       "required": ["ok"]},
    },
}
IMAGE_SIZE = 32
IMAGE_COLOUR = "red"
VISION_PROMPT = "This is a capability probe. What colour is this image? Answer with one word."
REASONING_PROMPT = "This is a capability probe. What is 2 + 3? Answer with the number only."
# Adapter profiles whose servers accept image parts for text-only models (TGI, see module doc).
IMAGE_IGNORING_PROFILES = frozenset({"huggingface"})


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid PNG of one colour (8-bit RGB, no dependencies)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))


PROBE_IMAGE_URL = to_data_url(solid_png(IMAGE_SIZE, IMAGE_SIZE, (220, 20, 20)), "image/png")


def probe_requests(*, model_id: str, max_tokens: int, reasoning_parameter: str | None
                   ) -> dict[str, ChatRequest]:
    """The five requests of a probe: ``baseline`` and one per flag of :data:`PROBE_FLAGS`.

    Caps are tiny (:data:`PROBE_MAX_TOKENS`, never above the model's own ``max_tokens``), except
    reasoning's (:data:`REASONING_MAX_TOKENS`), which must leave room for a minimal budget.
    """
    cap = max(1, min(PROBE_MAX_TOKENS, max_tokens))

    def text(prompt: str, **extra: Any) -> ChatRequest:
        return ChatRequest(model=model_id, messages=[{"role": "user", "content": prompt}],
                           max_tokens=extra.pop("max_tokens", cap), **extra)

    return {
        "baseline": text(BASELINE_PROMPT),
        "supports_json_mode": text(JSON_PROMPT, json_schema=JSON_SCHEMA,
                                   json_schema_name=JSON_SCHEMA_NAME),
        "supports_tool_use": text(TOOL_PROMPT, tools=[TOOL]),
        "supports_vision": ChatRequest(
            model=model_id, max_tokens=cap,
            messages=[{"role": "user", "content": [
                {"type": "text", "text": VISION_PROMPT},
                {"type": "image_url", "image_url": {"url": PROBE_IMAGE_URL}}]}]),
        "supports_reasoning": text(
            REASONING_PROMPT, max_tokens=REASONING_MAX_TOKENS,
            reasoning=canonical_reasoning(True, reasoning_parameter, REASONING_MAX_TOKENS,
                                          budget=None, effort="low")),
    }


def run_probe(adapter: Adapter, *, model_id: str, max_tokens: int, reasoning_parameter: str | None,
              current: Mapping[str, bool], secrets: Iterable[str] = (), slug: str | None = None,
              max_workers: int = 4) -> CapabilityProbe:
    """Probe the model behind ``adapter``; never raises ``ProviderError`` (a failing provider is
    evidence or an inconclusive finding) and never writes anything."""
    known = [s for s in secrets if s]
    requests = probe_requests(model_id=model_id, max_tokens=max_tokens,
                              reasoning_parameter=reasoning_parameter)
    previews = {name: _preview(adapter, request) for name, request in requests.items()}
    started = time.perf_counter()
    baseline = _call(adapter, requests["baseline"])
    if isinstance(baseline, RegistryError):
        return not_probed(current, baseline, secrets=known, slug=slug, previews=previews,
                          latency_ms=(time.perf_counter() - started) * 1000)
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="byok-probe") as pool:
        futures = {flag: pool.submit(_call, adapter, requests[flag]) for flag in PROBE_FLAGS}
        outcomes = {flag: future.result() for flag, future in futures.items()}
    judges: dict[str, Callable[..., tuple[bool | None, str]]] = {
        "supports_json_mode": _judge_json, "supports_tool_use": _judge_tools,
        "supports_vision": _judge_vision, "supports_reasoning": _judge_reasoning,
    }
    profile = getattr(getattr(adapter, "profile", None), "name", None)
    findings = {}
    for flag in PROBE_FLAGS:
        outcome = outcomes[flag]
        if isinstance(outcome, RegistryError):
            suggested, evidence = _judge_error(flag, outcome, previews[flag], known)
            status = outcome.status_code
        else:
            suggested, evidence = judges[flag](outcome, previews[flag], profile)
            status = 200
        findings[flag] = CapabilityFinding(flag=flag, current=bool(current[flag]), suggested=suggested,
                                           evidence=scrub(evidence, known), status_code=status)
    changes = sum(1 for f in findings.values() if f.differs)
    message = (f"Probe finished: {changes} suggested change{'' if changes == 1 else 's'}. {NOTE}")
    return CapabilityProbe(ok=True, message=message, slug=slug, **findings,
                           latency_ms=(time.perf_counter() - started) * 1000,
                           request_previews=previews)


def not_probed(current: Mapping[str, bool], error: RegistryError, *, secrets: Iterable[str] = (),
               slug: str | None = None, previews: dict[str, Any] | None = None,
               latency_ms: float | None = None) -> CapabilityProbe:
    """The result when not even a plain request got through (or none could be built)."""
    known = [s for s in secrets if s]
    message = scrub(error.message, known)
    evidence = (f"not probed: a plain request to the model failed first "
                f"({_status_text(error, known)}), so no capability could be tried")
    findings = {flag: CapabilityFinding(flag=flag, current=bool(current[flag]), suggested=None,
                                        evidence=evidence, status_code=error.status_code)
                for flag in PROBE_FLAGS}
    return CapabilityProbe(ok=False, message=message, slug=slug, **findings, latency_ms=latency_ms,
                           request_previews=previews or {})


# -- calling ---------------------------------------------------------------------------------------
def _call(adapter: Adapter, request: ChatRequest) -> ChatResult | RegistryError:
    try:
        return adapter.chat(request)
    except RegistryError as exc:   # ProviderError, or InvalidRequest from building the request
        return exc


def _preview(adapter: Adapter, request: ChatRequest) -> dict[str, Any]:
    try:
        return adapter.preview(request)
    except RegistryError:
        return {}


# -- judging ---------------------------------------------------------------------------------------
def _judge_error(flag: str, error: RegistryError, preview: dict[str, Any], secrets: list[str]
                 ) -> tuple[bool | None, str]:
    what = _what_was_sent(flag, preview)
    if isinstance(error, ProviderError) and error.status_code in REFUSAL_STATUSES:
        message = _clip(scrub(error.provider_message or error.message, secrets), EVIDENCE_CHARS)
        return False, f"{what} rejected — {error.status_code}: {message}"
    if not isinstance(error, ProviderError):
        return None, f"inconclusive — the request could not be sent: {_clip(error.message, EVIDENCE_CHARS)}"
    return None, f"inconclusive — {what} not answered: {_status_text(error, secrets)}"


def _judge_json(result: ChatResult, preview: dict[str, Any], profile: str | None
                ) -> tuple[bool | None, str]:
    what = _what_was_sent("supports_json_mode", preview)
    from .transport import loads_bounded

    try:
        loads_bounded(result.text.strip())
    except ValueError:
        return None, (f"{what} accepted, but the reply is not JSON ({_snippet(result.text)}): "
                      f"the provider may have ignored it")
    return True, f"{what} accepted; reply parsed as JSON ({_snippet(result.text)})"


def _judge_tools(result: ChatResult, preview: dict[str, Any], profile: str | None
                 ) -> tuple[bool | None, str]:
    what = _what_was_sent("supports_tool_use", preview)
    if result.tool_calls:
        function = result.tool_calls[0].get("function") or {}
        call = f"{function.get('name')}({_clip(str(function.get('arguments') or ''), 60)})"
        return True, f"{what} accepted; the reply called it: {call}"
    return None, (f"{what} accepted, but the model answered in text instead of calling it "
                  f"({_snippet(result.text)})")


def _judge_vision(result: ChatResult, preview: dict[str, Any], profile: str | None
                  ) -> tuple[bool | None, str]:
    what = _what_was_sent("supports_vision", preview)
    named = IMAGE_COLOUR in result.text.lower()
    answered = f"{what} accepted and answered ({_snippet(result.text)})"
    if profile in IMAGE_IGNORING_PROFILES and not named:
        return None, (f"{answered}, but TGI endpoints pass images to text-only models without an "
                      f"error and the answer does not name the image's colour ({IMAGE_COLOUR}): "
                      f"inconclusive")
    if named:
        return True, (f"{answered}; the answer names the image's colour ({IMAGE_COLOUR}), though a "
                      f"probe cannot verify reliably that the model saw the image")
    return True, (f"{answered}; the answer does not name the image's colour ({IMAGE_COLOUR}), and a "
                  f"probe cannot verify reliably that the model saw the image")


def _judge_reasoning(result: ChatResult, preview: dict[str, Any], profile: str | None
                     ) -> tuple[bool | None, str]:
    what = _what_was_sent("supports_reasoning", preview)
    notes = "".join(f" (note: {w})" for w in preview.get("warnings") or [])
    found = []
    if result.reasoning_tokens:
        found.append(f"the provider reported {result.reasoning_tokens} reasoning tokens")
    if result.reasoning_text:
        found.append(f"the reply carried reasoning content ({len(result.reasoning_text)} characters)")
    if found:
        return True, f"{what} accepted; {' and '.join(found)}{notes}"
    return None, (f"{what} accepted, but the reply reported no reasoning tokens and carried no "
                  f"reasoning content: the provider may have ignored it{notes}")


# -- wording ---------------------------------------------------------------------------------------
def _what_was_sent(flag: str, preview: dict[str, Any]) -> str:
    """How the capability went out, read off the (redacted) request preview."""
    body = preview.get("body") if isinstance(preview.get("body"), dict) else {}
    if flag == "supports_json_mode":
        fmt = body.get("response_format")
        if isinstance(fmt, dict):
            return f"native JSON (response_format {fmt.get('type')})"
        if "toolConfig" in body:
            return "native JSON (a forced tool, toolChoice.tool)"
        return "native JSON"
    if flag == "supports_tool_use":
        return f"a function tool ({TOOL_NAME})"
    if flag == "supports_vision":
        return f"a {IMAGE_SIZE}x{IMAGE_SIZE} PNG image (data URL)"
    fields = {k: body[k] for k in ("reasoning_effort", "thinking", "reasoning") if k in body}
    fields = fields or body.get("additionalModelRequestFields") or {}
    return f"reasoning {json.dumps(fields, separators=(',', ':'))}" if fields else "reasoning"


def _status_text(error: RegistryError, secrets: list[str]) -> str:
    return f"{error.status_code}: {_clip(scrub(error.message, secrets), EVIDENCE_CHARS)}"


def _snippet(text: str) -> str:
    text = " ".join((text or "").split())
    return f"reply: {_clip(text, SNIPPET_CHARS)}" if text else "an empty reply"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["NOTE", "PROBE_FLAGS", "PROBE_IMAGE_URL", "not_probed", "probe_requests", "run_probe",
           "solid_png"]
