"""The OpenAI chat-completions shape: OpenAI-compatible servers, Fireworks, Together, HuggingFace
(Inference Endpoints and the router) and OpenRouter.

The vendors differ only in a small :class:`Profile`: how native JSON is asked for and how the
canonical reasoning setting is spelled. Everything else — bearer auth, tools, images,
``max_tokens``, the OpenAI parameters (:mod:`.openai_params`), reply parsing and error mapping —
is one code path, for the four ways to call: ``chat``, ``stream`` (server-sent events,
:mod:`.openai_stream`), and their async twins on the hub's async client.
"""
from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from ..core.clean_errors import aguarded, clean_failures, forget_secrets, guarded
from ..core.errors import InvalidRequest, ProviderError
from . import transport
from .base import ChatRequest, ChatResult, StreamChunk
from .egress import always_refused_host
from .http_streams import (
    aexchange,
    aopen_stream,
    aread_error_body,
    open_stream,
    read_error_body,
)
from .inline_reasoning import split_think
from .messages import normalize_messages
from .openai_params import native_response_format, schema_name, translate_params
from .openai_stream import StreamTranslator
from .sse import EventTooLarge, SSEDecoder
from .urls import check_url

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

def response_format(profile: Profile, schema: dict[str, Any], name: str | None) -> dict[str, Any]:
    """The ``response_format`` for native structured output in the profile's form."""
    return native_response_format(profile.json_form, schema, name)


