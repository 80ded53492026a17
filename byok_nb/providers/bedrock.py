"""Amazon Bedrock through boto3's ``bedrock-runtime`` ``converse``.

Credentials are per client, never per process:

* **IAM**: the access key pair is passed to the client, which signs with SigV4 (``v4`` named
  explicitly, so a stray ``AWS_BEARER_TOKEN_BEDROCK`` in the environment cannot switch it to
  bearer auth).
* **API key**: the client is unsigned and a ``before-sign`` handler on *that client only* adds
  ``Authorization: Bearer <key>``. ``AWS_BEARER_TOKEN_BEDROCK`` is never set: botocore reads it
  process-wide, which would hand one org's key to every other caller.

Clients come from a private botocore session that reads no environment variables, config files
or credential files, so ambient AWS settings of the host cannot leak into a user's model.
botocore's DEBUG loggers print prepared requests (headers included); a logging filter scrubs
every live Bedrock secret and bearer-shaped token out of them.

Native JSON is a forced tool whose ``inputSchema`` is the schema; the tool's input, JSON-encoded,
is the reply text. boto3/botocore are imported on first use only.

botocore builds, signs and parses; the bytes travel through the hub's ``httpx`` client (a
``before-send`` handler), so a Bedrock call has what every other call has: the egress check at
connect time, one deadline for the whole call (botocore's own timeouts are per socket read, so a
server dripping a byte a second would hold a call forever) and a cap on the reply size.

Streams (``converse-stream``) and async calls (``achat``, ``astream``) take the same request
from botocore, serialized and signed but not sent (:mod:`.bedrock_wire`); the hub's sync or async
``httpx`` client sends it, and botocore's parsers read the reply — the binary event stream with
botocore's ``eventstream`` decoder (:mod:`.bedrock_stream`). OpenAI parameters are translated or
refused in :mod:`.bedrock_params`.
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from ..core.clean_errors import clean_failures, forget_secrets
from ..core.errors import InvalidRequest, ProviderError, RegistryError
from .base import ChatRequest, ChatResult, StreamChunk, Target
from .bedrock_params import inference_config, json_output
from .bedrock_stream import EventDecoder, StreamTranslator, finish_reason
from .bedrock_wire import (
    PreparedCall,
    capture_handler,
    event_shape,
    parse_reply,
    prepare,
)
from .egress import EgressPolicy
from .http_streams import (
    aexchange,
    aopen_stream,
    aread_error_body,
    open_stream,
    read_error_body,
)
from .messages import normalize_messages, parse_data_url
from .openai_compat import schema_name
from .reasoning import reasoning_budget, reasoning_effort
from .retry_after import retry_after_seconds
from .transport import (
    MAX_JSON_DEPTH,
    MAX_SHOWN_CHARS,
    SHAPE_ERRORS,
    ScrubbingLogFilter,
    _aiohttp_kind,
    _is_number,
    _reason,
    clean_error,
    loads_bounded,
    quoted,
    scrubbed_result,
    shape_problem,
    shorten,
    shown,
)

LABEL = "Bedrock"
ENDPOINT_ENV = "BYOK_NB_BEDROCK_ENDPOINT_URL"
SIGNING_SERVICE = "bedrock"
# botocore's own region rule (botocore.utils.validate_region_name).
_REGION = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?$")
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg",
                  "image/gif": "gif", "image/webp": "webp"}
JSON_TOOL_DESCRIPTION = "Return the response as JSON matching this schema."
EVENT_STREAM_TYPE = "application/vnd.amazon.eventstream"
DEFAULT_TIMEOUT = 30.0   # an adapter built without a timeout (the hub always gives one)


def validate_aws_region(region: str | None) -> str:
    """The region, stripped; ``InvalidRequest`` naming it when it is missing or malformed."""
    value = (region or "").strip()
    if not value:
        raise InvalidRequest("AWS Region is required for Bedrock models")
    if not _REGION.fullmatch(value):   # fullmatch: "$" alone lets a trailing newline through
        raise InvalidRequest(f"AWS Region {value!r} is malformed: expected a region name "
                             f"such as 'us-east-1'")
    return value


def default_endpoint_url(region: str) -> str:
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def endpoint_override(environ: dict[str, str] | None = None) -> str | None:
    """``BYOK_NB_BEDROCK_ENDPOINT_URL``, or None."""
    value = (os.environ if environ is None else environ).get(ENDPOINT_ENV, "").strip()
    return value or None


# -- log scrubbing ---------------------------------------------------------------------------------
class _LiveSecrets:
    """Secrets of the Bedrock clients alive in this process (counted: hubs may share a key)."""

    def __init__(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def add(self, values: list[str]) -> None:
        with self._lock:
            self._counts.update(v for v in values if v)

    def remove(self, values: list[str]) -> None:
        with self._lock:
            self._counts.subtract(v for v in values if v)
            for value in [v for v, n in self._counts.items() if n <= 0]:
                del self._counts[value]

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self._counts)


LIVE_SECRETS = _LiveSecrets()


_SCRUB_FILTER = ScrubbingLogFilter(LIVE_SECRETS.snapshot)   # every live Bedrock client's secrets
_LOGGER_PREFIXES = ("botocore", "boto3", "urllib3")
_filtered_loggers: set[str] = set()
_loggers_seen = 0   # size of the logger registry at the last pass: skip the walk when unchanged


def install_log_scrubbing() -> None:
    """Attach the scrubbing filter to every botocore/urllib3 logger that exists.

    A filter on a logger only sees records logged on that very logger, not its children, so each
    one gets it; called again before calls because botocore creates loggers as it imports.
    """
    global _loggers_seen
    registry = logging.root.manager.loggerDict
    if len(registry) == _loggers_seen:
        return
    _loggers_seen = len(registry)
    names = [name for name in list(registry)
             if name.split(".", 1)[0] in _LOGGER_PREFIXES and name not in _filtered_loggers]
    for name in names + [p for p in _LOGGER_PREFIXES if p not in _filtered_loggers]:
        logger = logging.getLogger(name)
        if _SCRUB_FILTER not in logger.filters:
            logger.addFilter(_SCRUB_FILTER)
        _filtered_loggers.add(name)


# -- clients ---------------------------------------------------------------------------------------
_session_lock = threading.Lock()
_session: Any = None


class _NoTokenProvider:
    """Stands in for botocore's token chain, which would read SSO caches and env tokens."""

    def load_token(self, **kwargs: Any) -> None:
        return None


