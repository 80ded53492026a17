"""Bedrock calls that botocore prepares and parses but byok_nb sends itself (streams, async).

botocore's client serializes and validates a call, signs it (SigV4, or the bearer header of an
API-key client) and then emits ``before-send``. A handler on every client (registered by
``bedrock.build_client``) raises :class:`_Prepared` there when :func:`prepare` asked for it, so
the signed request comes out of botocore unsent: there is one implementation of serialization and
signing (botocore's), and the caller sends the bytes through the hub's sync or async ``httpx``
client. The reply is parsed with botocore's parser for the service's protocol against the
operation's output shape, as the client would parse it.
"""
from __future__ import annotations

import contextvars
import functools
from dataclasses import dataclass
from typing import Any

# True while prepare() runs a client call whose request must not be sent.
_prepare_only: contextvars.ContextVar[bool] = contextvars.ContextVar("byok_nb_bedrock_prepare_only",
                                                                     default=False)


@dataclass(frozen=True, repr=False)
class PreparedCall:
    """One signed request. ``headers`` hold the signature or the bearer key: never shown."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def __repr__(self) -> str:
        return f"PreparedCall({self.method} {self.url})"


class _Prepared(Exception):
    """Carries the signed request out of botocore (raised from ``before-send``).

    Its text is constant: botocore logs it at DEBUG with its traceback."""

    def __init__(self, call: PreparedCall) -> None:
        super().__init__("request prepared, not sent")
        self.call = call


def capture_handler(request: Any, **_: Any) -> None:
    """``before-send`` handler: when :func:`prepare` is running, stop with the signed request."""
    if not _prepare_only.get():
        return None
    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, str):
        body = body.encode()
    headers = {name: value.decode() if isinstance(value, bytes) else str(value)
               for name, value in request.headers.items()}
    raise _Prepared(PreparedCall(request.method, request.url, headers, body or b""))


def prepare(client: Any, operation: str, params: dict[str, Any]) -> PreparedCall:
    """The signed request ``client.<operation>(**params)`` would send (no I/O). The sender must
    put the URL on the wire as it is (``%3A`` in a model id stays encoded): it was signed so.

    botocore's own failures (``ParamValidationError`` ...) propagate as they would from a call.
    """
    token = _prepare_only.set(True)
    call: PreparedCall | None = None
    try:
        getattr(client, operation)(**params)
    except _Prepared as done:
        call = done.call
    finally:
        _prepare_only.reset(token)
    if call is None:   # a client without capture_handler sent the call: a wiring bug, not a reply
        raise RuntimeError(f"the Bedrock client sent {operation} instead of preparing it")
    return call


@functools.lru_cache(maxsize=4)
def _parser(protocol: str) -> Any:
    from botocore.parsers import create_parser

    return create_parser(protocol)


def parse_reply(client: Any, operation: str, status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """botocore's parse of a reply to ``operation``: the result dict on 2xx, ``{"Error": {"Code",
    "Message"}, "ResponseMetadata": {...}}`` otherwise (as ``ClientError.response`` holds)."""
    model = client.meta.service_model
    shape = model.operation_model(operation_name(client, operation)).output_shape
    lowered = {name.lower(): value for name, value in headers.items()}
    return _parser(model.protocol).parse({"status_code": status, "headers": lowered, "body": body,
                                          "context": {}}, shape)


def event_shape(client: Any, operation: str) -> Any:
    """The event-stream union shape of a streaming operation's output (``stream`` member)."""
    shape = client.meta.service_model.operation_model(operation_name(client, operation)).output_shape
    return shape.members[shape.event_stream_name or "stream"]


def operation_name(client: Any, method: str) -> str:
    """``converse_stream`` -> ``ConverseStream`` (the model's name of a client method)."""
    return client.meta.method_to_api_mapping[method]
