"""Test Connection: one minimal chat call that proves a model is reachable.

:func:`probe` asks the model to return ``{"status":"ok"}`` with the model's configured
``max_tokens`` as the cap, no reasoning and no tools. With JSON mode on it asks for the
provider's native structured output; off, the prompt alone asks for JSON. A provider that
refuses native JSON is reported as it is — its error, plus a hint to turn JSON mode off — never
retried without it. Pricing and persistence are the registry's business, not this module's.

>>> outcome = probe(hub.adapter(target), model_id="accounts/acme/models/x", max_tokens=4096,
...                 supports_json_mode=True)                               # doctest: +SKIP
>>> outcome.ok, outcome.message
(True, 'Connection test passed.')
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ProviderError
from .base import Adapter, ChatRequest

PASSED = "Connection test passed."
EXPECTED_REPLY = {"status": "ok"}
STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["ok"]}},
    "required": ["status"],
    "additionalProperties": False,
}
SCHEMA_NAME = "connection_test"
PROMPT = 'This is a connection test. Reply with exactly this JSON and nothing else: {"status":"ok"}'
JSON_MODE_HINT = ("The provider rejected native JSON output. If this model does not support it, "
                  "turn off 'Supports JSON mode' and test again.")
# Words a provider uses when it refuses structured output (response_format, grammar, forced tool).
_JSON_REFUSAL = re.compile(r"response_format|json|schema|grammar|structured|tool", re.IGNORECASE)
_CODE_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass
class ProbeOutcome:
    """What one Test Connection found. ``message`` is ``Connection test passed.`` or the error."""

    ok: bool
    message: str
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    reply_ok: bool = False
    request_preview: dict[str, Any] = field(default_factory=dict)
    status_code: int | None = None
    hint: str | None = None


def probe_request(*, model_id: str, max_tokens: int, supports_json_mode: bool) -> ChatRequest:
    """The Test Connection request: the prompt, the model's own cap, native JSON when the model has it."""
    return ChatRequest(
        model=model_id,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=max_tokens,
        json_schema=STATUS_SCHEMA if supports_json_mode else None,
        json_schema_name=SCHEMA_NAME,
    )


def reply_is_expected(text: str) -> bool:
    """True when ``text`` is the JSON ``{"status": "ok"}`` (a Markdown code fence is tolerated)."""
    stripped = text.strip()
    fenced = _CODE_FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    from .transport import loads_bounded

    try:
        return loads_bounded(stripped) == EXPECTED_REPLY
    except ValueError:
        return False


def probe(adapter: Adapter, *, model_id: str, max_tokens: int, supports_json_mode: bool) -> ProbeOutcome:
    """Run one Test Connection call through ``adapter`` and report it (never raises
    ``ProviderError``: a failing provider is a failed outcome carrying the provider's words).

    ``ok`` means the provider answered; ``reply_ok`` whether the answer was the expected JSON.
    """
    request = probe_request(model_id=model_id, max_tokens=max_tokens,
                            supports_json_mode=supports_json_mode)
    preview = adapter.preview(request)
    started = time.perf_counter()
    try:
        result = adapter.chat(request)
    except ProviderError as exc:
        return ProbeOutcome(ok=False, message=exc.message,
                            latency_ms=(time.perf_counter() - started) * 1000,
                            request_preview=preview, status_code=exc.status_code,
                            hint=_json_hint(exc, supports_json_mode))
    return ProbeOutcome(ok=True, message=PASSED, latency_ms=result.latency_ms,
                        input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                        reply_ok=reply_is_expected(result.text), request_preview=preview,
                        status_code=200)


def _json_hint(exc: ProviderError, supports_json_mode: bool) -> str | None:
    """The hint to turn JSON mode off, when it was on and the provider refused structured output."""
    if not supports_json_mode or exc.status_code not in (400, 404, 415, 422, 424, 501):
        return None
    return JSON_MODE_HINT if _JSON_REFUSAL.search(exc.provider_message or exc.message) else None
