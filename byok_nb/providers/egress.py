"""Egress policy for provider calls.

A model's URL is typed by a user, so a provider call is a server-side request to an address the
user chose. Two rules keep that from reaching what it must not:

* **Always refused:** link-local and cloud-metadata addresses (``169.254.0.0/16``, ``fe80::/10``,
  ``fd00:ec2::254``, ``100.100.100.200``) — the instance-credential endpoints of AWS, GCP, Azure
  and Alibaba.
* **Refused under** ``BYOK_NB_EGRESS=public``: everything that is not a public unicast address
  (loopback, private, unique-local, CGNAT, unspecified, multicast, reserved...). The default
  allows them because self-hosted vLLM and Ollama usually live on such addresses.

Addresses are checked **after DNS resolution, at connect time**, on every address a name resolves
to: a hostname cannot dodge the rule, and because the connection is then made to the vetted
address itself (not re-resolved), DNS rebinding between check and connect cannot either.
IPv6 forms that embed an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
the local-use NAT64 prefix ``64:ff9b:1::/48`` at every position RFC 6052 allows, IPv4-compatible
``::a.b.c.d``, 6to4 ``2002::/16``) are unwrapped and the IPv4 address is checked too; under
``public`` the whole local-use NAT64 /48 is refused (it only ever reaches a site's own network).
Well-known metadata host names (:data:`METADATA_HOST_NAMES`) are refused by name as well.

The always-refused rule is also applied **at save time** to what a URL spells literally (an IP
address in any spelling, or a metadata host name) by :func:`always_refused_host` — without DNS,
which only happens at call time.

Modes (``BYOK_NB_EGRESS``, read when the registry is opened): ``private`` (the default; ``default``
is the same), and ``public``. Any other value is refused, listing these.

A refusal is a :class:`EgressRefused` (a ``ProviderError`` with status 502: no provider answered,
and 502 is what ``ProviderError`` uses when there is no provider status).
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
from typing import Any

from ..core.errors import InvalidRequest, ProviderError

EGRESS_ENV = "BYOK_NB_EGRESS"
PRIVATE_MODE = "private"    # the default: loopback and private networks allowed
PUBLIC_MODE = "public"      # public unicast addresses only
DEFAULT_MODE = PRIVATE_MODE
MODES = (PRIVATE_MODE, PUBLIC_MODE)
# Other names a value may have: "default" is what the setting was first documented as.
MODE_ALIASES = {"default": PRIVATE_MODE}
VALID_MODE_NAMES = (*MODES, *MODE_ALIASES)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Credential endpoints of cloud instances: never a model provider, always refused.
ALWAYS_REFUSED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16",       # IPv4 link-local; AWS/GCP/Azure metadata at 169.254.169.254
    "fe80::/10",            # IPv6 link-local
    "fd00:ec2::254/128",    # AWS metadata over IPv6
    "100.100.100.200/32",   # Alibaba Cloud metadata
))
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")   # RFC 8215
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# Where RFC 6052 (section 2.2) puts the IPv4 address in an IPv6 address, per prefix length: the
# byte offsets of its four bytes (byte 8, bits 64-71, is always skipped).
RFC6052_IPV4_BYTES = {32: (4, 5, 6, 7), 40: (5, 6, 7, 9), 48: (6, 7, 9, 10), 56: (7, 9, 10, 11),
                      64: (9, 10, 11, 12), 96: (12, 13, 14, 15)}
# Host names of instance-metadata services, refused by name (they resolve to the addresses above
# inside a cloud, but a resolver outside one may say anything): GCP, AWS, Tencent Cloud, IBM Cloud.
METADATA_HOST_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog",   # GCP
    "instance-data", "instance-data.ec2.internal",             # AWS (EC2 classic names)
    "metadata.tencentyun.com",                                 # Tencent Cloud
    "api.metadata.cloud.ibm.com",                              # IBM Cloud VPC
})
LINK_LOCAL_REASON = "a link-local or cloud-metadata address, which byok_nb never calls"
METADATA_NAME_REASON = "a cloud-metadata host name, which byok_nb never calls"


class EgressRefused(ProviderError):
    """A provider call was refused by the egress policy before any byte was sent."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = None
        self.transient = False      # the policy will refuse it again: never worth a retry


