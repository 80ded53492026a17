"""How a failure becomes an HTTP answer in OpenAI's error shape ``{"error": {message, type, code}}``.

The mapping clients rely on (the OpenAI SDK and LiteLLM pick their exception class by status):
bad input 400; a missing, unknown, revoked or expired token 401; a role the token's user lacks 403;
an unknown model 404 ``model_not_found``; the provider still rate-limiting after the retries 429;
the call's deadline passed 504; any other provider failure 502 ``upstream_error``, the provider's
own status and (scrubbed) message inside. A provider's 401 or 403 is never passed on as such: it
is about the key the registry holds, and a client would read it as "your token is bad".
"""
from __future__ import annotations

import logging
from typing import Any

from ..core.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ProviderError,
    RegistryError,
    StoreUnavailable,
    Unauthorized,
)
from ..core.secrets import scrub

__all__ = ["error_answer"]

log = logging.getLogger("byok_nb.gateway")


def _body(message: str, type_: str, code: str | None, param: str | None = None,
          **extra: Any) -> dict[str, Any]:
    error = {"message": scrub(message), "type": type_, "code": code, "param": param}
    error.update(extra)
    return {"error": error}


def error_answer(exc: BaseException, *, deadline_passed: bool = False
                 ) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    """(status, JSON body, extra headers) for ``exc``. ``deadline_passed``: the call failed once
    its time limit was up (a provider that never answered: the transport's timeout is a 502
    without a status, but for the client it is the deadline). Every message is scrubbed once more
    here: the last line of defence before bytes leave the process."""
    if isinstance(exc, Unauthorized):
        # OpenAI's own wording for a bad key: LiteLLM maps an "invalid_request_error" to its
        # BadRequestError unless the message says "Incorrect API key provided" (checked against
        # LiteLLM 1.106), so without it a LiteLLM caller would not see an authentication error.
        return 401, _body(f"Incorrect API key provided: {exc.message}", "invalid_request_error",
                          "invalid_api_key"), []
    if isinstance(exc, Forbidden):
        return 403, _body(exc.message, "permission_error", "forbidden"), []
    if isinstance(exc, NotFound):
        return 404, _body(exc.message, "invalid_request_error", "model_not_found", "model"), []
    if isinstance(exc, InvalidRequest):
        if exc.status_code == 413:   # a body over the limit
            return 413, _body(exc.message, "invalid_request_error", "request_too_large"), []
        return 400, _body(exc.message, "invalid_request_error", "invalid_request",
                          getattr(exc, "field", None)), []
    if isinstance(exc, ProviderError):
        return _provider_answer(exc, deadline_passed)
    if isinstance(exc, StoreUnavailable):
        return 503, _body(exc.message, "service_unavailable", "store_unavailable"), []
    if isinstance(exc, Conflict):
        return 409, _body(exc.message, "invalid_request_error", "conflict"), []
    if isinstance(exc, RegistryError):
        status = exc.status_code if 400 <= exc.status_code < 600 else 500
        return status, _body(exc.message, "invalid_request_error" if status < 500 else "server_error",
                             None), []
    # A bug of ours: the client learns nothing of our internals; the log gets the class and a
    # scrubbed message (never a traceback with locals).
    log.error("gateway request failed: %s: %s", type(exc).__name__, scrub(str(exc))[:500])
    return 500, _body("the gateway failed to handle the request", "server_error", "internal_error"), []


def _provider_answer(exc: ProviderError, deadline_passed: bool
                     ) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    status = exc.status_code
    upstream = {"status": status, "provider": exc.provider, "message": scrub(exc.provider_message or "")}
    if status == 429:
        headers = []
        if exc.retry_after is not None:
            headers.append((b"retry-after", str(max(1, round(exc.retry_after))).encode()))
        return 429, _body(exc.message, "rate_limit_error", "rate_limit_exceeded", upstream=upstream), headers
    if (status == 504 and not exc.transient) or (deadline_passed and exc.transient and status in (502, 504)):
        return 504, _body(exc.message, "timeout", "timeout", upstream=upstream), []
    return 502, _body(exc.message, "upstream_error", "upstream_error", upstream=upstream), []
