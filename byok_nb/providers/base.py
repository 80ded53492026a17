"""The one small interface every provider adapter implements.

A call is described by a :class:`Target` (where to send it and with which decrypted credentials —
built by the registry at call time, never stored) and a :class:`ChatRequest` (what to ask, in the
OpenAI chat shape plus a canonical reasoning setting).  An adapter turns those into the
provider's wire format and returns a :class:`ChatResult`, or raises ``ProviderError``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator, Protocol

from pydantic import SecretStr


@dataclass(frozen=True)
class Target:
    """Where and how to call one model. Secrets stay ``SecretStr`` until the wire."""

    provider: str                      # fireworks | together | bedrock | huggingface | openai_compatible | openrouter
    provider_model_id: str
    api_key: SecretStr | None = None   # provider key / HF token / Bedrock API key / OpenRouter key
    base_url: str | None = None        # OpenAI-compatible
    endpoint_url: str | None = None    # HuggingFace
    aws_region: str | None = None
    auth_method: str | None = None     # bedrock: iam | api_key
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None

    def secrets(self) -> list[str]:
        """Plain secret values, for scrubbing them out of provider messages and logs."""
        out = []
        for value in (self.api_key, self.aws_secret_access_key):
            if value is not None and value.get_secret_value():
                out.append(value.get_secret_value())
        return out


@dataclass
class ChatRequest:
    """One chat call in the OpenAI shape.

    ``messages`` are OpenAI-style dicts (content a string or a list of ``text`` / ``image_url``
    parts; ``image_url.url`` may be a data URL).  ``json_schema`` set means *native* structured
    output; ``None`` means prompt instructions only.  ``reasoning`` is the canonical reasoning
    payload — ``{"max_tokens": N}`` or ``{"effort": "low|medium|high"}`` — or ``None`` for none.
    """

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int
    json_schema: dict[str, Any] | None = None
    json_schema_name: str = "response"
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    reasoning: dict[str, Any] | None = None
    # OpenAI chat parameters beyond the fields above (temperature, top_p, stop, seed,
    # response_format). Each adapter passes, translates or refuses them for its provider before
    # any I/O; a refusal is an InvalidRequest naming the parameter and the provider.
    params: dict[str, Any] = field(default_factory=dict)


MAX_TOKENS_PER_CALL = 10**9   # no model reads or writes more in one call; more is a lie or a bug


def plausible_token_count(value: Any) -> bool:
    """A token count a provider may report for one call: an ``int`` (not a bool, not a float) from
    0 to ``MAX_TOKENS_PER_CALL``."""
    return type(value) is int and 0 <= value <= MAX_TOKENS_PER_CALL


@dataclass
class ChatResult:
    text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # OpenAI shape: {id, type, function:{name, arguments}}
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float = 0.0
    warnings: list[str] = field(default_factory=list)
    # What the provider reports of the model's reasoning, when it reports any (the evidence
    # "Probe capabilities" shows): the reasoning text it returned and the reasoning-token count
    # of the usage block.
    reasoning_text: str = ""
    reasoning_tokens: int | None = None
    # True when the provider reported token counts that cannot be real (negative, huge, not whole
    # numbers): they are dropped (None) so no total is corrupted, and the call is recorded as one
    # whose usage is unknown.
    usage_unknown: bool = False
    request_id: str | None = None       # the provider's id for this call (reply header or body id)
    finish_reason: str | None = None
    attempts: int = 1                   # how many calls it took; set by the retry layer

    def __post_init__(self) -> None:
        # Every adapter's counts pass here, as the provider sent them.
        counts = {name: getattr(self, name) for name in ("input_tokens", "output_tokens")}
        for name, value in counts.items():
            if value is not None and not plausible_token_count(value):
                setattr(self, name, None)
                self.usage_unknown = True
        if self.usage_unknown:
            # One implausible count makes the other suspect too: both unknown, never half a record.
            self.input_tokens = self.output_tokens = None
        if self.reasoning_tokens is not None and not plausible_token_count(self.reasoning_tokens):
            self.reasoning_tokens = None

    def replace(self, **changes: Any) -> "ChatResult":
        return dataclasses.replace(self, **changes)


@dataclass
class StreamChunk:
    """One piece of a streamed answer. Usage counts come only on the last chunk, when the
    provider reports them."""

    delta: str = ""                                   # text, "" when none
    tool_calls: list[dict[str, Any]] | None = None    # OpenAI delta shape [{index, id?, type?, function:{name?, arguments?}}]
    reasoning: str = ""                               # reasoning text delta when the provider streams it
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    request_id: str | None = None


class Adapter(Protocol):
    """One API shape. ``chat`` returns a result or raises ``ProviderError``; ``preview`` returns
    the request that ``chat`` would send (URL, headers, body) with every secret redacted.
    ``stream`` is a generator the caller may close early (closing it closes the HTTP response);
    ``achat`` / ``astream`` are the same calls on the hub's async client."""

    def chat(self, request: ChatRequest) -> ChatResult: ...

    def stream(self, request: ChatRequest) -> Iterator[StreamChunk]: ...

    async def achat(self, request: ChatRequest) -> ChatResult: ...

    def astream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]: ...

    def preview(self, request: ChatRequest) -> dict[str, Any]: ...