def egress_mode_from_env(environ: dict[str, str] | None = None) -> str:
    """The egress mode named by ``BYOK_NB_EGRESS`` (unset or blank means ``private``)."""
    value = (os.environ if environ is None else environ).get(EGRESS_ENV, "")
    return normalize_mode(value)


def normalize_mode(value: str | None) -> str:
    """``"private"`` or ``"public"`` (``"default"`` is read as ``"private"``); anything else is
    refused, because a typo such as ``publc`` silently allowing private addresses would defeat
    the setting."""
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{EGRESS_ENV} must be text, not {type(value).__name__}")
    mode = (value or "").strip().lower() or DEFAULT_MODE
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        raise InvalidRequest(
            f"{EGRESS_ENV} must be one of: 'private' (the default: loopback and private networks "
            f"allowed), 'public' (public addresses only), or 'default' (same as 'private'); "
            f"not {value!r}")
    return mode


def embedded_ipv4s(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address may carry (mapped, NAT64 — the local-use /48 read at
    each RFC 6052 position and in its last 32 bits —, compatible, 6to4); empty when none."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in NAT64_WELL_KNOWN or (address in IPV4_COMPATIBLE and int(address) > 1):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address in NAT64_LOCAL_USE:
        # The operator picks the prefix length inside the /48, so the address may sit at any
        # position; reading all of them can only refuse more, never allow more.
        raw = address.packed
        found: list[ipaddress.IPv4Address] = []
        for offsets in RFC6052_IPV4_BYTES.values():
            candidate = ipaddress.IPv4Address(bytes(raw[i] for i in offsets))
            if candidate not in found:
                found.append(candidate)
        return found
    return [address.sixtofour] if address.sixtofour is not None else []


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The (first) IPv4 address an IPv6 address carries, if any (see :func:`embedded_ipv4s`)."""
    found = embedded_ipv4s(address)
    return found[0] if found else None


# One number of an inet_aton spelling: decimal, 0-octal or 0x-hex.
_INET_NUMBER = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")


def literal_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host *spells* in any form the C resolver accepts (``inet_aton``):
    one to four parts, each decimal, 0-octal or 0x-hex, the last filling the remaining bytes —
    ``0251.0376.0251.0376``, ``0xa9fea9fe``, ``2852039166`` and ``169.254.43518`` are all
    169.254.169.254. None when ``host`` is not such a spelling (a name)."""
    text = host[:-1] if host.endswith(".") else host
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_NUMBER.fullmatch(p) for p in parts):
        return None
    numbers = []
    for part in parts:
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if any(c in "89" for c in part):
                return None
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def refusal_message(shown: str, reason: str) -> str:
    """One wording for every egress refusal, at call time and at save time."""
    return f"Egress refused: {shown} is {reason}."


def always_refused_host(host: str) -> str | None:
    """Save time (no DNS): why ``host`` — a URL's host, an IP literal in any spelling or a name
    — is always refused, or None. Only the always-refused set applies; ``public`` mode is a
    call-time setting."""
    name = host.strip().lower()
    name = name[:-1] if name.endswith(".") else name
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name in METADATA_HOST_NAMES:
        return METADATA_NAME_REASON
    try:
        address: IPAddress | None = ipaddress.ip_address(name)
    except ValueError:
        address = literal_ipv4(name)
    if address is None:
        return None
    return EgressPolicy(PRIVATE_MODE).refusal_reason(address)


