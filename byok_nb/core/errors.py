"""One error hierarchy for every public call.

Each error carries the HTTP status the product page names, so the same object can be shown in a
notebook, in a widget and (one day) returned by an HTTP API without translation.
"""
from __future__ import annotations


class RegistryError(Exception):
    """Base of every error a public byok_nb call raises for bad input or a failing provider."""

    status_code: int = 400

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, message={self.message!r})"


class InvalidRequest(RegistryError):
    """The request is malformed or breaks a rule (422). ``field`` names the input at fault when
    there is one (the keyword, e.g. ``base_url``), so a form can show the message next to it."""

    status_code = 422

    def __init__(self, message: str, *, status_code: int | None = None, field: str | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.field = field


class Forbidden(RegistryError):
    """The acting user lacks the role for this call (403)."""

    status_code = 403


class NotFound(RegistryError):
    """The org, project, model or workflow does not exist or is not visible (404)."""

    status_code = 404


class Unauthorized(RegistryError):
    """The caller's credential (an API token) is missing, unknown, revoked or expired (401)."""

    status_code = 401


class Conflict(RegistryError):
    """The request collides with existing state, e.g. a taken slug (409)."""

    status_code = 409


class ProviderError(RegistryError):
    """A provider call failed. ``status_code`` is the provider's HTTP status, or 502 when there was
    none (transport failure); ``provider_message`` is the provider's own text, secrets scrubbed."""

    status_code = 502

    def __init__(self, message: str, *, status_code: int | None = None,
                 provider_message: str | None = None, provider: str | None = None,
                 retry_after: float | None = None, transient: bool | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.provider_message = provider_message if provider_message is not None else message
        self.provider = provider
        # Seconds the provider asked us to wait (Retry-After), when it said.
        self.retry_after = retry_after
        # Worth trying again: a connection failure before any reply, or a status that means
        # "busy / briefly broken". Derived from an explicit status when not said; an error built
        # without a status (a malformed reply, say) is not transient unless the raiser says so.
        if transient is None:
            transient = status_code in TRANSIENT_STATUSES
        self.transient = transient


TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


class StoreUnavailable(RegistryError):
    """The registry database could not serve the call: a write lock held past the busy timeout,
    a deadlock or serialization failure, an unreachable server (503; safe to try again)."""

    status_code = 503


class RegistryWarning(UserWarning):
    """Accepted input that is probably a mistake (a per-1M price, an unknown reasoning parameter)."""
