"""The Bedrock adapter: ``converse`` and ``converse-stream``, sync and async.

``chat`` calls the botocore client of :mod:`.bedrock` (whose sender is the hub's ``httpx``
client). Streams (``stream``, ``astream``) and async calls (``achat``) take the same request from
botocore, serialized and signed but not sent (:mod:`.bedrock_wire`); the hub's sync or async
``httpx`` client sends it, and botocore's parsers read the reply — the binary event stream with
botocore's ``eventstream`` decoder (:mod:`.bedrock_stream`). OpenAI parameters are translated or
refused in :mod:`.bedrock_params`. Every failure is a ``ProviderError`` with AWS's (scrubbed)
words, its status printed once, and whether asking again may help (``transient``).
"""
from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from ..core.clean_errors import aguarded, clean_failures, forget_secrets, guarded
from ..core.errors import ProviderError, RegistryError
from .base import ChatRequest, ChatResult, StreamChunk, Target
from .bedrock import (
    LABEL,
    _parsable,
    auth_method,
    converse_messages,
    default_endpoint_url,
    install_log_scrubbing,
    reasoning_fields,
    tool_config,
)
from .bedrock_params import inference_config, json_output
from .bedrock_stream import EventDecoder, StreamTranslator, finish_reason
from .bedrock_wire import PreparedCall, event_shape, parse_reply, prepare
from .egress import EgressPolicy
from .http_streams import (
    aexchange,
    aopen_stream,
    aread_error_body,
    open_stream,
    read_error_body,
)
from .openai_compat import schema_name
from .retry_after import retry_after_seconds
from .transport import (
    MAX_SHOWN_CHARS,
    SHAPE_ERRORS,
    _aiohttp_kind,
    _is_number,
    _reason,
    clean_error,
    quoted,
    scrubbed_result,
    shape_problem,
    shorten,
    shown,
)

EVENT_STREAM_TYPE = "application/vnd.amazon.eventstream"
DEFAULT_TIMEOUT = 30.0   # an adapter built without a timeout (the hub always gives one)
CONVERSE = "converse"
CONVERSE_STREAM = "converse_stream"