class EgressPolicy:
    """Decides whether an IP address may be called. ``mode`` is ``private`` (the default) or
    ``public``."""

    def __init__(self, mode: str = DEFAULT_MODE) -> None:
        self.mode = normalize_mode(mode)

    def __repr__(self) -> str:
        return f"EgressPolicy(mode={self.mode!r})"

    def refusal_reason(self, ip: str | IPAddress) -> str | None:
        """Why ``ip`` must not be called, or None when it may be."""
        address = ipaddress.ip_address(ip.split("%", 1)[0] if isinstance(ip, str) else ip)
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        candidates = [address, *embedded_ipv4s(address)]
        for candidate in candidates:
            if any(candidate in net for net in ALWAYS_REFUSED_NETWORKS
                   if net.version == candidate.version):
                return LINK_LOCAL_REASON
        if self.mode == PUBLIC_MODE:
            if address in NAT64_LOCAL_USE:
                return (f"a local-use NAT64 address ({NAT64_LOCAL_USE}), "
                        f"and {EGRESS_ENV}=public allows public addresses only")
            for candidate in reversed(candidates):  # the embedded IPv4 names the real kind
                if not candidate.is_global or candidate.is_multicast:
                    return (f"not a public address ({_address_kind(candidate)}), "
                            f"and {EGRESS_ENV}=public allows public addresses only")
        return None

    def check_address(self, ip: str, *, host: str) -> None:
        """Raise :class:`EgressRefused` when ``ip`` (an address ``host`` resolved to) is refused."""
        reason = self.refusal_reason(ip)
        if reason is not None:
            shown = host if host == ip else f"{host} (resolved to {ip})"
            raise EgressRefused(refusal_message(shown, reason), status_code=502, transient=False)

    def check_host_name(self, host: str) -> None:
        """Raise :class:`EgressRefused` for a metadata host name, before it is resolved."""
        name = host.lower()
        if (name[:-1] if name.endswith(".") else name) in METADATA_HOST_NAMES:
            raise EgressRefused(refusal_message(host, METADATA_NAME_REASON), status_code=502,
                                transient=False)

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address ``host`` resolves to, each checked; the vetted list to connect to.

        Raises :class:`EgressRefused` when any address is refused (a name that resolves to one
        public and one metadata address is refused as a whole), and :class:`OSError`
        (``socket.gaierror``) when the name does not resolve.
        """
        self.check_host_name(host)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses: list[str] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            ip = str(sockaddr[0])
            if ip not in addresses:
                addresses.append(ip)
        for ip in addresses:
            self.check_address(ip, host=host)
        return addresses


def _address_kind(address: IPAddress) -> str:
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in ipaddress.ip_network("100.64.0.0/10"):
        return "carrier-grade NAT"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"):
        return "unique-local"
    if address.is_private:
        return "private"
    return "reserved"


def guarded_network_backend(policy: EgressPolicy) -> Any:
    """An ``httpcore`` network backend that vets every address before it connects (see module doc).

    Imported lazily so ``import byok_nb.providers`` does not load httpcore.
    """
    import httpcore

    class GuardedBackend(httpcore.NetworkBackend):
        def __init__(self) -> None:
            self._inner = httpcore.SyncBackend()

        def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                        local_address: str | None = None,
                        socket_options: Any = None) -> httpcore.NetworkStream:
            try:
                addresses = policy.resolve(host, port)
            except socket.gaierror as exc:
                raise httpcore.ConnectError(f"DNS lookup failed for {host}: {exc.strerror or exc}") from exc
            except (UnicodeError, ValueError):
                # The resolver's IDNA codec refuses the name (an empty or 64+ character label):
                # a malformed host, reported like a lookup failure rather than raised raw.
                bad_name = True
            else:
                bad_name = False
            if bad_name:
                raise httpcore.ConnectError(f"DNS lookup failed for {host}: not a valid host name")
            last_error: Exception | None = None
            for ip in addresses:  # connect to the vetted address itself: no second lookup
                try:
                    return self._inner.connect_tcp(ip, port, timeout=timeout,
                                                   local_address=local_address,
                                                   socket_options=socket_options)
                except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                    last_error = exc
            assert last_error is not None
            raise last_error

        def connect_unix_socket(self, path: str, timeout: float | None = None,
                                socket_options: Any = None) -> httpcore.NetworkStream:
            raise httpcore.ConnectError("unix sockets are not provider endpoints")

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    return GuardedBackend()