def _isolated_session() -> Any:
    """A botocore session that reads no env vars, config or credential files (call under lock)."""
    global _session
    if _session is None:
        import botocore.session

        isolated = {name: (None, None, default, convert)
                    for name, (_cfg, _env, default, convert)
                    in botocore.session.Session.SESSION_VARIABLES.items()}
        isolated["config_file"] = (None, None, os.devnull, None)
        isolated["credentials_file"] = (None, None, os.devnull, None)
        # Also ignore AWS_ENDPOINT_URL*: the endpoint is ours or the operator's override (P-9).
        isolated["ignore_configured_endpoint_urls"] = (None, None, True, None)
        session = botocore.session.Session(session_vars=isolated)
        session.register_component("token_provider", _NoTokenProvider())
        _session = session
    return _session


def _fingerprint(*values: str | None) -> str:
    digest = hashlib.sha256()
    for value in values:
        digest.update((value or "").encode() + b"\0")
    return digest.hexdigest()


class BedrockClientCache:
    """botocore clients by (region, endpoint, auth, credentials), least recently used evicted.

    Building a client costs milliseconds, so it is kept; the key holds a hash of the secret, not
    the secret. An evicted client's secrets leave the log-scrubbing set.
    """

    def __init__(self, *, timeout: float, max_clients: int = 64,
                 http_client: Callable[[], Any] | None = None) -> None:
        self.timeout = timeout
        self.max_clients = max_clients
        self.http_client = http_client
        self._clients: collections.OrderedDict[str, tuple[Any, list[str]]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, target: Target, endpoint_url: str | None) -> Any:
        key = _fingerprint(target.aws_region, endpoint_url, auth_method(target),
                           target.aws_access_key_id, *target.secrets())
        with self._lock:
            if key in self._clients:
                self._clients.move_to_end(key)
                return self._clients[key][0]
        client = build_client(target, endpoint_url=endpoint_url, timeout=self.timeout,
                              http_client=self.http_client)
        with self._lock:
            if key in self._clients:  # another thread built it meanwhile: keep one
                _close_client(client)
                return self._clients[key][0]
            self._clients[key] = (client, target.secrets())
            LIVE_SECRETS.add(target.secrets())
            while len(self._clients) > self.max_clients:
                _, (old, old_secrets) = self._clients.popitem(last=False)
                _close_client(old)
                LIVE_SECRETS.remove(old_secrets)
        return client

    def close(self) -> None:
        with self._lock:
            for client, secrets in self._clients.values():
                _close_client(client)
                LIVE_SECRETS.remove(secrets)
            self._clients.clear()


