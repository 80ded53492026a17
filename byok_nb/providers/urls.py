"""The form of a provider URL a user types (base URL, Inference Endpoint URL), checked at save time.

A URL that passes here is one the HTTP client can send to: httpx and the resolver raise
``InvalidURL`` / ``UnicodeError`` / ``ValueError`` for URLs that merely *look* valid
(``http://0177.0.0.1/v1``, a tab or CR/LF inside, a 64-character DNS label, ``http://[::1/v1``),
and those must be refused when the model is saved, naming the field, not when it is first called.
``tests/providers/test_url_form.py`` fuzzes :func:`check_url` against ``httpx.URL`` to keep the
two in step.

Only the form is checked here, and the literal address the URL names (see
:func:`literal_ipv4` and :mod:`.egress`): no DNS lookup happens at save time. A host name is
resolved, and every address it resolves to vetted, when a call is made.

Leading and trailing whitespace is stripped (a pasted URL often carries some); whitespace, control
or invisible (format) characters *inside* are refused, because they are never part of a URL the
user meant.
"""
from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import idna

from ..core.errors import InvalidRequest
from .egress import literal_ipv4, refusal_message

SCHEMES = ("http", "https")
MAX_HOST_LENGTH = 253        # DNS: a name is at most 253 characters (without the trailing dot)
MAX_LABEL_LENGTH = 63        # DNS: a label is at most 63 characters
# A host name label httpx and the resolver both take. The underscore is not in the DNS host
# name rules but resolvers accept it and internal names (docker compose services) use it.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?", re.IGNORECASE)
# A number as inet_aton (and so getaddrinfo) reads it inside a host: decimal, 0-octal or 0x-hex.
_DOTTED_DECIMAL = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")   # httpx's "IPv4-style" host


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed :func:`check_url`: the stripped text and its host as the client sees
    it (lower case, IDNA-encoded, IPv6 without brackets)."""

    url: str
    scheme: str
    host: str
    port: int | None


def check_url(field: str, value: object, *, label: str | None = None,
              example: str = "https://my-vllm.example.com/v1",
              refuse_host: Callable[[str], str | None] | None = None) -> CheckedURL:
    """``value`` stripped and checked as an http(s) URL the HTTP client can call.

    Raises ``InvalidRequest`` whose ``field`` is ``field`` and whose message starts with it (and
    ``label``, the form's name for it, when given) and says what is wrong; the offending text is
    quoted only when it holds nothing unprintable. ``refuse_host`` (the egress policy's save-time
    rule) is asked about the host as typed and as the client will send it, before its form is
    judged, so a disguised metadata address is refused as one.
    """
    try:
        return _check_url(f"{field} ({label})" if label else field, value, example, refuse_host)
    except InvalidRequest as exc:
        exc.field = field
        raise


def _check_url(field: str, value: object, example: str,
               refuse_host: Callable[[str], str | None] | None) -> CheckedURL:
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be text (a URL such as {example}), not "
                             f"{type(value).__name__}", field=field)
    url = value.strip()
    if not url:
        raise InvalidRequest(f"{field} is empty; enter a full URL such as {example}", field=field)
    _refuse_hidden_characters(field, url)
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.isascii() or scheme.lower() not in SCHEMES:
        raise InvalidRequest(f"{field} must be a full http:// or https:// URL such as {example}, "
                             f"got {_quoted(url)}", field=field)
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        # Credentials belong in the API Key field, where they are encrypted, not in a URL.
        raise InvalidRequest(f"{field} must not contain a user name or password; put the key in "
                             f"API Key", field=field)
    if "\\" in authority:
        raise InvalidRequest(f"{field} has a backslash in its host part; use / to start the path",
                             field=field)
    if "?" in rest or "#" in rest:
        # The chat path is appended to the URL: after a query or fragment it would not be a path.
        raise InvalidRequest(f"{field} must not have a query (?...) or fragment (#...); give the "
                             f"URL up to its path, such as {example}", field=field)
    host, port = _split_host_port(field, authority)
    _refuse(field, host, refuse_host)
    checked = _checked_host(field, host)
    _refuse(field, checked, refuse_host)
    return CheckedURL(url=url, scheme=scheme.lower(), host=checked, port=port)


def _refuse(field: str, host: str, refuse_host: Callable[[str], str | None] | None) -> None:
    if refuse_host is None or not host:
        return
    reason = refuse_host(host)
    if reason is not None:
        raise InvalidRequest(f"{field}: {refusal_message(host, reason)}", field=field)


def _refuse_hidden_characters(field: str, url: str) -> None:
    for position, char in enumerate(url, start=1):
        category = unicodedata.category(char)
        if char.isspace() or category in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            kind = ("a space" if char == " " else "a line break" if char in "\r\n\x0b\x0c\x85\u2028\u2029"
                    else "a tab" if char == "\t" else "an invisible or control character")
            raise InvalidRequest(f"{field} contains {kind} (U+{ord(char):04X} at position {position}); "
                                 f"a URL cannot contain one — re-type or re-paste it", field=field)


def _split_host_port(field: str, authority: str) -> tuple[str, int | None]:
    """(host as typed, port) of ``host[:port]`` or ``[ipv6][:port]``."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise InvalidRequest(f"{field} has an IPv6 address without its closing ']' "
                                 f"(write it as http://[2001:db8::1]:8000/v1)", field=field)
        host, after = authority[: end + 1], authority[end + 1:]
        if after and not after.startswith(":"):
            raise InvalidRequest(f"{field} has text after the IPv6 address's ']' that is not a "
                                 f":port", field=field)
        port_text = after[1:] if after else None
    else:
        if "]" in authority:
            raise InvalidRequest(f"{field} has a ']' without an opening '['", field=field)
        host, sep, port_text = authority.partition(":")
        if not sep:
            port_text = None
        elif ":" in port_text:
            raise InvalidRequest(f"{field}: an IPv6 address in a URL goes in square brackets, "
                                 f"e.g. http://[2001:db8::1]:8000/v1", field=field)
    return host, _checked_port(field, port_text)


