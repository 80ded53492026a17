"""Loopback fake providers that check what the real ones check and answer with their real bodies.

* :class:`FakeOpenAIProvider` — the OpenAI chat-completions shape, with a profile per vendor
  (``fireworks``, ``together``, ``openai``, ``hf_tgi``, ``hf_router``, ``openrouter``,
  ``litellm``, ``vllm``): bearer auth with each vendor's 401 body, unknown models with each
  vendor's error, body-shape validation (``response_format`` forms, tools, reasoning fields), a
  context limit that ``max_tokens`` can exceed, and failure switches (delay, malformed or huge
  body, 5xx, 429 with ``Retry-After``, redirects).
* :class:`FakeBedrock` — ``POST /model/{modelId}/converse`` verifying SigV4 with botocore's own
  ``SigV4Auth`` (or a Bedrock API key as bearer), validating the converse body, and answering
  with Bedrock's error types in ``x-amzn-ErrorType``.

Both can play a model that lacks capabilities (``unsupported={"json", "tools", "vision",
"reasoning"}``, none by default) the way the real server does — refusing with its real error
body, or silently ignoring the request where that is what the server does (see
:data:`CAPABILITY_ERRORS`) — and one that has them: ``tool_call`` answers tool requests with a
tool call, ``reasoning_reply`` returns reasoning text (and a reasoning-token count) beside the
answer when reasoning is asked for. "Probe capabilities" is tested against these.

Each fake is a ``ThreadingHTTPServer`` on ``127.0.0.1`` (port 0), speaking HTTP/1.1 keep-alive
with Nagle's algorithm off (else every reply waits ~40 ms for a delayed ACK). Use as a context
manager or ``start()``/``stop()``; ``.url`` is its root, ``.requests`` the log of what it got.
Failure switches are plain attributes, so a test can flip them on a running fake. Extra
endpoints: ``fake.add_route("GET", "/api/v1/models", handler)`` where ``handler(request) -> Reply``.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from .eventstream import (
    EVENT_STREAM_TYPE,
    converse_stream_events,
    encode_event,
    encode_exception,
)
from .openai_sse import DONE, OPENROUTER_COMMENT, completion_events, error_event

JSONish = dict | list | str | bytes | None


@dataclass
class RecordedRequest:
    """One request a fake received. Unpacks as ``path, headers, json``."""

    path: str
    headers: dict[str, str]     # names lower-cased
    json: Any                   # parsed body, or None when it was not JSON
    method: str = "POST"
    raw: bytes = b""

    def __iter__(self):
        return iter((self.path, self.headers, self.json))


@dataclass
class Reply:
    """What a fake answers: status, body (dict/list -> JSON, str/bytes as is) and headers.

    ``chunks``, when set, is sent instead of ``body`` with ``Transfer-Encoding: chunked``, one
    chunk per item as the iterable yields it (a streamed reply); a client that goes away mid-way
    is counted in the fake's ``streams_cut``."""

    status: int = 200
    body: JSONish = None
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes] | None = None

    def encode(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, (dict, list)):
            payload = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(self.body, str):
            payload = self.body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            payload = self.body or b""
        return payload, headers