def _close_client(client: Any) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        close()


def auth_method(target: Target) -> str:
    return (target.auth_method or "iam").strip().lower()


def build_client(target: Target, *, endpoint_url: str | None, timeout: float,
                 http_client: Callable[[], Any] | None = None) -> Any:
    """A ``bedrock-runtime`` client for ``target`` alone (see module doc for the auth rules).

    With ``http_client`` (a getter of the hub's ``httpx.Client``) requests are sent through it,
    bounded as :func:`~byok_nb.providers.transport.exchange` says, instead of botocore's urllib3.
    """
    import botocore
    import botocore.config
    import botocore.exceptions

    region = (target.aws_region or "").strip()
    method = auth_method(target)
    credentials: dict[str, str] = {}
    if method == "api_key":
        if target.api_key is None or not target.api_key.get_secret_value():
            raise _config_error("Bedrock API key mode needs a Bedrock API key.")
        signature_version: Any = botocore.UNSIGNED
    elif method == "iam":
        if not target.aws_access_key_id or target.aws_secret_access_key is None:
            raise _config_error("Bedrock IAM mode needs an Access Key ID and a Secret Access Key.")
        credentials = {"aws_access_key_id": target.aws_access_key_id,
                       "aws_secret_access_key": target.aws_secret_access_key.get_secret_value()}
        signature_version = "v4"
    else:
        raise _config_error(f"Unknown Bedrock authentication method {target.auth_method!r} "
                            f"(expected 'iam' or 'api_key').")
    config = botocore.config.Config(
        region_name=region or None,
        signature_version=signature_version,
        retries={"total_max_attempts": 1, "mode": "standard"},  # fail fast; the caller decides
        connect_timeout=timeout, read_timeout=timeout,
        proxies={},  # no ambient proxy: the egress check must see the real destination
        user_agent_extra="byok_nb",
    )
    install_log_scrubbing()
    try:
        with _session_lock:  # botocore sessions are not thread-safe
            client = _isolated_session().create_client(
                "bedrock-runtime", region_name=region or None, endpoint_url=endpoint_url,
                config=config, **credentials)
    except botocore.exceptions.InvalidRegionError:
        raise _config_error(f"AWS region {region!r} is malformed: expected a region name such as "
                            f"'us-east-1'.") from None
    except botocore.exceptions.NoRegionError:
        raise _config_error("Bedrock needs an AWS region.") from None
    except ValueError as exc:  # botocore refuses a malformed endpoint URL this way
        raise _config_error(f"Bedrock endpoint URL is invalid: {exc}") from None
    if method == "api_key":
        bearer = f"Bearer {target.api_key.get_secret_value()}"  # type: ignore[union-attr]

        def add_bearer(request: Any, **_: Any) -> None:
            request.headers["Authorization"] = bearer

        client.meta.events.register("before-sign.bedrock-runtime.*", add_bearer)
    # First: when a call is only being prepared (streams, async), it stops here, signed and unsent.
    client.meta.events.register("before-send.bedrock-runtime.*", capture_handler)
    if http_client is not None:
        client.meta.events.register("before-send.bedrock-runtime.*",
                                    _httpx_sender(http_client, timeout))
    install_log_scrubbing()
    return client


def _config_error(message: str) -> ProviderError:
    """A model whose settings cannot make a call (502, as before; asking again will not help)."""
    return clean_error(message, (), status_code=502, provider=LABEL, transient=False)


