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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# True while prepare() runs a client call whose request must not be sent.
_prepare_only: contextvars.ContextVar[bool] = contextvars.ContextVar("byok_nb_bedrock_prepare_only",
                                                                     default=False)
# How the sender will put the URL on the wire, applied before signing (see sign_as_sent).
_wire_url: contextvars.ContextVar[Callable[[str], str] | None] = contextvars.ContextVar(
    "byok_nb_bedrock_wire_url", default=None)


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


def sign_as_sent(request: Any, **_: Any) -> None:
    """``before-sign`` handler: rewrite the URL to the form the sender will put on the wire, so
    the SigV4 signature covers the path the server receives (see :func:`aiohttp_wire_url`)."""
    rewrite = _wire_url.get()
    if rewrite is not None:
        request.url = rewrite(request.url)


def aiohttp_wire_url(url: str) -> str:
    """``url`` as the async client's aiohttp transport sends it.

    aiohttp parses the URL it is given with yarl, which decodes percent-escapes of characters a
    path may carry as they are: botocore's ``/model/anthropic.claude-3-haiku-20240307-v1%3A0/...``
    goes out as ``...-v1:0/...``. Signed for the encoded form, the request would then fail AWS's
    signature check (the server canonicalizes the path it received); signed for this form, it
    passes. ``%2F`` (a slash inside an ARN model id) stays encoded."""
    import yarl

    return str(yarl.URL(url))


def prepare(client: Any, operation: str, params: dict[str, Any], *,
            wire_url: Callable[[str], str] | None = None) -> PreparedCall:
    """The signed request ``client.<operation>(**params)`` would send (no I/O); ``wire_url``
    rewrites the URL before signing to what the sender will send.

    botocore's own failures (``ParamValidationError`` ...) propagate as they would from a call.
    """
    token = _prepare_only.set(True)
    url_token = _wire_url.set(wire_url)
    call: PreparedCall | None = None
    try:
        getattr(client, operation)(**params)
    except _Prepared as done:
        call = done.call
    finally:
        _prepare_only.reset(token)
        _wire_url.reset(url_token)
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
