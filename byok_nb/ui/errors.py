"""Widget callbacks never show a raw traceback.

Every button handler and observer of the widgets goes through :func:`run_guarded` (or the
:func:`guarded` decorator). A failure becomes one short line in a message widget:

* a :class:`~byok_nb.core.errors.RegistryError` (and so every ``ProviderError``) shows its own message —
  the registry already wrote it for people and scrubbed secrets out of it;
* anything else shows ``Unexpected error: <TypeName>``; the details (scrubbed message and the
  stack, never local values) go to the ``byok_nb.ui`` logger, which has a ``NullHandler`` so nothing
  reaches a notebook cell unless the operator configures logging.

Why not let ipywidgets handle it: its ``CallbackDispatcher`` calls ``ip.showtraceback()``, which
puts the whole traceback (and any secret in an exception message) in front of the user.

No ``with output:`` block here on purpose: an exception escaping an ``Output`` context manager is
rendered as a traceback inside that Output. Views compute first and only *display* inside one.
"""
from __future__ import annotations

import functools
import html
import logging
import re
import traceback
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..core.errors import RegistryError
from ..core.secrets import scrub
from .labels import LABELS, label_for

logger = logging.getLogger("byok_nb.ui")
logger.addHandler(logging.NullHandler())

T = TypeVar("T")

ERROR_STYLE = "color:#b00020"
OK_STYLE = "color:#1b5e20"
WARNING_STYLE = ("background:#fff8c5;border:1px solid #d4a72c;color:#5c4400;"
                 "padding:4px 8px;border-radius:4px;display:inline-block")


def short_message(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """The one line a user sees for ``exc``: a RegistryError's message, else its type only."""
    if isinstance(exc, RegistryError):
        return scrub(str(exc.message), secrets)
    return f"Unexpected error: {type(exc).__name__}"


def log_unexpected(exc: BaseException, where: str = "", secrets: Iterable[str] = ()) -> None:
    """Log an unexpected failure: scrubbed message plus the stack frames (no local values)."""
    stack = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("Unexpected error in %s: %s: %s\n%s", where or "widget callback",
                 type(exc).__name__, scrub(str(exc), secrets), stack)


def styled(text: str, style: str = ERROR_STYLE, css_class: str = "byok-message-text",
           role: str | None = None) -> str:
    """``text`` escaped and wrapped in a styled span for an HTML widget.

    The span carries an ARIA live role so assistive technology (and tests) find the message:
    ``alert`` for errors, ``status`` for everything else; ``role`` overrides it."""
    if not text:
        return ""
    role = role or ("alert" if style == ERROR_STYLE else "status")
    return f'<span class="{css_class}" role="{role}" style="{style}">{html.escape(text)}</span>'


# -- API messages in the product page's words ------------------------------------------------------
# The registry's messages name the keyword (M-2: ``provider_model_id is required``); the app shows
# the label the admin sees next to the input. Keywords a label already follows ("aws_region (AWS
# Region)") lose the duplicate.
# "provider" is left as typed: it is also an ordinary word of many messages.
_KEYWORD_LABELS: dict[str, str] = {k: v for k, v in LABELS.items() if k != "provider"}
_AUTH_WORDS = {"'iam'": "IAM Key Pair", "iam": "IAM Key Pair", "'api_key'": "Bedrock API Key"}
# A keyword counts only as a whole word outside quotes (a quoted value stays as typed).
_KEYWORD = re.compile(r"(?<![\w'\"./-])(" + "|".join(sorted(map(re.escape, _KEYWORD_LABELS), key=len, reverse=True))
                      + r")(?:\s\(([^)]*)\))?(?![\w'\"/-])")


def field_of(message: str) -> str | None:
    """The form field a registry message is about (its first keyword), or None."""
    match = _KEYWORD.search(message or "")
    return match.group(1) if match else None


def humanize(message: str, provider: str | None = None) -> str:
    """``message`` with field keywords replaced by the product page's labels.

    >>> humanize("aws_access_key_id (Access Key ID) is required for Bedrock iam", "bedrock")
    'Access Key ID is required for Bedrock IAM Key Pair'
    >>> humanize("provider_model_id is required")
    'Provider Model ID is required'
    """
    def label(match: re.Match[str]) -> str:
        keyword, given = match.group(1), match.group(2)
        text = label_for(keyword, provider)
        if given and given != text:
            return f"{text} ({given})"
        return text

    out = _KEYWORD.sub(label, message or "")
    out = re.sub(r"\bBedrock (iam|'iam'|'api_key')(?=\W|$)", lambda m: "Bedrock " + _AUTH_WORDS[m.group(1)], out)
    return out


def show_error(target: Any, exc: BaseException, where: str = "", secrets: Iterable[str] = ()) -> str:
    """Put the short message for ``exc`` into ``target`` (an HTML/Label widget, or None)."""
    if not isinstance(exc, RegistryError):
        log_unexpected(exc, where, secrets)
    message = short_message(exc, secrets)
    set_message(target, message, ERROR_STYLE, css_class="byok-error-text")
    return message


def set_message(target: Any, text: str, style: str = OK_STYLE, css_class: str = "byok-message-text") -> None:
    """Write ``text`` (escaped) into an HTML widget, a Label, or an Output (as plain text)."""
    if target is None:
        return
    kind = type(target).__name__
    if kind == "Output":
        target.clear_output()
        if text:
            target.append_stdout(text + "\n")
    elif kind == "HTML" or kind == "HTMLMath":
        target.value = styled(text, style, css_class)
    else:
        target.value = text


def run_guarded(fn: Callable[..., T], *args: Any, message: Any = None, where: str = "",
                secrets: Callable[[], Iterable[str]] | None = None, **kwargs: Any
                ) -> tuple[bool, T | None]:
    """Call ``fn``; on any exception show a short message in ``message`` and return (False, None).

    >>> ok, model = run_guarded(form.save, message=status_html, where="Save Model")  # doctest: +SKIP
    """
    try:
        return True, fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 — U-7: every failure becomes a short message
        try:
            known = list(secrets()) if secrets is not None else []
        except Exception:  # noqa: BLE001
            known = []
        show_error(message, exc, where or getattr(fn, "__qualname__", ""), known)
        return False, None


def guarded(message_attr: str = "message", where: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for widget handlers defined as methods: failures go to ``self.<message_attr>``.

    >>> class View:
    ...     @guarded("status")
    ...     def _on_click(self, _button): ...
    """
    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def handler(self: Any, *args: Any, **kwargs: Any) -> Any:
            secrets = getattr(self, "_known_secrets", None)
            ok, value = run_guarded(method, self, *args, message=getattr(self, message_attr, None),
                                    where=where or method.__qualname__, secrets=secrets, **kwargs)
            return value
        return handler
    return wrap