class _Body:
    """The ``raw`` of a botocore ``AWSResponse``: a body already read (and size-checked)."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Any:
        yield self._content


def _httpx_sender(http_client: Callable[[], Any], timeout: float) -> Callable[..., Any]:
    """A ``before-send`` handler sending botocore's prepared (signed) request through httpx.

    Transport failures leave it as ``httpx`` errors (botocore re-raises them from ``converse``,
    where :meth:`BedrockAdapter.chat` words them); an oversized reply is a ``ProviderError``.
    """
    from botocore.awsrequest import AWSResponse

    from .transport import exchange

    def send(request: Any, **_: Any) -> Any:
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode()
        headers = {name: value.decode() if isinstance(value, bytes) else str(value)
                   for name, value in request.headers.items()}
        reply = exchange(http_client(), request.method, request.url, headers=headers,
                         body=body or b"", label=LABEL, timeout=timeout)
        return AWSResponse(request.url, reply.status, dict(reply.headers.items()),
                           _Body(_parsable(reply.status, reply.content)))

    return send


def _parsable(status: int, content: bytes) -> bytes:
    """``content``, unless it is JSON nested too deeply for botocore's parser (which recurses):
    then a 2xx is refused here, and an error reply's body is replaced by a note, so botocore still
    reports the provider's status and error type."""
    if content.count(b"[") + content.count(b"{") <= MAX_JSON_DEPTH:
        return content     # cannot be nested deeper: skip the second parse
    try:
        loads_bounded(content)
    except ValueError as exc:
        deep = "too deeply" in str(exc)
    else:
        deep = False
    if not deep:
        return content
    if status < 400:
        raise clean_error("Bedrock returned a malformed reply: JSON nested too deeply", (),
                          status_code=502, provider=LABEL, transient=False)
    return json.dumps({"message": "(the error body is JSON nested too deeply to read)"}).encode()