Route = Callable[[RecordedRequest], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024   # many concurrent connects (benchmarks) must not overflow the backlog

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        # A client that gave up (timeout tests) leaves a broken pipe: expected, not worth a trace.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._conn_lock:
            live = list(self.connections)
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive, like real providers
    disable_nagle_algorithm = True     # see module doc
    server_version = "byok-nb-fake/1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = RecordedRequest(path=self.path, headers={k.lower(): v for k, v in self.headers.items()},
                                  json=body, method=self.command, raw=raw)
        fake = self.server.fake
        fake.requests.append(request)
        try:
            reply = fake.dispatch(request)
        except Exception as exc:  # a bug in a fake must show up as a 500, not a hung client
            reply = Reply(500, {"error": {"message": f"fake server error: {exc!r}"}})
        if reply.chunks is not None:
            self._send_chunked(reply, fake)
            return
        payload, headers = reply.encode()
        self.send_response(reply.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_chunked(self, reply: Reply, fake: FakeServer) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for piece in reply.chunks or ():
                if piece:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        except (ConnectionError, OSError):   # the client closed the stream early
            fake.streams_cut += 1
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests instead
        pass


class FakeServer:
    """A loopback HTTP server; subclasses implement :meth:`handle`. Routes added with
    :meth:`add_route` are answered first."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.streams_cut = 0   # streamed replies the client stopped reading (closed) mid-way
        self._routes: dict[tuple[str, str], Route] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeServer:
        if self._server is None:
            self._server = _Server(self)
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.01},  # stop() waits one poll
                                            name=f"{type(self).__name__}-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_connections()   # idle keep-alive connections would linger otherwise
            server.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("fake server is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    # -- routing ---------------------------------------------------------------------------------
    def add_route(self, method: str, path: str, handler: Route) -> None:
        """Answer ``method path`` (query string ignored) with ``handler(request) -> Reply``.
        Paths match with percent-escapes undone, as a server reads them (``%3A`` is ``:``)."""
        self._routes[(method.upper(), unquote(path))] = handler

    def dispatch(self, request: RecordedRequest) -> Reply:
        route = self._routes.get((request.method, unquote(urlsplit(request.path).path)))
        if route is not None:
            return route(request)
        return self.handle(request)

    def handle(self, request: RecordedRequest) -> Reply:
        return Reply(404, {"error": {"message": f"no route for {request.method} {request.path}"}})

    @property
    def last(self) -> RecordedRequest:
        """The most recent request received."""
        return self.requests[-1]


# ==================================================================================================
# OpenAI chat-completions shape
# ==================================================================================================
OPENAI_PROFILES = ("fireworks", "together", "openai", "hf_tgi", "hf_router", "openrouter", "litellm",
                   "vllm")
# Where each vendor serves its API (the value to put in the matching base-URL override).
_BASE_PATHS = {"fireworks": "/inference/v1", "together": "/v1", "openai": "/v1", "hf_tgi": "",
               "hf_router": "/v1", "openrouter": "/api/v1", "litellm": "", "vllm": "/v1"}
CAPABILITIES = ("json", "tools", "vision", "reasoning")
# How each server treats a request for a capability its model lacks (``unsupported=``):
# "refuse" answers with the server's real error, "ignore" answers as if the part were not there.
#   * OpenAI and the servers relaying its errors (OpenRouter, LiteLLM, the HF router, Fireworks,
#     Together): 400 ``Invalid content type. image_url is only supported by certain models.`` for
#     images; ``Unsupported parameter: '<p>' is not supported with this model.`` (code
#     ``unsupported_parameter``) for tools and reasoning parameters.
#   * vLLM: ``<model> is not a multimodal model``; without ``--enable-auto-tool-choice``,
#     ``"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set``;
#     reasoning fields are accepted and nothing comes back without a reasoning parser.
#   * TGI: image parts reach a text-only model, which answers without seeing them
#     (huggingface/text-generation-inference#2565); tools and reasoning fields are not refused.
#   * Bedrock converse (ValidationException): ``This model doesn't support tool use.``, ``This
#     model doesn't support the image content block that you provided. ...``, ``This model doesn't
#     support the toolConfig.toolChoice.tool field. ...`` and, for model-native reasoning fields,
#     ``The model returned the following errors: Malformed input request: #: extraneous key
#     [thinking] is not permitted, ...``.
#   Refused native JSON is each server's wording as for ``reject_native_json``.
CAPABILITY_ERRORS = {
    "vllm": {"vision": "refuse", "tools": "refuse", "reasoning": "ignore", "json": "refuse"},
    "hf_tgi": {"vision": "ignore", "tools": "ignore", "reasoning": "ignore", "json": "refuse"},
    "bedrock": dict.fromkeys(CAPABILITIES, "refuse"),
    **{p: dict.fromkeys(CAPABILITIES, "refuse")
       for p in ("fireworks", "together", "openai", "hf_router", "openrouter", "litellm")},
}
_REASONING_FIELDS = ("reasoning_effort", "thinking", "reasoning")
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_EFFORTS = ("low", "medium", "high")
DEFAULT_REPLY = '{"status":"ok"}'


def openai_error(status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: Any = None, **extra: Any) -> Reply:
    """An error in the OpenAI shape ``{"error": {"message", "type", "param", "code"}}``."""
    return Reply(status, {"error": {"message": message, "type": type, "param": param,
                                    "code": code, **extra}})


def rate_limited(retry_after: str | None = "7", *, profile: str = "openai") -> Reply:
    """A 429 with ``Retry-After`` (seconds or an HTTP-date), in the vendor's body."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    if profile == "openrouter":
        return Reply(429, {"error": {"message": "Rate limit exceeded: free-models-per-min.", "code": 429,
                                     "metadata": {"headers": {"X-RateLimit-Limit": "20"}}}}, headers)
    if profile == "hf_tgi":
        return Reply(429, {"error": "Model is overloaded", "error_type": "overloaded"}, headers)
    return Reply(429, openai_error(429, "Rate limit reached for requests", type="requests",
                                   code="rate_limit_exceeded").body, headers)


def openrouter_upstream_error(status: int, raw: Any, provider_name: str = "Together") -> Reply:
    """OpenRouter relaying an upstream failure: its own message says only "Provider returned
    error"; what the upstream said is in ``error.metadata.raw`` (a string, usually its JSON body)."""
    return Reply(status, {"error": {"message": "Provider returned error", "code": status,
                                    "metadata": {"raw": raw, "provider_name": provider_name}},
                          "user_id": "user_2fake"})


def tgi_error(status: int, message: str, error_type: str = "validation") -> Reply:
    """A TGI error: ``{"error": "...", "error_type": "..."}``."""
    return Reply(status, {"error": message, "error_type": error_type})


def vllm_error(status: int, message: str, type: str = "BadRequestError") -> Reply:
    """A vLLM error: ``{"object": "error", "message", "type", "param", "code"}`` at the top level."""
    return Reply(status, {"object": "error", "message": message, "type": type, "param": None,
                          "code": status})


def _capability_set(unsupported: Iterable[str]) -> frozenset[str]:
    out = frozenset(unsupported)
    unknown = sorted(out - set(CAPABILITIES))
    if unknown:
        raise ValueError(f"unsupported capabilities must be among {CAPABILITIES}, not {unknown}")
    return out


def _image_part(messages: Any) -> tuple[int, int] | None:
    """(message index, part index) of the first ``image_url`` part, or None."""
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") == "image_url":
                return i, j
    return None


def _minimal_arguments(tool: dict[str, Any]) -> dict[str, Any]:
    """Arguments for a tool's required parameters, each the simplest value of its type."""
    parameters = (tool.get("function") or {}).get("parameters") or {}
    properties = parameters.get("properties") or {}
    simple = {"boolean": True, "string": "ok", "integer": 1, "number": 1, "array": [], "object": {}}
    return {name: simple.get((properties.get(name) or {}).get("type"), "ok")
            for name in parameters.get("required") or []}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def count_tokens(messages: Iterable[dict[str, Any]]) -> int:
    """A rough token count (about 4 characters a token, plus per-message overhead)."""
    return sum(4 + len(_text_of(m.get("content"))) // 4 for m in messages if isinstance(m, dict))


class FakeOpenAIProvider(FakeServer):
    """A fake OpenAI-shaped provider. See the module doc; the arguments:

    ``profile``: which vendor to imitate. ``api_key``: the bearer token accepted (None: no auth,
    as a local vLLM). ``models``: accepted model ids (None: any; ``hf_tgi`` ignores the model
    like TGI does). ``context_limit``: prompt + ``max_tokens`` above it is the vendor's 400/422.
    ``reply``: the assistant text (or ``callable(request) -> str``); ``tool_call``: answer with a
    tool call ``{"name": ..., "arguments": {...}}`` when the request has tools (``"first"``: call
    the request's first tool with its required arguments filled with simple values).
    ``reject_native_json``: refuse any native ``response_format`` as an unsupported parameter.
    ``unsupported``: capabilities (``json``, ``tools``, ``vision``, ``reasoning``) the model lacks,
    refused or ignored as the vendor does (:data:`CAPABILITY_ERRORS`); ``json`` is
    ``reject_native_json``. ``reasoning_reply``: reasoning text returned beside the answer when
    the request asks for reasoning (``reasoning_content``, or ``reasoning`` for Together and
    OpenRouter; OpenAI returns only ``usage.completion_tokens_details.reasoning_tokens``).
    Failure switches: ``delay`` (seconds before answering), ``malformed`` (200 with a broken
    body), ``huge_body`` (500 with a 1 MB HTML body), ``fail_status`` (e.g. 503),
    ``rate_limit`` (429 with ``Retry-After: retry_after``), ``redirect_to`` (302 to it).
    ``errors``: replies served, one per request and in order, to the next authenticated requests
    (e.g. :func:`rate_limited`, :func:`openrouter_upstream_error`).

    ``stream: true`` is answered with server-sent events (:mod:`.openai_sse`), the usage chunk
    when ``stream_options.include_usage`` asks for it (always on Together and OpenRouter), an
    event every ``stream_delay`` seconds; ``stream_error = (status, message)`` replaces the
    ``stream_error_after``-th event with the vendor's mid-stream error event
    (``stream_error_metadata`` is OpenRouter's ``error.metadata``). The sampling parameters
    (``temperature``, ``top_p``, ``stop``, ``seed``, penalties, ``n``, ``stream_options``) are
    checked as the vendor checks them, with its error wording; ``stop`` ends the reply before
    the first stop sequence. Replies carry ``x-request-id`` (OpenRouter: a ``gen-`` body id).
    """

    def __init__(self, profile: str = "openai", *, api_key: str | None = "sk-test-key-0001",
                 models: Iterable[str] | None = None, context_limit: int = 131072,
                 reply: str | Callable[[RecordedRequest], str] = DEFAULT_REPLY,
                 tool_call: dict[str, Any] | str | None = None, reject_native_json: bool = False,
                 delay: float = 0.0, malformed: bool = False, huge_body: bool = False,
                 fail_status: int | None = None, rate_limit: bool = False, retry_after: int = 7,
                 redirect_to: str | None = None, unsupported: Iterable[str] = (),
                 reasoning_reply: str | None = None) -> None:
        if profile not in OPENAI_PROFILES:
            raise ValueError(f"profile must be one of {OPENAI_PROFILES}, not {profile!r}")
        super().__init__()
        self.profile = profile
        self.api_key = api_key
        self.models = None if models is None else set(models)
        self.context_limit = context_limit
        self.reply = reply
        self.tool_call = tool_call
        self.reject_native_json = reject_native_json
        self.unsupported = _capability_set(unsupported)
        self.reasoning_reply = reasoning_reply
        self.delay = delay
        self.malformed = malformed
        self.huge_body = huge_body
        self.fail_status = fail_status
        self.rate_limit = rate_limit
        self.retry_after = retry_after
        self.redirect_to = redirect_to
        self.errors: list[Reply] = []
        self.stream_delay = 0.0
        self.stream_error: tuple[int, str] | None = None
        self.stream_error_after = 0
        self.stream_error_metadata: dict[str, Any] | None = None

    @property
    def base_url(self) -> str:
        """The API base to configure (e.g. ``.../inference/v1`` for Fireworks)."""
        return self.url + _BASE_PATHS[self.profile]

    @property
    def chat_path(self) -> str:
        return _BASE_PATHS[self.profile] + "/v1/chat/completions" if self.profile == "hf_tgi" \
            else _BASE_PATHS[self.profile] + "/chat/completions"

    # -- request handling ------------------------------------------------------------------------
    def handle(self, request: RecordedRequest) -> Reply:
        if self.delay:
            time.sleep(self.delay)
        path = urlsplit(request.path).path
        chat_paths = {self.chat_path} | ({"/v1/chat/completions"} if self.profile == "litellm" else set())
        if request.method != "POST" or path not in chat_paths:
            return self._not_found(request)
        if self.redirect_to:
            return Reply(302, "", {"Location": self.redirect_to})
        auth_error = self._check_auth(request.headers.get("authorization"))
        if auth_error is not None:
            return auth_error
        if self.errors:
            return self.errors.pop(0)
        if self.rate_limit:
            return Reply(429, openai_error(429, "Rate limit reached for requests", type="requests",
                                           code="rate_limit_exceeded").body,
                         {"Retry-After": str(self.retry_after)})
        if self.fail_status:
            return openai_error(self.fail_status, "The server had an error while processing your "
                                "request. Sorry about that!", type="server_error")
        if self.huge_body:
            return Reply(500, "<html><body>" + "upstream exploded " * 60000 + "</body></html>",
                         {"Content-Type": "text/html"})
        body = request.json
        if not isinstance(body, dict):
            return self._invalid("We could not parse the JSON body of your request.", None)
        problem = self._check_body(body)
        if problem is not None:
            return problem
        if self.malformed:
            return Reply(200, '{"id": "chatcmpl-broken", "choices": [', {"Content-Type": "application/json"})
        completion = self._completion(request, body)
        headers = self._id_headers(len(self.requests))
        if body.get("stream") is True:
            include_usage = self.profile in ("together", "openrouter") \
                or (body.get("stream_options") or {}).get("include_usage") is True
            events = completion_events(completion, include_usage=include_usage)
            return Reply(200, headers={**headers, "Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache"},
                         chunks=self._stream(events, completion["id"]))
        return Reply(200, completion, headers)

    def _id_headers(self, number: int) -> dict[str, str]:
        if self.profile in ("openrouter", "hf_tgi", "vllm"):   # they send no request id header
            return {}
        return {"x-request-id": f"req_fake_{number:06d}"}

    def _stream(self, events: list[bytes], completion_id: str) -> Iterable[bytes]:
        if self.profile == "openrouter":
            yield OPENROUTER_COMMENT
        for number, event in enumerate(events):
            if self.stream_error is not None and number == self.stream_error_after:
                status, message = self.stream_error
                yield error_event(self.profile, status, message, metadata=self.stream_error_metadata,
                                  completion_id=completion_id)
                return
            if number and self.stream_delay:
                time.sleep(self.stream_delay)
            yield event
        yield DONE

    def _not_found(self, request: RecordedRequest) -> Reply:
        if self.profile == "hf_tgi":
            return Reply(404, "", {})
        return openai_error(404, f"Invalid URL ({request.method} {urlsplit(request.path).path})",
                            code=None)

    def _check_auth(self, header: str | None) -> Reply | None:
        if self.api_key is None:
            return None
        token = header[7:] if header and header.startswith("Bearer ") else None
        if token == self.api_key:
            return None
        p = self.profile
        if p == "together":
            return openai_error(401, "Invalid API key provided. You can find your API key at "
                                "https://api.together.ai/settings/api-keys.", code="invalid_api_key")
        if p == "hf_router":
            return Reply(401, {"error": "Invalid credentials in Authorization header"})
        if p == "hf_tgi":
            return Reply(401, {"error": "Authorization header is correct, but the token seems invalid"})
        if p == "vllm":
            return Reply(401, {"error": "Unauthorized"})
        if p == "fireworks":
            return Reply(401, {"error": {"object": "error", "type": "invalid_request_error",
                                         "message": "The API key you provided is invalid."}})
        if p == "openrouter":
            return Reply(401, {"error": {"message": "No auth credentials found" if token is None
                                         else "User not found.", "code": 401}})
        if p == "litellm":
            # LiteLLM echoes the key it received: byok_nb must scrub it from what it shows.
            return openai_error(401, f"Authentication Error, Invalid proxy server token passed. "
                                f"Received API Key = {token}, Key Hash (Token) =unknown. Unable to "
                                f"find token in cache or `LiteLLM_VerificationTokenTable`",
                                type="auth_error", param="None", code="401")
        if token is None:
            return openai_error(401, "You didn't provide an API key. You need to provide your API "
                                "key in an Authorization header using Bearer auth (i.e. "
                                "Authorization: Bearer YOUR_KEY).", code=None)
        shown = f"{token[:3]}{'*' * 8}{token[-4:]}" if len(token) > 8 else "****"
        return openai_error(401, f"Incorrect API key provided: {shown}. You can find your API key "
                            f"at https://platform.openai.com/account/api-keys.", code="invalid_api_key")

    def _invalid(self, message: str, param: str | None) -> Reply:
        if self.profile == "hf_tgi":
            return tgi_error(422, message)
        if self.profile == "vllm":
            return vllm_error(400, message)
        return openai_error(400, message, param=param)

    def _unknown_model(self, model: str) -> Reply:
        p = self.profile
        if p == "fireworks":
            return Reply(404, {"error": {"object": "error", "type": "invalid_request_error",
                                         "code": "NOT_FOUND",
                                         "message": "Model not found, inaccessible, and/or not deployed"}})
        if p == "together":
            return openai_error(404, f"Unable to access model {model}. Please visit "
                                f"https://api.together.ai/models to view the list of supported "
                                f"models.", code="model_not_available")
        if p == "hf_router":
            return openai_error(400, f"The requested model '{model}' does not exist.",
                                param="model", code="model_not_found")
        if p == "openrouter":
            return Reply(400, {"error": {"message": f"{model} is not a valid model ID", "code": 400}})
        if p == "vllm":
            return vllm_error(404, f"The model `{model}` does not exist.", type="NotFoundError")
        if p == "litellm":
            return openai_error(400, f"/chat/completions: Invalid model name passed in "
                                f"model={model}. Call `/v1/models` to view available models for "
                                f"your key.", param="model", code="400")
        return openai_error(404, f"The model `{model}` does not exist or you do not have access "
                            f"to it.", code="model_not_found")

    def _check_body(self, body: dict[str, Any]) -> Reply | None:
        model = body.get("model")
        if self.profile != "hf_tgi":
            if not isinstance(model, str) or not model:
                return self._invalid("you must provide a model parameter", "model")
            if self.models is not None and model not in self.models:
                return self._unknown_model(model)
        for check in (self._check_messages, self._check_max_tokens, self._check_sampling,
                      self._check_stream, self._check_response_format,
                      self._check_tools, self._check_reasoning, self._check_capabilities):
            problem = check(body)
            if problem is not None:
                return problem
        return None

    def _check_messages(self, body: dict[str, Any]) -> Reply | None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._invalid("'messages' must be a non-empty array", "messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in (
                    "system", "developer", "user", "assistant", "tool"):
                return self._invalid(f"Invalid value for 'messages[{i}].role'", f"messages[{i}].role")
            content = message.get("content")
            if content is None and message.get("role") == "assistant" and message.get("tool_calls"):
                continue
            if isinstance(content, str):
                continue
            if not isinstance(content, list):
                return self._invalid(f"Invalid type for 'messages[{i}].content'", f"messages[{i}].content")
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    continue
                url = (part.get("image_url") or {}).get("url") if kind == "image_url" else None
                if isinstance(url, str) and (url.startswith(("http://", "https://"))
                                             or re.match(r"^data:image/[a-z]+;base64,", url)):
                    continue
                return self._invalid(f"Invalid content part 'messages[{i}].content[{j}]'",
                                     f"messages[{i}].content[{j}]")
        return None

    def _check_max_tokens(self, body: dict[str, Any]) -> Reply | None:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            return None
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            if self.profile == "hf_tgi":
                return tgi_error(422, "Input validation error: `max_new_tokens` must be strictly positive")
            return self._invalid(f"Invalid 'max_tokens': integer below minimum value. Expected a "
                                 f"value >= 1, but got {max_tokens!r} instead.", "max_tokens")
        prompt = count_tokens(body["messages"])
        if prompt + max_tokens <= self.context_limit:
            return None
        if self.profile in ("hf_tgi", "together"):  # TGI's wording (Together serves the same text)
            message = (f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                       f"{self.context_limit}. Given: {prompt} `inputs` tokens and {max_tokens} "
                       f"`max_new_tokens`")
            return tgi_error(422, message) if self.profile == "hf_tgi" else self._invalid(message, None)
        return openai_error(400, f"This model's maximum context length is {self.context_limit} "
                            f"tokens. However, you requested {prompt + max_tokens} tokens ({prompt} "
                            f"in the messages, {max_tokens} in the completion). Please reduce the "
                            f"length of the messages or completion.", param="messages",
                            code="context_length_exceeded")

    def _check_sampling(self, body: dict[str, Any]) -> Reply | None:
        """``temperature``, ``top_p``, penalties, ``seed``, ``stop`` and ``n`` as the vendor checks
        them: OpenAI's ranges and wording, TGI's (``top_p`` strictly inside (0, 1))."""
        tgi = self.profile == "hf_tgi"
        ranges = {"temperature": (0, 2), "top_p": (0, 1), "frequency_penalty": (-2, 2),
                  "presence_penalty": (-2, 2)}
        for name, (low, high) in ranges.items():
            value = body.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                if tgi:
                    return tgi_error(422, f"Failed to deserialize the JSON body into the target type: "
                                     f"{name}: invalid type: expected f32")
                return self._invalid(f"Invalid type for '{name}': expected a decimal, but got "
                                     f"{type(value).__name__} instead.", name)
            if tgi and name == "top_p" and not 0 < value < 1:
                return tgi_error(422, "Input validation error: `top_p` must be > 0.0 and < 1.0")
            if tgi and name == "temperature" and value < 0:
                return tgi_error(422, "Input validation error: `temperature` must be strictly positive")
            if value > high:
                return self._invalid(f"Invalid '{name}': decimal above maximum value. Expected a value "
                                     f"<= {high}, but got {value} instead.", name)
            if value < low:
                return self._invalid(f"Invalid '{name}': decimal below minimum value. Expected a value "
                                     f">= {low}, but got {value} instead.", name)
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or (tgi and seed < 0)):
            if tgi:
                return tgi_error(422, "Failed to deserialize the JSON body into the target type: "
                                 "seed: invalid type: expected u64")
            return self._invalid(f"Invalid type for 'seed': expected an integer, but got "
                                 f"{type(seed).__name__} instead.", "seed")
        stop = body.get("stop")
        if stop is not None:
            sequences = [stop] if isinstance(stop, str) else stop
            if not isinstance(sequences, list) or not all(isinstance(x, str) for x in sequences):
                return self._invalid("Invalid type for 'stop': expected a string or an array of "
                                     "strings.", "stop")
            if len(sequences) > 4:
                if tgi:
                    return tgi_error(422, f"Input validation error: `stop` supports up to 4 stop "
                                     f"sequences. Given: {len(sequences)}")
                return self._invalid(f"Invalid 'stop': array too long. Expected an array with maximum "
                                     f"length 4, but got an array with length {len(sequences)} "
                                     f"instead.", "stop")
        n = body.get("n")
        if n is not None and n != 1:
            return self._invalid("Only n=1 is supported by this fake model.", "n")
        return None

    def _check_stream(self, body: dict[str, Any]) -> Reply | None:
        stream, options = body.get("stream"), body.get("stream_options")
        if stream is not None and not isinstance(stream, bool):
            return self._invalid("Invalid type for 'stream': expected a boolean.", "stream")
        if options is None:
            return None
        if stream is not True:
            return self._invalid("The 'stream_options' parameter is only allowed when 'stream' is "
                                 "enabled.", "stream_options")
        if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
            return self._invalid("Invalid type for 'stream_options.include_usage': expected a "
                                 "boolean.", "stream_options.include_usage")
        return None

    def _check_response_format(self, body: dict[str, Any]) -> Reply | None:
        fmt = body.get("response_format")
        if fmt is None:
            return None
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if self.profile == "hf_tgi":
            if kind not in ("json", "json_object", "regex"):
                return tgi_error(422, f"Failed to deserialize the JSON body into the target type: "
                                 f"response_format: unknown variant `{kind}`, expected one of "
                                 f"`json`, `regex`, `json_object`")
            if "value" not in fmt:
                return tgi_error(422, "Failed to deserialize the JSON body into the target type: "
                                 "response_format: missing field `value`")
            if body.get("tools"):
                return tgi_error(422, "Tool error: Grammar and tools are mutually exclusive", "tool_error")
            if self.reject_native_json or "json" in self.unsupported:
                return tgi_error(422, "Input validation error: grammar is not supported", "validation")
            return None
        allowed = ("text", "json_object", "json_schema") + (("grammar",) if self.profile == "fireworks" else ())
        if kind not in allowed:
            return self._invalid(f"Invalid value: '{kind}'. Supported values are: "
                                 f"{', '.join(repr(a) for a in allowed)}.", "response_format.type")
        if (self.reject_native_json or "json" in self.unsupported) and kind != "text":
            if self.profile == "vllm":
                return vllm_error(400, f"response_format of type '{kind}' is not supported by this "
                                  f"model.")
            return openai_error(400, f"response_format of type '{kind}' is not supported by this "
                                f"model.", param="response_format", code="unsupported_parameter")
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                return self._invalid("Missing required parameter: 'response_format.json_schema.schema'.",
                                     "response_format.json_schema")
            if not isinstance(spec.get("name"), str) or not _SCHEMA_NAME.match(spec["name"]):
                return self._invalid("Invalid 'response_format.json_schema.name': string does not "
                                     "match pattern. Expected a string that matches the pattern "
                                     "'^[a-zA-Z0-9_-]+$'.", "response_format.json_schema.name")
        return None

    def _check_tools(self, body: dict[str, Any]) -> Reply | None:
        tools = body.get("tools")
        if tools is None:
            return None
        if not isinstance(tools, list):
            return self._invalid("Invalid type for 'tools': expected an array", "tools")
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if tool.get("type") != "function" or not isinstance(function, dict) \
                    or not _TOOL_NAME.match(str(function.get("name", ""))):
                return self._invalid(f"Invalid 'tools[{i}]': expected a function tool with a "
                                     f"name matching '^[a-zA-Z0-9_-]+$'", f"tools[{i}]")
        return None

    def _check_reasoning(self, body: dict[str, Any]) -> Reply | None:
        effort = body.get("reasoning_effort")
        allowed_efforts = _EFFORTS + (("none",) if self.profile == "fireworks" else ("minimal",))
        if effort is not None and effort not in allowed_efforts:
            return self._invalid(f"Invalid value for 'reasoning_effort': {effort!r}", "reasoning_effort")
        if self.profile == "fireworks" and "thinking" in body:
            thinking = body["thinking"]
            if effort is not None:
                return self._invalid("Only one of 'thinking' and 'reasoning_effort' may be set.", "thinking")
            if not isinstance(thinking, dict) or thinking.get("type") != "enabled" \
                    or not isinstance(thinking.get("budget_tokens"), int) or thinking["budget_tokens"] < 1024:
                return self._invalid("'thinking' must be {\"type\": \"enabled\", \"budget_tokens\": N} "
                                     "with N >= 1024", "thinking")
        reasoning = body.get("reasoning")
        if reasoning is None:
            return None
        if not isinstance(reasoning, dict):
            return self._invalid("Invalid type for 'reasoning': expected an object", "reasoning")
        if self.profile == "together":
            if set(reasoning) - {"enabled"} or not isinstance(reasoning.get("enabled"), bool):
                return self._invalid("'reasoning' accepts only {\"enabled\": true|false}", "reasoning")
        elif "effort" in reasoning and "max_tokens" in reasoning:
            return self._invalid("Only one of 'reasoning.effort' and 'reasoning.max_tokens' may be set.",
                                 "reasoning")
        elif "max_tokens" in reasoning and (not isinstance(reasoning["max_tokens"], int)
                                            or reasoning["max_tokens"] < 1):
            return self._invalid("'reasoning.max_tokens' must be a positive integer", "reasoning.max_tokens")
        elif "effort" in reasoning and reasoning["effort"] not in _EFFORTS + ("minimal",):
            return self._invalid(f"Invalid value for 'reasoning.effort': {reasoning['effort']!r}",
                                 "reasoning.effort")
        return None

    def _check_capabilities(self, body: dict[str, Any]) -> Reply | None:
        """The vendor's refusal of a capability the model lacks (``unsupported``), or None."""
        if not self.unsupported:
            return None
        refuses = CAPABILITY_ERRORS[self.profile]
        image = _image_part(body.get("messages"))
        if "vision" in self.unsupported and image is not None and refuses["vision"] == "refuse":
            if self.profile == "vllm":
                return vllm_error(400, f"{body.get('model')} is not a multimodal model")
            return openai_error(400, "Invalid content type. image_url is only supported by certain "
                                "models.", param=f"messages.[{image[0]}].content.[{image[1]}].type")
        if "tools" in self.unsupported and body.get("tools") and refuses["tools"] == "refuse":
            if self.profile == "vllm":
                return vllm_error(400, '"auto" tool choice requires --enable-auto-tool-choice and '
                                  '--tool-call-parser to be set')
            return self._unsupported_parameter("tools")
        asked = [name for name in _REASONING_FIELDS if name in body]
        if "reasoning" in self.unsupported and asked and refuses["reasoning"] == "refuse":
            return self._unsupported_parameter(asked[0])
        return None

    def _unsupported_parameter(self, name: str) -> Reply:
        return openai_error(400, f"Unsupported parameter: '{name}' is not supported with this model.",
                            param=name, code="unsupported_parameter")

    # -- the answer ------------------------------------------------------------------------------
    def _completion(self, request: RecordedRequest, body: dict[str, Any]) -> dict[str, Any]:
        prompt = count_tokens(body["messages"])
        tools = body.get("tools") if "tools" not in self.unsupported else None
        if self.tool_call is not None and tools:
            if self.tool_call == "first":
                name, arguments = tools[0]["function"]["name"], _minimal_arguments(tools[0])
            else:
                name, arguments = self.tool_call["name"], self.tool_call.get("arguments", {})  # type: ignore[index]
            message: dict[str, Any] = {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": "call_fake_1", "type": "function",
                                "function": {"name": name, "arguments": json.dumps(arguments)}}]}
            finish, completion = "tool_calls", 12
        else:
            text = self.reply(request) if callable(self.reply) else self.reply
            stop = body.get("stop")
            for sequence in [stop] if isinstance(stop, str) else stop or []:
                if sequence and sequence in text:   # the model stops before writing it
                    text = text[:text.index(sequence)]
            message = {"role": "assistant", "content": text}
            finish, completion = "stop", max(1, len(text) // 4)
        completion = min(completion, body.get("max_tokens") or completion)
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion}
        if self.reasoning_reply and "reasoning" not in self.unsupported \
                and any(name in body for name in _REASONING_FIELDS):
            if self.profile != "openai":   # OpenAI returns the count, never the text
                key = "reasoning" if self.profile in ("together", "openrouter") else "reasoning_content"
                message[key] = self.reasoning_reply
            if self.profile not in ("vllm", "hf_tgi"):   # they do not count reasoning tokens
                usage["completion_tokens_details"] = {
                    "reasoning_tokens": max(1, len(self.reasoning_reply) // 4)}
        prefix = "gen-fake" if self.profile == "openrouter" else "chatcmpl-fake"
        return {"id": f"{prefix}-{len(self.requests)}", "object": "chat.completion",
                "created": int(time.time()), "model": body.get("model") or "tgi",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage}


# ==================================================================================================
# Bedrock converse
# ==================================================================================================
INVALID_TOKEN = "The security token included in the request is invalid."
BAD_SIGNATURE = ("The request signature we calculated does not match the signature you provided. "
                 "Check your AWS Secret Access Key and signing method. Consult the service "
                 "documentation for details.")
INVALID_MODEL = "The provided model identifier is invalid."
_AUTH_HEADER = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,"
                          r"\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})$")
_CONVERSE_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<operation>converse|converse-stream)$")
_INFERENCE_KEYS = ("maxTokens", "temperature", "topP", "stopSequences")
REQUEST_ID = "00000000-fake-0000-0000-000000000001"
THROTTLED = "Too many requests, please wait before trying again."
TOO_MANY_TOKENS = "Too many tokens, please wait before trying again."
THINKING_TEMPERATURE = ("The model returned the following errors: `temperature` may only be set to 1 "
                        "when thinking is enabled. Please consult our documentation at "
                        "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                        "#important-considerations-when-using-extended-thinking")
_BLOCK_KINDS = {"text", "image", "document", "video", "toolUse", "toolResult", "guardContent",
                "cachePoint", "reasoningContent"}
DEFAULT_BEDROCK_MODELS = {
    "anthropic.claude-3-haiku-20240307-v1:0": 4096,
    "anthropic.claude-3-7-sonnet-20250219-v1:0": 64000,
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0": 64000,
    "meta.llama3-1-8b-instruct-v1:0": 2048,
}


def bedrock_error(status: int, error_type: str, message: str, *, typed: bool = True,
                  headers: dict[str, str] | None = None) -> Reply:
    """A Bedrock error on the wire: type in ``x-amzn-ErrorType``, body ``{"message": ...}``.

    ``typed=False`` leaves the header out, as some Bedrock replies (throttles and 5xx from the
    front end, seen in replayed traffic) do: botocore then reports the bare status as the code."""
    wire = {"x-amzn-RequestId": "00000000-fake-0000-0000-000000000000", "Content-Type": "application/json"}
    if typed:
        wire["x-amzn-ErrorType"] = f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    return Reply(status, {"message": message}, {**wire, **(headers or {})})


def throttling_error(*, typed: bool = True, retry_after: str | None = None) -> Reply:
    """Bedrock's 429 ``ThrottlingException``."""
    return bedrock_error(429, "ThrottlingException", THROTTLED, typed=typed,
                         headers={"Retry-After": retry_after} if retry_after is not None else None)


def _validation(message: str) -> Reply:
    return bedrock_error(400, "ValidationException", message)


class FakeBedrock(FakeServer):
    """A Bedrock runtime emulator for ``converse``; give its ``.url`` as the client's endpoint.

    ``credentials``: access key id -> secret accepted for SigV4. ``api_keys``: accepted Bedrock
    API keys (bearer). ``models``: model id -> maximum output tokens (None: a few real ids,
    ``DEFAULT_BEDROCK_MODELS``); any other id is Bedrock's "model identifier is invalid".
    ``region``: when set, a signature scoped to another region is refused.
    ``reply`` / ``tool_call`` / ``delay`` as for :class:`FakeOpenAIProvider`.
    ``unsupported``: capabilities every served model lacks, refused with Bedrock's
    ``ValidationException`` texts (:data:`CAPABILITY_ERRORS`). ``reasoning_reply``: a
    ``reasoningContent`` block returned before the answer when reasoning fields are sent.

    ``converse-stream`` answers the same reply as a binary event stream (see
    :mod:`byok_nb.testing.eventstream`), an event every ``stream_delay`` seconds;
    ``stream_exception = (type, payload)`` ends the stream with that exception event after
    ``stream_exception_after`` events. ``errors``: replies served, one per request and in order,
    to the next correctly signed requests (e.g. :func:`throttling_error`).
    """

    def __init__(self, *, credentials: dict[str, str] | None = None,
                 api_keys: Iterable[str] = ("ABSKZmFrZS1iZWRyb2NrLWFwaS1rZXk=",),
                 models: dict[str, int] | None = None, region: str | None = None,
                 reply: str | Callable[[RecordedRequest], str] = DEFAULT_REPLY,
                 tool_call: dict[str, Any] | None = None, delay: float = 0.0,
                 unsupported: Iterable[str] = (), reasoning_reply: str | None = None) -> None:
        super().__init__()
        self.credentials = dict(credentials if credentials is not None
                                else {"AKIAFAKEBEDROCK00001": "fake/secret/key/0123456789abcdefghijklmn"})
        self.api_keys = set(api_keys)
        self.models = dict(DEFAULT_BEDROCK_MODELS if models is None else models)
        self.region = region
        self.reply = reply
        self.tool_call = tool_call
        self.delay = delay
        self.unsupported = _capability_set(unsupported)
        self.reasoning_reply = reasoning_reply
        self.stream_delay = 0.0
        self.stream_exception: tuple[str, dict[str, Any]] | None = None
        self.stream_exception_after = 0
        self.errors: list[Reply] = []

    def handle(self, request: RecordedRequest) -> Reply:
        if self.delay:
            time.sleep(self.delay)
        match = _CONVERSE_PATH.match(urlsplit(request.path).path)
        if request.method != "POST" or match is None:
            return bedrock_error(404, "UnknownOperationException", "")
        auth_problem = self._check_auth(request)
        if auth_problem is not None:
            return auth_problem
        if self.errors:
            return self.errors.pop(0)
        model = unquote(match.group("model"))
        if model not in self.models:
            return _validation(INVALID_MODEL)
        body = request.json
        if not isinstance(body, dict):
            return bedrock_error(400, "SerializationException", "Unable to parse the request body")
        problem = self._check_body(model, body)
        if problem is not None:
            return problem
        response = self._converse_response(request, body)
        if match.group("operation") == "converse-stream":
            return Reply(200, headers={"Content-Type": EVENT_STREAM_TYPE, "x-amzn-RequestId": REQUEST_ID},
                         chunks=self._stream(converse_stream_events(response)))
        return Reply(200, response, {"x-amzn-RequestId": REQUEST_ID})

    def _stream(self, events: list[tuple[str, dict[str, Any]]]) -> Iterable[bytes]:
        for number, (event_type, payload) in enumerate(events):
            if self.stream_exception is not None and number == self.stream_exception_after:
                yield encode_exception(*self.stream_exception)
                return
            if number and self.stream_delay:
                time.sleep(self.stream_delay)
            yield encode_event(event_type, payload)

    # -- authentication --------------------------------------------------------------------------
    def _check_auth(self, request: RecordedRequest) -> Reply | None:
        header = request.headers.get("authorization")
        if not header:
            return bedrock_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        if header.startswith("Bearer "):
            if header[7:] in self.api_keys:
                return None
            return bedrock_error(403, "UnrecognizedClientException", INVALID_TOKEN)
        parsed = _AUTH_HEADER.match(header)
        if parsed is None:
            return bedrock_error(403, "IncompleteSignatureException",
                                 "Authorization header requires 'Credential', 'SignedHeaders' and "
                                 "'Signature' parameters.")
        akid, date, region, service, signed, signature = parsed.groups()
        if akid not in self.credentials:
            return bedrock_error(403, "UnrecognizedClientException", INVALID_TOKEN)
        if service != "bedrock":
            return bedrock_error(403, "InvalidSignatureException",
                                 f"Credential should be scoped to correct service: 'bedrock'.")
        if self.region is not None and region != self.region:
            return bedrock_error(403, "InvalidSignatureException",
                                 f"Credential should be scoped to a valid region. ")
        expected = sigv4_signature(request, akid, self.credentials[akid], region, service,
                                   signed.split(";"))
        if expected is None or not hmac.compare_digest(expected, signature):
            return bedrock_error(403, "InvalidSignatureException", BAD_SIGNATURE)
        return None

    # -- body validation -------------------------------------------------------------------------
    def _check_body(self, model: str, body: dict[str, Any]) -> Reply | None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _validation("A conversation must start with a user message. Try again with a "
                               "conversation that starts with a user message.")
        if messages[0].get("role") != "user":
            return _validation("A conversation must start with a user message. Try again with a "
                               "conversation that starts with a user message.")
        for i, message in enumerate(messages):
            if message.get("role") not in ("user", "assistant"):
                return _validation(f"1 validation error detected: Value at 'messages.{i + 1}.member.role' "
                                   f"failed to satisfy constraint: Member must satisfy enum value set: "
                                   f"[user, assistant]")
            if i and message["role"] == messages[i - 1]["role"]:
                return _validation("A conversation must alternate between user and assistant roles. "
                                   "Make sure the conversation alternates between user and assistant "
                                   "roles and try again.")
            for j, block in enumerate(message.get("content") or []):
                problem = _check_block(block, f"messages.{i}.content.{j}")
                if problem is not None:
                    return problem
        for block in body.get("system") or []:
            if not isinstance(block, dict) or not isinstance(block.get("text"), str):
                return _validation("The system field must be a list of text blocks.")
        limit = self.models[model]
        config_problem = _check_inference_config(body.get("inferenceConfig"))
        if config_problem is not None:
            return config_problem
        max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
        if max_tokens is not None and max_tokens > limit:
            return _validation(f"The maximum tokens you requested exceeds the model limit of {limit}. "
                               f"Try again with a maximum tokens value that is lower than {limit}.")
        tool_problem = _check_tool_config(body.get("toolConfig"))
        if tool_problem is not None:
            return tool_problem
        capability_problem = self._check_capabilities(body)
        if capability_problem is not None:
            return capability_problem
        return self._check_model_fields(model, body, max_tokens)

    def _check_capabilities(self, body: dict[str, Any]) -> Reply | None:
        """Bedrock's refusal of a capability the model lacks (``unsupported``), or None."""
        if "vision" in self.unsupported and any(
                "image" in block for message in body["messages"] for block in message.get("content") or []):
            return _validation("This model doesn't support the image content block that you provided. "
                               "Update the content block and try again.")
        tool_config = body.get("toolConfig")
        if "tools" in self.unsupported and tool_config:
            return _validation("This model doesn't support tool use.")
        if "json" in self.unsupported and "tool" in ((tool_config or {}).get("toolChoice") or {}):
            return _validation("This model doesn't support the toolConfig.toolChoice.tool field. "
                               "Remove toolConfig.toolChoice.tool and try again.")
        asked = _bedrock_reasoning_keys(body)
        if "reasoning" in self.unsupported and asked:
            return _validation(f"The model returned the following errors: Malformed input request: #: "
                               f"extraneous key [{asked[0]}] is not permitted, please reformat your "
                               f"input and try again.")
        return None

    def _check_model_fields(self, model: str, body: dict[str, Any], max_tokens: int | None) -> Reply | None:
        extra = body.get("additionalModelRequestFields") or {}
        thinking = extra.get("thinking")
        if thinking is None or "claude" not in model:
            return None
        temperature = (body.get("inferenceConfig") or {}).get("temperature")
        if temperature is not None and temperature != 1:
            return _validation(THINKING_TEMPERATURE)
        if thinking.get("type") == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or budget < 1024:
                return _validation("The model returned the following errors: thinking.enabled."
                                   "budget_tokens: Input should be greater than or equal to 1024")
            if max_tokens is not None and budget >= max_tokens:
                return _validation("The model returned the following errors: `max_tokens` must be "
                                   "greater than `thinking.budget_tokens`.")
        choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
        if "tool" in choice or "any" in choice:
            return _validation("The model returned the following errors: Thinking may not be "
                               "enabled when tool_choice forces tool use.")
        return None

    # -- the answer ------------------------------------------------------------------------------
    def _converse_response(self, request: RecordedRequest, body: dict[str, Any]) -> dict[str, Any]:
        tool_config = body.get("toolConfig") or {}
        forced = (tool_config.get("toolChoice") or {}).get("tool", {}).get("name")
        text = self.reply(request) if callable(self.reply) else self.reply
        if forced is not None or (self.tool_call is not None and tool_config.get("tools")):
            if forced is not None and (self.tool_call is None or self.tool_call["name"] != forced):
                try:
                    tool_input = json.loads(text)
                except ValueError:
                    tool_input = {"text": text}
                name = forced
            else:
                name, tool_input = self.tool_call["name"], self.tool_call.get("arguments", {})  # type: ignore[index]
            content = [{"toolUse": {"toolUseId": "tooluse_fake_1", "name": name, "input": tool_input}}]
            stop, output_tokens = "tool_use", 12
        else:
            stop = "end_turn"
            for sequence in (body.get("inferenceConfig") or {}).get("stopSequences") or []:
                if sequence and sequence in text:   # the model stops before writing it, as Bedrock's do
                    text, stop = text[:text.index(sequence)], "stop_sequence"
            content = [{"text": text}]
            output_tokens = max(1, len(text) // 4)
        if self.reasoning_reply and "reasoning" not in self.unsupported and _bedrock_reasoning_keys(body):
            content.insert(0, {"reasoningContent": {"reasoningText": {
                "text": self.reasoning_reply, "signature": "fake-reasoning-signature"}}})
        input_tokens = sum(4 + sum(len(b.get("text", "")) // 4 for b in m.get("content", []))
                           for m in body["messages"])
        return {"output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens,
                          "totalTokens": input_tokens + output_tokens},
                "metrics": {"latencyMs": int(self.delay * 1000) + 1}}


def _check_inference_config(config: Any) -> Reply | None:
    """``inferenceConfig``'s members and their ranges, in AWS's validation wording. A member the
    API does not define is refused (stricter than Bedrock may be: it catches a mistranslation)."""
    if config is None:
        return None
    if not isinstance(config, dict):
        return bedrock_error(400, "SerializationException", "Unexpected value type in inferenceConfig")
    for key in config:
        if key not in _INFERENCE_KEYS:
            return _validation(f"Malformed input request: extraneous key [{key}] is not permitted in "
                               f"inferenceConfig, please reformat your input and try again.")
    for key, low, high in (("maxTokens", 1, None), ("temperature", 0, 1), ("topP", 0, 1)):
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return bedrock_error(400, "SerializationException", f"Unexpected value type for inferenceConfig.{key}")
        if value < low:
            return _validation(f"1 validation error detected: Value '{value}' at 'inferenceConfig.{key}' "
                               f"failed to satisfy constraint: Member must have value greater than or "
                               f"equal to {low}")
        if high is not None and value > high:
            return _validation(f"1 validation error detected: Value '{value}' at 'inferenceConfig.{key}' "
                               f"failed to satisfy constraint: Member must have value less than or "
                               f"equal to {high}")
    stops = config.get("stopSequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(x, str) for x in stops)):
        return bedrock_error(400, "SerializationException", "Unexpected value type for inferenceConfig.stopSequences")
    return None


def _bedrock_reasoning_keys(body: dict[str, Any]) -> list[str]:
    """The model-native reasoning fields of a converse body (Claude, Nova, gpt-oss forms)."""
    extra = body.get("additionalModelRequestFields") or {}
    return [key for key in ("thinking", "reasoningConfig", "reasoning_effort", "output_config")
            if key in extra]


def _check_block(block: Any, where: str) -> Reply | None:
    if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _BLOCK_KINDS:
        return _validation(f"The content block at {where} must have exactly one member of "
                           f"{sorted(_BLOCK_KINDS)}.")
    kind, value = next(iter(block.items()))
    if kind == "text" and (not isinstance(value, str) or not value.strip()):
        return _validation(f"The text field in the ContentBlock object at {where} is blank. Add text "
                           f"to the text field, and try again.")
    if kind == "image":
        if value.get("format") not in ("png", "jpeg", "gif", "webp"):
            return _validation(f"The image format at {where} must be png, jpeg, gif or webp.")
        try:
            base64.b64decode((value.get("source") or {}).get("bytes", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            return bedrock_error(400, "SerializationException", "Invalid base64 in image bytes")
    if kind == "toolUse" and not {"toolUseId", "name", "input"} <= set(value):
        return _validation(f"The toolUse block at {where} needs toolUseId, name and input.")
    return None


def _check_tool_config(config: Any) -> Reply | None:
    if config is None:
        return None
    tools = config.get("tools")
    if not isinstance(tools, list) or not tools:
        return _validation("The toolConfig field must be defined when using toolUse and toolResult "
                           "content blocks.")
    names = set()
    for tool in tools:
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if not isinstance(spec, dict) or not _TOOL_NAME.match(str(spec.get("name", ""))) \
                or not isinstance((spec.get("inputSchema") or {}).get("json"), dict):
            return _validation("Each tool needs a toolSpec with a name matching [a-zA-Z0-9_-]+ and "
                               "inputSchema.json.")
        names.add(spec["name"])
    choice = config.get("toolChoice")
    if choice is not None:
        if not isinstance(choice, dict) or len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool"):
            return _validation("toolChoice must be one of auto, any or tool.")
        if "tool" in choice and choice["tool"].get("name") not in names:
            return _validation(f"The tool {choice['tool'].get('name')!r} named in toolChoice is not "
                               f"in the tools list.")
    return None


def sigv4_signature(request: RecordedRequest, access_key: str, secret_key: str, region: str,
                    service: str, signed_headers: list[str]) -> str | None:
    """The SigV4 signature the request should carry, computed with botocore's own ``SigV4Auth``
    over exactly the headers the client says it signed; None when a signed header is missing."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {}
    for name in signed_headers:
        if name not in request.headers:
            return None
        headers[name] = request.headers[name]
    timestamp = request.headers.get("x-amz-date")
    if not timestamp:
        return None
    try:
        signed_at = dt.datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None
    if abs((dt.datetime.now(dt.timezone.utc) - signed_at).total_seconds()) > 15 * 60:
        return None  # AWS refuses signatures more than 15 minutes off
    aws_request = AWSRequest(method=request.method, url=f"http://{request.headers['host']}{request.path}",
                             data=request.raw, headers=headers)
    aws_request.context["timestamp"] = timestamp
    auth = SigV4Auth(Credentials(access_key, secret_key), service, region)
    canonical = auth.canonical_request(aws_request)
    return auth.signature(auth.string_to_sign(aws_request, canonical), aws_request)