@dataclass(frozen=True, repr=False)
class HttpCall:
    """One request to send. ``headers`` hold the bearer key: never shown."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def __repr__(self) -> str:
        return f"HttpCall({self.method} {self.url})"


def chat_completions_url(base_url: str) -> str:
    """``base_url`` + ``/chat/completions``, unless it already ends with it."""
    base = base_url.strip().rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


def validate_base_url(url: str | None) -> str:
    """An OpenAI-compatible base URL, stripped; InvalidRequest unless it is a full http(s) URL
    the HTTP client can call (see :mod:`.urls`) and not a link-local or metadata address.

    http is allowed: self-hosted vLLM/Ollama servers on a private network rarely have TLS.
    """
    value = url.strip() if isinstance(url, str) else url
    if value is None or value == "":
        raise InvalidRequest("Base URL is required for OpenAI-compatible models", field="base_url")
    return check_url("base_url", value, label="Base URL", example="https://llm.internal.example/v1",
                     refuse_host=always_refused_host).url


class OpenAICompatAdapter:
    """One model behind an OpenAI chat-completions endpoint.

    ``get_client`` / ``get_async_client`` return the hub's pooled ``httpx.Client`` /
    ``httpx.AsyncClient`` (created on first use); ``model``,
    when set, replaces ``ChatRequest.model`` (the HF legacy URL names its model in the URL);
    ``default_model`` (the target's provider model id) is used when the request names none.
    """

    def __init__(self, *, profile: Profile, url: str, api_key: SecretStr | None,
                 get_client: Callable[[], Any], timeout: float, model: str | None = None,
                 secrets: list[str] | None = None, default_model: str | None = None,
                 get_async_client: Callable[[], Any] | None = None) -> None:
        self.profile = profile
        self._get_async_client = get_async_client
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
    def build_body(self, request: ChatRequest, *, stream: bool = False) -> tuple[dict[str, Any], list[str]]:
        """The JSON body for ``request`` and any warnings about how it was translated;
        ``InvalidRequest`` for a parameter this vendor does not take (no I/O happened)."""
        body: dict[str, Any] = {
            "model": self.model or request.model or self.default_model,
            "messages": normalize_messages(request.messages),
            "max_tokens": request.max_tokens,  # always sent: the configured cap is the cap (M-7)
        }
        warnings: list[str] = []
        body.update(translate_params(self.profile.label, self.profile.json_form, request))
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
        if stream:
            # Usage comes in a last chunk only when asked for (OpenAI, vLLM, TGI); vendors that
            # always send it (Together, OpenRouter) accept the option.
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body, warnings

    def _headers(self, *, redact: bool, stream: bool = False) -> dict[str, str]:
        headers = {"Content-Type": "application/json",
                   "Accept": "text/event-stream" if stream else "application/json",
                   "User-Agent": transport.USER_AGENT}
        if self._api_key is not None and self._api_key.get_secret_value():
            token = "[REDACTED]" if redact else self._api_key.get_secret_value()
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _call(self, request: ChatRequest, *, stream: bool) -> tuple[HttpCall, list[str]]:
        """The request to send, built and checked before any I/O."""
        body, warnings = self.build_body(request, stream=stream)
        try:
            payload = json.dumps(body).encode()
        except (TypeError, ValueError) as exc:   # bytes, objects or cycles inside the messages/tools
            problem = str(exc)
        else:
            problem = None
        if problem is not None:
            raise InvalidRequest(f"the request cannot be sent as JSON: {problem}")
        return HttpCall("POST", self.url, self._headers(redact=False, stream=stream), payload), warnings

    def preview(self, request: ChatRequest) -> dict[str, Any]:
        """The request :meth:`chat` would send, secrets redacted (for the Test Connection view)."""
        body, warnings = self.build_body(request)
        return {"method": "POST", "url": self.url, "headers": self._headers(redact=True),
                "body": _redact_images(body), "warnings": warnings}

    # -- whole replies ---------------------------------------------------------------------------
    @clean_failures
    def chat(self, request: ChatRequest) -> ChatResult:
        """Send ``request``; the parsed result, or ``ProviderError`` with the provider's words."""
        call, warnings = self._call(request, stream=False)
        label = self.profile.label
        started = time.perf_counter()
        reply = transport.post_json(self._get_client(), call.url, headers=call.headers,
                                    body=call.body, label=label,
                                    secrets=self._secrets, timeout=self._timeout)
        del call
        latency_ms = (time.perf_counter() - started) * 1000
        if reply.status >= 400:
            raise transport.error_from_reply(reply, label=label, secrets=self._secrets)
        return self._parse(reply, latency_ms, warnings, request)

    async def achat(self, request: ChatRequest) -> ChatResult:
        """:meth:`chat` on the hub's async client (same checks, bounds and errors)."""
        import httpx

        try:
            call, warnings = self._call(request, stream=False)
            label = self.profile.label
            client = self._async_client()
            started = time.perf_counter()
            failure: ProviderError | None = None
            try:
                reply = await aexchange(client, call, timeout=self._timeout, label=label)
            except httpx.HTTPError as exc:
                failure = transport.transport_error(exc, url=self.url, label=label,
                                                    secrets=self._secrets, timeout=self._timeout)
            except TimeoutError:
                failure = transport.timed_out(url=self.url, label=label, secrets=self._secrets,
                                              timeout=self._timeout)
            del call
            if failure is not None:   # raised outside the except: httpx's error holds the request
                raise failure
            latency_ms = (time.perf_counter() - started) * 1000
            transport.check_redirect(reply.status, reply.headers, label=label, secrets=self._secrets)
            if reply.status >= 400:
                raise transport.error_from_reply(reply, label=label, secrets=self._secrets)
            return self._parse(reply, latency_ms, warnings, request)
        except BaseException as exc:
            forget_secrets(exc)
            raise

    def _parse(self, reply: transport.HttpReply, latency_ms: float, warnings: list[str],
               request: ChatRequest) -> ChatResult:
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
            result = self._result(data, latency_ms, warnings)
            result.request_id = transport.request_id_of(reply.headers, data)
            if request.reasoning:
                result = _moved_think(result)
            return transport.scrubbed_result(result, self._secrets)
        except transport.SHAPE_ERRORS as exc:
            why = transport.shape_problem(exc)
        raise transport.malformed_reply(reply, label=label, secrets=self._secrets, why=why)

    @staticmethod
    def _result(data: Any, latency_ms: float, warnings: list[str]) -> ChatResult:
        """The result out of a parsed body; any odd shape raises one of ``transport.SHAPE_ERRORS``."""
        try:
            choice = data["choices"][0]
            message = choice["message"]
            message.get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise transport.ReplyShape("no choices[0].message") from None
        tool_calls = [_tool_call(call) for call in message.get("tool_calls") or []]
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        details = usage.get("completion_tokens_details")
        finish_reason = choice.get("finish_reason")
        # Token counts go to ChatResult as sent: it records implausible ones as unknown.
        return ChatResult(text=_content_text(message.get("content")), tool_calls=tool_calls,
                          input_tokens=usage.get("prompt_tokens"),
                          output_tokens=usage.get("completion_tokens"),
                          latency_ms=latency_ms, warnings=warnings,
                          reasoning_text=_reasoning_text(message),
                          reasoning_tokens=details.get("reasoning_tokens") if isinstance(details, dict) else None,
                          finish_reason=finish_reason if isinstance(finish_reason, str) else None)

    # -- streams ---------------------------------------------------------------------------------
    @clean_failures
    def stream(self, request: ChatRequest) -> Iterator[StreamChunk]:
        """The answer as :class:`StreamChunk` s (server-sent events). Parameters are checked now;
        the request is sent on the first ``next()``. Closing the iterator closes the reply."""
        call, _ = self._call(request, stream=True)
        return guarded(self._stream(call, request))

    @clean_failures
    def astream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """:meth:`stream` on the hub's async client (``aclose()`` closes the reply)."""
        call, _ = self._call(request, stream=True)
        return aguarded(self._astream(call, request))

    def _stream(self, call: HttpCall, request: ChatRequest) -> Iterator[StreamChunk]:
        import httpx

        failure: ProviderError | None = None
        try:
            response = open_stream(self._get_client(), call, timeout=self._timeout)
        except httpx.HTTPError as exc:
            failure = self._transport_failure(exc)
        del call
        if failure is not None:
            raise failure
        try:
            if response.status_code >= 300:
                body = read_error_body(response, timeout=self._timeout)
                raise self._status_failure(response, body)
            if not _is_event_stream(response):
                yield from self._whole_reply_chunks(response, read_error_body(response, timeout=self._timeout), request)
                return
            decoder, translator = self._stream_parts(response, request)
            try:
                for piece in response.iter_raw():
                    for event in self._events(decoder, piece):
                        yield from translator.chunks(event)
                for event in decoder.close():
                    yield from translator.chunks(event)
            except httpx.HTTPError as exc:   # the reply had begun: not a failure to connect
                failure = self._transport_failure(exc)
                failure.transient = False
            if failure is not None:
                raise failure
            yield translator.finish()
        finally:
            response.close()

    async def _astream(self, call: HttpCall, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        import httpx

        failure: ProviderError | None = None
        try:
            response = await aopen_stream(self._async_client(), call, timeout=self._timeout)
        except httpx.HTTPError as exc:
            failure = self._transport_failure(exc)
        except TimeoutError:
            failure = transport.timed_out(url=self.url, label=self.profile.label,
                                          secrets=self._secrets, timeout=self._timeout)
        del call
        if failure is not None:
            raise failure
        try:
            if response.status_code >= 300:
                body = await aread_error_body(response, timeout=self._timeout)
                raise self._status_failure(response, body)
            if not _is_event_stream(response):
                body = await aread_error_body(response, timeout=self._timeout)
                for chunk in self._whole_reply_chunks(response, body, request):
                    yield chunk
                return
            decoder, translator = self._stream_parts(response, request)
            try:
                async for piece in response.aiter_raw():
                    for event in self._events(decoder, piece):
                        for chunk in translator.chunks(event):
                            yield chunk
                for event in decoder.close():
                    for chunk in translator.chunks(event):
                        yield chunk
            except httpx.HTTPError as exc:   # the reply had begun: not a failure to connect
                failure = self._transport_failure(exc)
                failure.transient = False
            if failure is not None:
                raise failure
            yield translator.finish()
        finally:
            await response.aclose()

    def _stream_parts(self, response: Any, request: ChatRequest) -> tuple[SSEDecoder, StreamTranslator]:
        return SSEDecoder(), StreamTranslator(label=self.profile.label, secrets=self._secrets,
                                              request_id=transport.request_id_of(response.headers),
                                              split_think=bool(request.reasoning))

    def _events(self, decoder: SSEDecoder, piece: bytes) -> list[Any]:
        try:
            return list(decoder.feed(piece))
        except EventTooLarge as exc:
            why = str(exc)
        failure = transport.clean_error(f"{self.profile.label} sent a stream that cannot be read: {why}",
                                        self._secrets, status_code=502, provider=self.profile.label,
                                        transient=False)
        raise failure

    def _whole_reply_chunks(self, response: Any, body: bytes, request: ChatRequest) -> Iterator[StreamChunk]:
        """A server that answered ``stream: true`` with one JSON body (some proxies do, and
        OpenRouter reports upstream failures so): the result as a text chunk and a last chunk."""
        reply = transport.HttpReply(response.status_code, response.headers, body)
        result = self._parse(reply, 0.0, [], request)
        if result.text or result.reasoning_text or result.tool_calls:
            calls = [{"index": i, **call} for i, call in enumerate(result.tool_calls)] or None
            yield StreamChunk(delta=result.text, reasoning=result.reasoning_text, tool_calls=calls,
                              request_id=result.request_id)
        yield StreamChunk(finish_reason=result.finish_reason, input_tokens=result.input_tokens,
                          output_tokens=result.output_tokens, request_id=result.request_id)

    def _status_failure(self, response: Any, body: bytes) -> ProviderError:
        label = self.profile.label
        transport.check_redirect(response.status_code, response.headers, label=label, secrets=self._secrets)
        return transport.error_from_reply(transport.HttpReply(response.status_code, response.headers, body),
                                          label=label, secrets=self._secrets)

    def _transport_failure(self, exc: Exception) -> ProviderError:
        return transport.transport_error(exc, url=self.url, label=self.profile.label,
                                         secrets=self._secrets, timeout=self._timeout)

    def _async_client(self) -> Any:
        if self._get_async_client is None:   # an adapter built without a hub: a wiring bug
            raise RuntimeError("this adapter has no async HTTP client (build it with ProviderHub)")
        return self._get_async_client()


def _is_event_stream(response: Any) -> bool:
    return response.headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"


def _moved_think(result: ChatResult) -> ChatResult:
    """``result`` with a leading ``<think>`` block moved from its text to its reasoning."""
    reasoning, text = split_think(result.text)
    if not reasoning and text == result.text:
        return result
    joined = "\n\n".join(part for part in (result.reasoning_text, reasoning) if part)
    return result.replace(text=text, reasoning_text=joined)


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
                         f"registry process.", status_code=502, provider=label, transient=False)


__all__ = ["OpenAICompatAdapter", "PROFILES", "Profile", "chat_completions_url",
           "response_format", "schema_name", "validate_base_url"]