# -- request translation ---------------------------------------------------------------------------
def converse_messages(messages: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(system blocks, converse messages) from OpenAI-shape messages.

    Consecutive turns of one role are merged (converse wants alternating roles); OpenAI ``tool``
    results become ``toolResult`` blocks in a user turn.
    """
    system: list[dict] = []
    turns: list[dict] = []

    def add(role: str, blocks: list[dict]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in normalize_messages(messages):
        role = message["role"]
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(b for b in _content_blocks(content) if "text" in b)
        elif role == "tool":
            add("user", [{"toolResult": {"toolUseId": message.get("tool_call_id") or "",
                                         "content": [{"text": _plain_text(content)}]}}])
        elif role in ("user", "assistant"):
            blocks = _content_blocks(content)
            for call in message.get("tool_calls") or []:
                blocks.append({"toolUse": {"toolUseId": call.get("id") or "",
                                           "name": call["function"]["name"],
                                           "input": _json_arguments(call["function"].get("arguments"))}})
            add(role, blocks)
        else:
            raise InvalidRequest(f"unsupported message role {role!r} for Bedrock")
    return system, turns


def _content_blocks(content: Any) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            blocks.append({"text": part["text"]})
        elif kind == "image_url":
            mime, data = parse_data_url(part["image_url"]["url"])
            if mime not in _IMAGE_FORMATS:
                raise InvalidRequest(f"Bedrock accepts png, jpeg, gif or webp images, not {mime}")
            blocks.append({"image": {"format": _IMAGE_FORMATS[mime], "source": {"bytes": data}}})
    return blocks


def _plain_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _json_arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments) if arguments else {}
        except ValueError:
            raise InvalidRequest("tool call arguments must be a JSON string") from None
    return arguments if arguments is not None else {}


def tool_config(tools: list[dict[str, Any]], tool_choice: Any, json_tool: str | None,
                schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """``toolConfig`` from OpenAI function tools, plus the forced JSON tool for native JSON."""
    specs = []
    for tool in tools:
        function = tool.get("function", tool)
        spec = {"name": function["name"],
                "inputSchema": {"json": function.get("parameters") or {"type": "object", "properties": {}}}}
        if function.get("description"):
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    if json_tool is not None:
        specs.append({"toolSpec": {"name": json_tool, "description": JSON_TOOL_DESCRIPTION,
                                   "inputSchema": {"json": schema}}})
    if not specs:
        return None
    config: dict[str, Any] = {"tools": specs}
    if json_tool is not None:
        # Alone, the JSON tool is forced; beside the user's tools the model must call one of them.
        config["toolChoice"] = {"tool": {"name": json_tool}} if not tools else {"any": {}}
    elif tool_choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(tool_choice, dict) and tool_choice.get("function", {}).get("name"):
        config["toolChoice"] = {"tool": {"name": tool_choice["function"]["name"]}}
    elif tool_choice in ("auto", "none", None):
        config["toolChoice"] = {"auto": {}}
    return config


_CLAUDE_VERSION = re.compile(r"claude-(?:[a-z]+-)?(\d+)(?:[-.](\d))?(?!\d)")


def model_family(model_id: str) -> tuple[str, tuple[int, int] | None]:
    """(family, version) of a Bedrock model id, inference-profile id or ARN.

    Families: ``claude``, ``nova``, ``gpt-oss``, or ``other``. Version is Claude's (major, minor).
    """
    name = model_id.lower().rsplit("/", 1)[-1]
    if "claude" in name:
        match = _CLAUDE_VERSION.search(name)
        version = (int(match.group(1)), int(match.group(2) or 0)) if match else None
        return "claude", version
    if "nova" in name:
        return "nova", None
    if "gpt-oss" in name:
        return "gpt-oss", None
    return "other", None


def reasoning_fields(model_id: str, reasoning: dict[str, Any], max_tokens: int) -> tuple[dict, list[str]]:
    """``additionalModelRequestFields`` for a canonical reasoning setting, by model family."""
    family, version = model_family(model_id)
    warnings: list[str] = []

    def as_effort(name: str) -> str:
        effort = reasoning_effort(reasoning)
        if "effort" not in reasoning:
            warnings.append(f"{name} takes a reasoning effort, not a token budget: the "
                            f"{reasoning['max_tokens']}-token budget was sent as effort '{effort}'.")
        return effort

    if family == "claude" and version is not None and version >= (4, 6):
        # Claude 4.6+ reason adaptively; 4.7+ refuse a fixed budget.
        return {"thinking": {"type": "adaptive"},
                "output_config": {"effort": as_effort("Claude 4.6+")}}, warnings
    if family == "nova":
        return {"reasoningConfig": {"type": "enabled",
                                    "maxReasoningEffort": as_effort("Nova")}}, warnings
    if family == "gpt-oss":
        return {"reasoning_effort": as_effort("gpt-oss")}, warnings
    if family == "other" and "effort" in reasoning:
        # No documented family rule: the OpenAI-style name most open-weight models take.
        return {"reasoning_effort": reasoning["effort"]}, warnings
    # Claude 3.7–4.5 and the table's general rule: a thinking budget.
    budget = reasoning_budget(reasoning, max_tokens)
    if "max_tokens" not in reasoning:
        warnings.append(f"This model takes a thinking budget, not an effort: effort "
                        f"'{reasoning['effort']}' was sent as {budget} tokens.")
    return {"thinking": {"type": "enabled", "budget_tokens": budget}}, warnings


# -- the adapter -----------------------------------------------------------------------------------
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
        return _guarded(self._stream(call, client, json_tool))

    @clean_failures
    def astream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """:meth:`stream` on the hub's async client (``aclose()`` closes the reply)."""
        params, json_tool, _ = self.build_params(request)
        call, client = self._prepare(CONVERSE_STREAM, params)
        return _aguarded(self._astream(call, client, json_tool))

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


def _guarded(chunks: Iterator[StreamChunk]) -> Iterator[StreamChunk]:
    """``chunks``, with every failure leaving it cut from the frames that held the signed request
    (see :mod:`byok_nb.core.clean_errors`); ``close()`` reaches the inner generator."""
    try:
        yield from chunks
    except BaseException as exc:
        forget_secrets(exc)
        raise


async def _aguarded(chunks: AsyncIterator[StreamChunk]) -> AsyncIterator[StreamChunk]:
    """:func:`_guarded` for an async generator; ``aclose()`` closes the inner one (and its reply)."""
    try:
        async for chunk in chunks:
            yield chunk
    except BaseException as exc:
        forget_secrets(exc)
        raise
    finally:
        await chunks.aclose()   # type: ignore[attr-defined]


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
