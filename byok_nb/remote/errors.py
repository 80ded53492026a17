"""Errors across the wire: a ``RegistryError`` leaves the service as JSON (class name, status,
message and the class's own fields) and is raised again in the notebook as the same class.

Anything else that fails in the service is an internal error: the caller gets a 500 with a
generic message (the service logs what happened), never the exception's text, which may hold
whatever the failing code held.
"""
from __future__ import annotations

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

__all__ = ["INTERNAL_MESSAGE", "error_from_payload", "error_payload"]

_CLASSES: dict[str, type[RegistryError]] = {cls.__name__: cls for cls in (
    RegistryError, InvalidRequest, Forbidden, NotFound, Unauthorized, Conflict, ProviderError,
    StoreUnavailable)}
INTERNAL_MESSAGE = "the byok_nb service failed to handle the request; its log has the details"


def _wire_class(exc: RegistryError) -> type[RegistryError]:
    """The nearest class the client knows (e.g. UnreadableSecret travels as Conflict)."""
    for cls in type(exc).__mro__:
        if cls.__name__ in _CLASSES and _CLASSES[cls.__name__] is cls:
            return cls
    return RegistryError


def error_payload(exc: RegistryError) -> dict[str, Any]:
    """The JSON body of a refused call: ``{"error": {"class", "status", "message", ...}}``."""
    body: dict[str, Any] = {"class": _wire_class(exc).__name__, "status": int(exc.status_code),
                            "message": str(exc.message)}
    if isinstance(exc, InvalidRequest) and exc.field is not None:
        body["field"] = str(exc.field)
    if isinstance(exc, ProviderError):
        body.update(provider=exc.provider, provider_message=exc.provider_message,
                    retry_after=exc.retry_after, transient=exc.transient)
    return {"error": body}


def error_from_payload(payload: Any, http_status: int) -> RegistryError:
    """The error a refused call's body describes, as its class; a body that is not ours (a proxy's
    HTML page, say) becomes a ``RegistryError`` with the HTTP status."""
    body = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        if http_status in (502, 503, 504):
            return StoreUnavailable(f"the byok_nb service is unavailable (HTTP {http_status}); try again "
                                    f"shortly", status_code=http_status)
        return RegistryError(f"the byok_nb service answered HTTP {http_status} without an error "
                             f"description", status_code=http_status if http_status >= 400 else 502)
    cls = _CLASSES.get(str(body.get("class")), RegistryError)
    status = body.get("status")
    status = status if isinstance(status, int) and not isinstance(status, bool) else http_status
    message = body["message"]
    if cls is ProviderError:
        retry_after = body.get("retry_after")
        return ProviderError(message, status_code=status, provider_message=_text(body.get("provider_message")),
                             provider=_text(body.get("provider")),
                             retry_after=float(retry_after) if isinstance(retry_after, (int, float)) else None,
                             transient=bool(body.get("transient")))
    if cls is InvalidRequest:
        return InvalidRequest(message, status_code=status, field=_text(body.get("field")))
    return cls(message, status_code=status)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
