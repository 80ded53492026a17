"""The OpenAI chat-completions shape: OpenAI-compatible servers, Fireworks, Together, HuggingFace
(Inference Endpoints and the router) and OpenRouter (SPEC P table).

The vendors differ only in a small :class:`Profile`: how native JSON is asked for and how the
canonical reasoning setting (P-1) is spelled. Everything else — bearer auth, tools, images,
``max_tokens``, reply parsing and error mapping — is one code path.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from ..core.clean_errors import clean_failures
from ..core.errors import InvalidRequest, ProviderError
from . import transport
from .base import ChatRequest, ChatResult
from .messages import normalize_messages

ReasoningTranslator = Callable[[dict[str, Any], ChatRequest], tuple[dict[str, Any], list[str]]]

FIREWORKS_MIN_THINKING_BUDGET = 1024  # Fireworks refuses a smaller thinking budget


def _fireworks_reasoning(reasoning: dict[str, Any], request: ChatRequest) -> tuple[dict, list[str]]:
    # Fireworks takes `thinking` (a budget) or `reasoning_effort`, never both.
    if "max_tokens" in reasoning:
        budget = int(reasoning["max_tokens"])
        warnings = []
        if budget < FIREWORKS_MIN_THINKING_BUDGET:
            warnings.append(f"Fireworks needs a thinking budget of at least "
                            f"{FIREWORKS_MIN_THINKING_BUDGET} tokens; sent "
                            f"{FIREWORKS_MIN_THINKING_BUDGET} instead of {budget}.")
            budget = FIREWORKS_MIN_THINKING_BUDGET
        return {"thinking": {"type": "enabled", "budget_tokens": budget}}, warnings
    return {"reasoning_effort": reasoning["effort"]}, []


def _together_reasoning(reasoning: dict[str, Any], request: ChatRequest) -> tuple[dict, list[str]]:
    # Together has an on/off switch and an effort, but no token budget.
    if "max_tokens" in reasoning:
        return {"reasoning": {"enabled": True}}, [
            f"Together AI takes no reasoning token budget: sent reasoning.enabled=true without "
            f"the {reasoning['max_tokens']}-token budget."]
    return {"reasoning_effort": reasoning["effort"]}, []


def _canonical_or_effort(reasoning: dict[str, Any], request: ChatRequest) -> tuple[dict, list[str]]:
    # OpenAI-compatible servers and HF: the canonical budget as is, efforts the OpenAI way.
    if "max_tokens" in reasoning:
        return {"reasoning": {"max_tokens": int(reasoning["max_tokens"])}}, []
    return {"reasoning_effort": reasoning["effort"]}, []


def _openrouter_reasoning(reasoning: dict[str, Any], request: ChatRequest) -> tuple[dict, list[str]]:
    # OpenRouter speaks the canonical payload natively.
    return {"reasoning": dict(reasoning)}, []


@dataclass(frozen=True)
class Profile:
    """What one vendor of the OpenAI shape does differently."""

    name: str
    label: str                        # shown in error messages
    json_form: str                    # "json_schema" (OpenAI) or "tgi" ({"type": "json", "value": schema})
    translate_reasoning: ReasoningTranslator


PROFILES: dict[str, Profile] = {
    "fireworks": Profile("fireworks", "Fireworks", "json_schema", _fireworks_reasoning),
    "together": Profile("together", "Together AI", "json_schema", _together_reasoning),
    "openai_compatible": Profile("openai_compatible", "OpenAI-compatible endpoint", "json_schema",
                                 _canonical_or_effort),
    "huggingface": Profile("huggingface", "HuggingFace endpoint", "tgi", _canonical_or_effort),
    "huggingface_router": Profile("huggingface_router", "HuggingFace router", "json_schema",
                                  _canonical_or_effort),
    "openrouter": Profile("openrouter", "OpenRouter", "json_schema", _openrouter_reasoning),
}

_SCHEMA_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def schema_name(name: str | None) -> str:
    """A ``json_schema.name`` the providers accept: ``[A-Za-z0-9_-]{1,64}``."""
    cleaned = _SCHEMA_NAME_UNSAFE.sub("_", name or "")[:64]
    return cleaned or "response"


def response_format(profile: Profile, schema: dict[str, Any], name: str | None) -> dict[str, Any]:
    """The ``response_format`` for native structured output (T-2) in the profile's form."""
    if profile.json_form == "tgi":
        return {"type": "json", "value": schema}
    return {"type": "json_schema",
            "json_schema": {"name": schema_name(name), "schema": schema, "strict": True}}