def _checked_port(field: str, text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise InvalidRequest(f"{field} has an invalid port {_quoted(text[:16])}: a port is a number "
                             f"from 1 to 65535", field=field)
    return int(text)


def _checked_host(field: str, host: str) -> str:
    """The host as the client will see it, or InvalidRequest."""
    if not host:
        raise InvalidRequest(f"{field} has no host name", field=field)
    if host.startswith("["):
        inner = host[1:-1]
        if "%" in inner:
            raise InvalidRequest(f"{field}: IPv6 zone ids (%...) are not supported in a URL",
                                 field=field)
        try:
            return str(ipaddress.IPv6Address(inner))
        except ValueError:
            pass
        raise InvalidRequest(f"{field} has an invalid IPv6 address {_quoted(host[:64])}", field=field)
    if ":" in host:   # reached only from a bracket-less authority with two colons
        raise InvalidRequest(f"{field}: an IPv6 address goes in square brackets", field=field)
    numeric = literal_ipv4(host)
    if numeric is not None or _DOTTED_DECIMAL.fullmatch(host):
        if _DOTTED_DECIMAL.fullmatch(host):
            try:
                return str(ipaddress.IPv4Address(host))   # canonical dotted decimal: as typed
            except ValueError:
                pass
        # 0177.0.0.1, 0x7f.1, 2130706433: httpx refuses some, the resolver reads others as
        # an address; both are ways to disguise one, so only the plain form is accepted.
        shown = f" (that is {numeric})" if numeric is not None else ""
        raise InvalidRequest(f"{field}: write an IPv4 address as four decimal numbers without "
                             f"leading zeros, e.g. 10.0.0.5; {_quoted(host[:64])}{shown} is not",
                             field=field)
    return _checked_name(field, host)


def _checked_name(field: str, host: str) -> str:
    """A DNS name: IDNA-encoded when not ASCII, each label 1-63 characters, 253 in all."""
    name = host.lower()
    if not name.isascii():
        try:
            name = idna.encode(name).decode("ascii")   # what httpx sends (IDNA 2008)
        except (idna.IDNAError, UnicodeError, ValueError):
            name = ""
        if not name:
            raise InvalidRequest(f"{field} has a host name that is not a valid internationalized "
                                 f"domain name; check it for look-alike or symbol characters",
                                 field=field)
    bare = name[:-1] if name.endswith(".") else name
    if len(bare) > MAX_HOST_LENGTH:
        raise InvalidRequest(f"{field} has a host name longer than {MAX_HOST_LENGTH} characters",
                             field=field)
    for label in bare.split("."):
        if not label:
            raise InvalidRequest(f"{field} has an empty part in its host name (two dots in a row, "
                                 f"or a leading dot)", field=field)
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidRequest(f"{field} has a host name part longer than {MAX_LABEL_LENGTH} "
                                 f"characters ({label[:20]}…)", field=field)
        if not _LABEL.fullmatch(label):
            raise InvalidRequest(f"{field} has a host name part {_quoted(label[:64])} with characters "
                                 f"a host name cannot have (letters, digits and - only)", field=field)
        if label.startswith("xn--") and not _valid_a_label(label):
            raise InvalidRequest(f"{field} has a host name part {_quoted(label)} that is not valid "
                                 f"punycode", field=field)
    return name


def _valid_a_label(label: str) -> bool:
    try:
        idna.decode(label)
        return True
    except (idna.IDNAError, UnicodeError, ValueError):
        return False


def _quoted(text: str) -> str:
    return repr(text) if text.isprintable() else "(text with unprintable characters)"
