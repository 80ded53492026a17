"""Amazon Bedrock's clients and request translation; the adapter
that calls ``converse`` / ``converse-stream`` with them is :mod:`.bedrock_adapter`.

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

Streams and async calls take the same request from botocore, serialized and signed but not sent
(:mod:`.bedrock_wire`, whose ``before-send`` handler every client here carries).
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any

from ..core.errors import InvalidRequest, ProviderError
from .base import Target
from .bedrock_wire import capture_handler
from .messages import normalize_messages, parse_data_url
from .reasoning import reasoning_budget, reasoning_effort
from .transport import (
    MAX_JSON_DEPTH,
    ScrubbingLogFilter,
    clean_error,
    loads_bounded,
)

LABEL = "Bedrock"
ENDPOINT_ENV = "BYOK_NB_BEDROCK_ENDPOINT_URL"
SIGNING_SERVICE = "bedrock"
# botocore's own region rule (botocore.utils.validate_region_name).
_REGION = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?$")
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg",
                  "image/gif": "gif", "image/webp": "webp"}
JSON_TOOL_DESCRIPTION = "Return the response as JSON matching this schema."


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