def chat_completions_url(base_url: str) -> str:
    """``base_url`` + ``/chat/completions``, unless it already ends with it."""
    base = base_url.strip().rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


def validate_base_url(url: str | None) -> str:
    """An OpenAI-compatible base URL, stripped; InvalidRequest unless it is a full http(s) URL
    the HTTP client can call (see :mod:`.urls`) and not a link-local or metadata address.

    http is allowed: self-hosted vLLM/Ollama servers on a private network rarely have TLS.
    """
    from .egress import always_refused_host
    from .urls import check_url

    value = url.strip() if isinstance(url, str) else url
    if value is None or value == "":
        raise InvalidRequest("Base URL is required for OpenAI-compatible models", field="base_url")
    return check_url("base_url", value, label="Base URL", example="https://llm.internal.example/v1",
                     refuse_host=always_refused_host).url


class OpenAICompatAdapter:
    """One model behind an OpenAI chat-completions endpoint.

    ``get_client`` returns the hub's pooled ``httpx.Client`` (created on first use); ``model``,
    when set, replaces ``ChatRequest.model`` (the HF legacy URL names its model in the URL);
    ``default_model`` (the target's provider model id) is used when the request names none.
    """

    def __init__(self, *, profile: Profile, url: str, api_key: SecretStr | None,
                 get_client: Callable[[], Any], timeout: float, model: str | None = None,
                 secrets: list[str] | None = None, default_model: str | None = None) -> None:
        self.profile = profile
        self.default_model = default_model
        self.url = url
        self.model = model
        self._api_key = api_key
        self._get_client = get_client
        self._timeout = timeout
        self._secrets = list(secrets or [])
        if api_key is not None and api_key.get_secret_value():
            self._secrets.append(api_key.get_secret_value())

    def __repr__(self) -> str:
        return f"OpenAICompatAdapter(profile={self.profile.name!r}, url={self.url!r})"

    # -- request ---------------------------------------------------------------------------------
    def build_body(self, request: ChatRequest) -> tuple[dict[str, Any], list[str]]:
        """The JSON body for ``request`` and any warnings about how it was translated."""
        body: dict[str, Any] = {
            "model": self.model or request.model or self.default_model,
            "messages": normalize_messages(request.messages),
            "max_tokens": request.max_tokens,  # always sent: the configured cap is the cap (M-7)
        }
        warnings: list[str] = []
        if request.json_schema is not None:
            body["response_format"] = response_format(self.profile, request.json_schema,
                                                      request.json_schema_name)
        if request.tools:
            body["tools"] = list(request.tools)
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.reasoning:
            fields, warnings = self.profile.translate_reasoning(request.reasoning, request)
            body.update(fields)
        return body, warnings

    def _headers(self, *, redact: bool) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": transport.USER_AGENT}
        if self._api_key is not None and self._api_key.get_secret_value():
            token = "[REDACTED]" if redact else self._api_key.get_secret_value()
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def preview(self, request: ChatRequest) -> dict[str, Any]:
        """The request :meth:`chat` would send, secrets redacted (for the Test Connection view)."""
        body, warnings = self.build_body(request)
        return {"method": "POST", "url": self.url, "headers": self._headers(redact=True),
                "body": _redact_images(body), "warnings": warnings}

    # -- call ------------------------------------------------------------------------------------
    @clean_failures
    def chat(self, request: ChatRequest) -> ChatResult:
        """Send ``request``; the parsed result, or ``ProviderError`` with the provider's words."""
        body, warnings = self.build_body(request)
        label = self.profile.label
        started = time.perf_counter()
        try:
            payload = json.dumps(body).encode()
        except (TypeError, ValueError) as exc:   # bytes, objects or cycles inside the messages/tools
            raise InvalidRequest(f"the request cannot be sent as JSON: {exc}") from None
        reply = transport.post_json(self._get_client(), self.url, headers=self._headers(redact=False),
                                    body=payload, label=label,
                                    secrets=self._secrets, timeout=self._timeout)
        latency_ms = (time.perf_counter() - started) * 1000
        if reply.status >= 400:
            raise transport.error_from_reply(reply, label=label, secrets=self._secrets)
        return self._parse(reply, latency_ms, warnings)

    def _parse(self, reply: transport.HttpReply, latency_ms: float, warnings: list[str]) -> ChatResult:
        label = self.profile.label
        try:
            data = transport.loads_bounded(reply.content)
        except ValueError as exc:
            why = "JSON nested too deeply" if "too deeply" in str(exc) else "not JSON"
        else:
            why = None
        if why is not None:   # raised outside the except: no __context__
            raise transport.malformed_reply(reply, label=label, secrets=self._secrets, why=why)
        if isinstance(data, dict) and "error" in data and not data.get("choices"):
            # OpenRouter (and some proxies) report upstream failures in a 200 body.
            error = data["error"]
            code = error.get("code") if isinstance(error, dict) else None
            status = code if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600 else 502
            raise transport.error_from_reply(transport.HttpReply(status, reply.headers, reply.content),
                                             label=label, secrets=self._secrets)
        try:
            return transport.scrubbed_result(self._result(data, latency_ms, warnings), self._secrets)
        except transport.SHAPE_ERRORS as exc:
            why = transport.shape_problem(exc)
        raise transport.malformed_reply(reply, label=label, secrets=self._secrets, why=why)

    @staticmethod
    def _result(data: Any, latency_ms: float, warnings: list[str]) -> ChatResult:
        """The result out of a parsed body; any odd shape raises one of ``transport.SHAPE_ERRORS``."""
        try:
            message = data["choices"][0]["message"]
            message.get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise transport.ReplyShape("no choices[0].message") from None
        tool_calls = [_tool_call(call) for call in message.get("tool_calls") or []]
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        details = usage.get("completion_tokens_details")
        # Token counts go to ChatResult as sent: it records implausible ones as unknown.
        return ChatResult(text=_content_text(message.get("content")), tool_calls=tool_calls,
                          input_tokens=usage.get("prompt_tokens"),
                          output_tokens=usage.get("completion_tokens"),
                          latency_ms=latency_ms, warnings=warnings,
                          reasoning_text=_reasoning_text(message),
                          reasoning_tokens=details.get("reasoning_tokens") if isinstance(details, dict) else None)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # some servers answer with content parts
        texts = [p.get("text", "") for p in content if isinstance(p, dict)]
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("a content part's text is not text")
        return "".join(texts)
    if not isinstance(content, str):
        raise TypeError("content is neither text nor a list of parts")
    return content