class BedrockAdapter:
    """One Bedrock model. ``get_client`` returns its botocore client (cached by the hub);
    ``http_client`` / ``async_http_client`` return the hub's pooled ``httpx`` clients, through
    which streams and async calls travel (botocore signs them, see :mod:`.bedrock_wire`)."""

    def __init__(self, target: Target, *, get_client: Callable[[], Any], endpoint_url: str | None,
                 policy: EgressPolicy, timeout: float | None = None,
                 http_client: Callable[[], Any] | None = None,
                 async_http_client: Callable[[], Any] | None = None) -> None:
        self.target = target
        self.timeout = timeout
        self.endpoint_url = endpoint_url
        self._get_client = get_client
        self._http_client = http_client
        self._async_http_client = async_http_client
        self._policy = policy
        self._secrets = target.secrets()

    def __repr__(self) -> str:
        return f"BedrockAdapter(region={self.target.aws_region!r}, auth={auth_method(self.target)!r})"

    def build_params(self, request: ChatRequest) -> tuple[dict[str, Any], str | None, list[str]]:
        """(converse kwargs, name of the forced JSON tool or None, warnings)."""
        inference = inference_config(request)      # refuses unsupported parameters: before any I/O
        schema, name = json_output(request)
        system, messages = converse_messages(request.messages)
        params: dict[str, Any] = {"modelId": request.model or self.target.provider_model_id,
                                  "messages": messages, "inferenceConfig": inference}
        if system:
            params["system"] = system
        json_tool = schema_name(name) if schema is not None else None
        config = tool_config(list(request.tools), request.tool_choice, json_tool, schema)
        if config is not None:
            params["toolConfig"] = config
        warnings: list[str] = []
        if request.reasoning:
            fields, warnings = reasoning_fields(params["modelId"], request.reasoning, request.max_tokens)
            params["additionalModelRequestFields"] = fields
        return params, json_tool, warnings

    def preview(self, request: ChatRequest) -> dict[str, Any]:
        """The converse call :meth:`chat` would make, secrets redacted and image bytes summarized."""
        params, _, warnings = self.build_params(request)
        region = (self.target.aws_region or "").strip()
        if auth_method(self.target) == "api_key":
            auth = {"method": "api_key", "Authorization": "Bearer [REDACTED]"}
        else:
            auth = {"method": "iam", "aws_access_key_id": self.target.aws_access_key_id,
                    "aws_secret_access_key": "[REDACTED]", "signature": "SigV4 (service bedrock)"}
        return {"operation": "bedrock-runtime.converse", "region": region,
                "endpoint_url": self.endpoint_url or default_endpoint_url(region),
                "auth": auth, "body": _summarize_bytes(params), "warnings": warnings}

    # -- sync, whole reply -----------------------------------------------------------------------
    @clean_failures
    def chat(self, request: ChatRequest) -> ChatResult:
        """Call ``converse``; the parsed result, or ``ProviderError`` with AWS's message."""
        params, json_tool, warnings = self.build_params(request)
        client = self._get_client()
        self._check_egress(client.meta.endpoint_url)
        install_log_scrubbing()
        started = time.perf_counter()
        failure = None
        try:
            response = client.converse(**params)
        except Exception as exc:
            failure = self._call_failure(exc, client.meta.endpoint_url)
            if failure is None:
                raise
        if failure is not None:
            # Raised outside the except blocks, so it has no __context__: botocore's and httpx's
            # exceptions hold the signed request and its headers.
            raise failure
        return self._result(response, json_tool, (time.perf_counter() - started) * 1000, warnings)

    # -- async, whole reply ----------------------------------------------------------------------
    async def achat(self, request: ChatRequest) -> ChatResult:
        """:meth:`chat` on the hub's async client: botocore signs, the event loop sends."""
        try:
            params, json_tool, warnings = self.build_params(request)
            call, client = self._prepare(CONVERSE, params)
            started = time.perf_counter()
            status, headers, body = await self._asend(call, client.meta.endpoint_url)
            del call
            latency_ms = (time.perf_counter() - started) * 1000
            response = self._parsed_reply(client, CONVERSE, status, headers, body)
            return self._result(response, json_tool, latency_ms, warnings)
        except BaseException as exc:
            forget_secrets(exc)
            raise

    # -- streams ---------------------------------------------------------------------------------
    @clean_failures
    def stream(self, request: ChatRequest) -> Iterator[StreamChunk]:
        """``converse-stream`` as :class:`StreamChunk` s. Parameters are checked and the request
        signed now; it is sent on the first ``next()``. Closing the iterator closes the reply."""
        params, json_tool, _ = self.build_params(request)
        call, client = self._prepare(CONVERSE_STREAM, params)
        return guarded(self._stream(call, client, json_tool))

    @clean_failures
    def astream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """:meth:`stream` on the hub's async client (``aclose()`` closes the reply)."""
        params, json_tool, _ = self.build_params(request)
        call, client = self._prepare(CONVERSE_STREAM, params)
        return aguarded(self._astream(call, client, json_tool))

    def _stream(self, call: PreparedCall, client: Any, json_tool: str | None) -> Iterator[StreamChunk]:
        import httpx

        endpoint = client.meta.endpoint_url
        self._check_egress(endpoint)
        http = self._need(self._http_client)
        failure: ProviderError | None = None
        try:
            response = open_stream(http, call, timeout=self._timeout())
        except httpx.HTTPError as exc:
            failure = self._transport_error(exc, endpoint)
        del call
        if failure is not None:
            raise failure
        try:
            if response.status_code >= 300:
                body = read_error_body(response, timeout=self._timeout())
                raise self._status_failure(client, response, body)
            decoder, translator = self._stream_parts(client, response, json_tool)
            try:
                for piece in response.iter_raw():
                    for event in decoder.feed(piece):
                        yield from translator.chunks(event)
            except httpx.HTTPError as exc:
                failure = self._transport_error(exc, endpoint, began=True)
            if failure is not None:
                raise failure
            yield self._stream_end(decoder, translator)
        finally:
            response.close()

    async def _astream(self, call: PreparedCall, client: Any, json_tool: str | None) -> AsyncIterator[StreamChunk]:
        import httpx

        endpoint = client.meta.endpoint_url
        http = self._need(self._async_http_client)
        failure: ProviderError | None = None
        try:
            response = await aopen_stream(http, call, timeout=self._timeout())
        except httpx.HTTPError as exc:
            failure = self._transport_error(exc, endpoint)
        except TimeoutError:
            failure = self._timed_out(endpoint)
        del call
        if failure is not None:
            raise failure
        try:
            if response.status_code >= 300:
                body = await aread_error_body(response, timeout=self._timeout())
                raise self._status_failure(client, response, body)
            decoder, translator = self._stream_parts(client, response, json_tool)
            try:
                async for piece in response.aiter_raw():
                    for event in decoder.feed(piece):
                        for chunk in translator.chunks(event):
                            yield chunk
            except httpx.HTTPError as exc:
                failure = self._transport_error(exc, endpoint, began=True)
            if failure is not None:
                raise failure
            yield self._stream_end(decoder, translator)
        finally:
            await response.aclose()

    def _stream_parts(self, client: Any, response: Any,
                      json_tool: str | None) -> tuple[EventDecoder, StreamTranslator]:
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith(EVENT_STREAM_TYPE):
            raise self._final(f"Bedrock answered a stream with {quoted(content_type or 'no Content-Type')} "
                              f"instead of {EVENT_STREAM_TYPE}")
        request_id = _text(response.headers.get("x-amzn-requestid"))
        return (EventDecoder(event_shape(client, CONVERSE_STREAM), self._secrets),
                StreamTranslator(json_tool=json_tool, request_id=request_id, secrets=self._secrets))

    def _stream_end(self, decoder: EventDecoder, translator: StreamTranslator) -> StreamChunk:
        decoder.finish()
        if not translator.stopped:
            raise self._final("Bedrock's stream ended before the message was complete "
                              "(no messageStop event)")
        return translator.last()

    # -- shared steps ----------------------------------------------------------------------------
    def _prepare(self, operation: str, params: dict[str, Any]) -> tuple[PreparedCall, Any]:
        """botocore's signed request for ``operation`` (no I/O), and the client that made it."""
        client = self._get_client()
        install_log_scrubbing()
        failure = None
        try:
            call = prepare(client, operation, params)
        except Exception as exc:
            failure = self._call_failure(exc, client.meta.endpoint_url)
            if failure is None:
                raise
        if failure is not None:
            raise failure
        return call, client

    async def _asend(self, call: PreparedCall, endpoint: str) -> tuple[int, Any, bytes]:
        import httpx

        http = self._need(self._async_http_client)
        failure: ProviderError | None = None
        try:
            reply = await aexchange(http, call, timeout=self._timeout(), label=LABEL)
        except httpx.HTTPError as exc:
            failure = self._transport_error(exc, endpoint)
        except TimeoutError:
            failure = self._timed_out(endpoint)
        if failure is not None:
            raise failure
        if 300 <= reply.status < 400:
            raise self._final(f"Bedrock answered HTTP {reply.status}; byok_nb never follows redirects")
        return reply.status, reply.headers, _parsable(reply.status, reply.content)

    def _parsed_reply(self, client: Any, operation: str, status: int, headers: Any, body: bytes) -> dict[str, Any]:
        """botocore's parse of a reply; an error status raises the ``ProviderError``."""
        from botocore.parsers import ResponseParserError

        failure: RegistryError | None = None
        try:
            parsed = parse_reply(client, operation, status, dict(headers.items()), body)
        except ResponseParserError as exc:
            failure = self._final(f"Bedrock returned a malformed reply: {shorten(str(exc))}")
        except (RecursionError, ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            failure = self._final(f"Bedrock returned a malformed reply: {shape_problem(exc)}")
        if failure is not None:
            raise failure
        if status >= 300:
            raise self._reply_error(parsed)
        return parsed

    def _status_failure(self, client: Any, response: Any, body: bytes) -> RegistryError:
        """The error for a stream request answered with a non-2xx status."""
        if response.status_code < 400:
            return self._final(f"Bedrock answered HTTP {response.status_code}; byok_nb never "
                               f"follows redirects")
        try:
            self._parsed_reply(client, CONVERSE_STREAM, response.status_code, response.headers,
                               _parsable(response.status_code, body))
        except RegistryError as exc:
            return exc
        return self._final(f"Bedrock returned HTTP {response.status_code}")

    def _result(self, response: dict[str, Any], json_tool: str | None, latency_ms: float,
                warnings: list[str]) -> ChatResult:
        failure = None
        try:
            return scrubbed_result(self._parse(response, json_tool, latency_ms, warnings), self._secrets)
        except SHAPE_ERRORS as exc:
            failure = self._final(f"Bedrock returned a malformed reply ({shape_problem(exc)}): "
                                  f"{shorten(_safe_repr(response))}")
        raise failure

    def _call_failure(self, exc: Exception, endpoint_url: str) -> RegistryError | None:
        """The ``ProviderError`` for what a botocore call raised, or None for anything else."""
        import botocore.exceptions as bex
        import httpx
        from botocore.parsers import ResponseParserError

        if isinstance(exc, bex.ClientError):
            response = exc.response if isinstance(getattr(exc, "response", None), dict) else {}
            return self._reply_error(response, fallback=str(exc))
        if isinstance(exc, bex.ParamValidationError):
            return self._error(f"Bedrock request failed validation before sending: {exc}", 400)
        if isinstance(exc, (bex.ConnectTimeoutError, bex.ReadTimeoutError)):
            return self._error(f"Bedrock endpoint {endpoint_url} timed out: {exc}")
        if isinstance(exc, bex.SSLError):
            return self._error(f"Bedrock endpoint {endpoint_url} failed the TLS handshake: {exc}")
        if isinstance(exc, bex.EndpointConnectionError):
            return self._error(f"Bedrock endpoint {endpoint_url} could not be reached: {exc}")
        if isinstance(exc, ResponseParserError):
            return self._final(f"Bedrock returned a malformed reply: {shorten(str(exc))}")
        if isinstance(exc, bex.BotoCoreError):
            return self._error(f"Bedrock call failed: {exc}")
        if isinstance(exc, httpx.HTTPError):   # sent through the hub's client (see module doc)
            return self._transport_error(exc, endpoint_url)
        if isinstance(exc, RegistryError):     # ours, from the sender inside botocore (a reply too large)
            return exc
        if isinstance(exc, (RecursionError, ValueError, TypeError, AttributeError, KeyError, IndexError)):
            # botocore parsing a reply of an odd shape (JSON nested too deep, a list for a map).
            return self._final(f"Bedrock returned a malformed reply: {shape_problem(exc)}")
        return None

    def _check_egress(self, endpoint_url: str) -> None:
        # The endpoint is AWS's or the operator's (the region is regex-checked), so resolving here
        # rather than at connect time leaves no user-controlled rebinding window.
        parts = urlsplit(endpoint_url)
        host = parts.hostname or ""
        try:
            self._policy.resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
        except OSError as exc:
            raise self._error(f"Bedrock endpoint {endpoint_url} could not be resolved: "
                              f"DNS lookup failed for {host}: {exc}") from None

    def _need(self, getter: Callable[[], Any] | None) -> Any:
        if getter is None:   # an adapter built without a hub: a wiring bug, not a provider failure
            raise RuntimeError("this Bedrock adapter has no HTTP client for streams or async calls")
        return getter()

    def _timeout(self) -> float:
        return self.timeout if self.timeout else DEFAULT_TIMEOUT

    def _error(self, message: str, status: int = 502) -> ProviderError:
        """An error of ours (no reply to quote); a 502 is transient (a failure to connect)."""
        return clean_error(message, self._secrets, status_code=status, provider=LABEL)

    def _final(self, message: str) -> ProviderError:
        """A 502 for a reply that came but cannot be used: asking again would not help."""
        return clean_error(message, self._secrets, status_code=502, provider=LABEL, transient=False)

    def _timed_out(self, endpoint_url: str) -> ProviderError:
        return self._error(f"Bedrock endpoint {endpoint_url} timed out after {self._timeout():g} s")

    def _transport_error(self, exc: Exception, endpoint_url: str, *, began: bool = False) -> ProviderError:
        """The words of the botocore-era messages for an ``httpx`` transport failure; transient
        unless the reply had ``began`` (a stream cut mid-way: asking again repeats what came)."""
        import httpx

        detail = str(exc) or type(exc).__name__
        # The async client's transport words every failure to connect as a timeout: aiohttp's
        # own exception (the cause) says which it was.
        kind = _aiohttp_kind(exc.__cause__, self._timeout())
        if kind is not None:
            what = f"{kind}: {detail}"
        elif isinstance(exc, httpx.TimeoutException):
            limit = f" after {self.timeout:g} s" if self.timeout else ""
            what = f"timed out{limit}: {detail}"
        elif isinstance(exc, httpx.ConnectError):
            tls = "SSL" in detail or "certificate" in detail.lower()
            what = f"failed the TLS handshake: {detail}" if tls else f"could not be reached: {detail}"
        elif isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
            what = f"closed or reset the connection before a complete reply: {detail}"
        else:
            what = f"failed: {detail}"
        return clean_error(f"Bedrock endpoint {endpoint_url} {what}", self._secrets, status_code=502,
                           provider=LABEL, transient=not began)

    def _reply_error(self, response: dict[str, Any], fallback: str = "") -> ProviderError:
        """The ``ProviderError`` for botocore's parse of an error reply (``ClientError.response``).

        Bedrock names the error in ``x-amzn-ErrorType``; when a reply has no such header (nor a
        ``__type`` in its body) botocore puts the bare status in ``Code``, which is not shown:
        the status is printed once."""
        error = response.get("Error") if isinstance(response.get("Error"), dict) else {}
        metadata = response.get("ResponseMetadata") if isinstance(response.get("ResponseMetadata"), dict) else {}
        status = metadata.get("HTTPStatusCode")
        status = status if type(status) is int and 100 <= status < 600 else 502
        code = _text(error.get("Code")) or ""
        if code.isdigit():
            code = ""
        message = shown(_text(error.get("Message")) or fallback or _reason(status), self._secrets)
        headers = metadata.get("HTTPHeaders") if isinstance(metadata.get("HTTPHeaders"), dict) else {}
        extra = ""
        retry_after = _text(headers.get("retry-after"))
        if status in (429, 503) and retry_after:   # as transport.error_from_reply words it
            extra = f" (Retry-After: {quoted(retry_after)}{' s' if _is_number(retry_after) else ''})"
        named = f" {shorten(code, 200)}" if code else ""
        # The code comes from a response header (x-amzn-ErrorType) or the body: scrubbed with the
        # rest. Transient follows the status.
        return clean_error(f"{LABEL} returned HTTP {status}{named}: {message}{extra}",
                           self._secrets, status_code=status, provider_message=message, provider=LABEL,
                           retry_after=retry_after_seconds(retry_after))

    def _parse(self, response: dict[str, Any], json_tool: str | None, latency_ms: float,
               warnings: list[str]) -> ChatResult:
        """The result out of botocore's parsed reply; an odd shape raises one of ``SHAPE_ERRORS``."""
        blocks = response["output"]["message"]["content"]
        if not isinstance(blocks, list):
            raise TypeError("output.message.content is not a list")
        texts: list[str] = []
        reasoning: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        json_text: str | None = None
        for block in blocks:
            if not isinstance(block, dict):
                raise TypeError("a content block is not an object")
            if "text" in block:
                texts.append(_required_text(block["text"]))
            elif "reasoningContent" in block:
                text = ((block["reasoningContent"] or {}).get("reasoningText") or {}).get("text")
                if isinstance(text, str):
                    reasoning.append(text)
            elif "toolUse" in block:
                use = block["toolUse"]
                name = _required_text(use.get("name"))
                if json_tool is not None and name == json_tool:
                    json_text = json.dumps(use.get("input"))
                else:
                    tool_calls.append({"id": _text(use.get("toolUseId")), "type": "function",
                                       "function": {"name": name,
                                                    "arguments": json.dumps(use.get("input", {}))}})
        usage = response.get("usage") or {}
        if not isinstance(usage, dict):
            usage = {}
        metadata = response.get("ResponseMetadata") if isinstance(response.get("ResponseMetadata"), dict) else {}
        json_only = json_text is not None and not tool_calls
        # Counts go to ChatResult as sent: it records implausible ones as unknown.
        return ChatResult(text=json_text if json_text is not None else "".join(texts),
                          tool_calls=tool_calls, input_tokens=usage.get("inputTokens"),
                          output_tokens=usage.get("outputTokens"), latency_ms=latency_ms,
                          warnings=warnings, reasoning_text="".join(reasoning),
                          request_id=_text(metadata.get("RequestId")),
                          finish_reason=finish_reason(response.get("stopReason"), json_tool_only=json_only))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _required_text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a text field is not text")
    return value


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)[:MAX_SHOWN_CHARS + 1024]
    except RecursionError:
        return "(nested too deeply to show)"


def _summarize_bytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {k: _summarize_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_summarize_bytes(v) for v in value]
    return value