def _reasoning_text(message: dict[str, Any]) -> str:
    """The reasoning a server returned beside the answer: ``reasoning_content`` (vLLM, Fireworks,
    DeepSeek) or ``reasoning`` (Together, OpenRouter); empty when there is none."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call["function"]
    arguments = function.get("arguments")
    if not isinstance(arguments, str):  # a few servers send an object instead of a JSON string
        arguments = json.dumps(arguments if arguments is not None else {})
    name, call_id = function["name"], call.get("id")
    if not isinstance(name, str) or not (call_id is None or isinstance(call_id, str)):
        raise TypeError("a tool call's name or id is not text")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _redact_images(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``body`` with data URLs shortened, so a preview stays readable."""
    messages = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                url = part.get("image_url", {}).get("url", "") if isinstance(part, dict) else ""
                if isinstance(url, str) and url.startswith("data:") and len(url) > 64:
                    part = {**part, "image_url": {**part["image_url"],
                                                  "url": f"{url[:40]}…({len(url)} chars)"}}
                parts.append(part)
            message = {**message, "content": parts}
        messages.append(message)
    return {**body, "messages": messages}


def missing_key_error(label: str, variable: str) -> ProviderError:
    """The operator forgot a process-level key (OpenRouter for platform models)."""
    return ProviderError(f"{label} needs an API key: set {variable} in the environment of the "
                         f"registry process.", status_code=502, provider=label)


__all__ = ["OpenAICompatAdapter", "PROFILES", "Profile", "chat_completions_url",
           "response_format", "schema_name", "validate_base_url"]
