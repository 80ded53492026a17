"""Egress policy for provider calls (SPEC P-6).

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
IPv4-compatible ``::a.b.c.d``, 6to4 ``2002::/16``) are unwrapped and the IPv4 address is checked too.

A refusal is a :class:`EgressRefused` (a ``ProviderError`` with status 502: no provider answered,
and 502 is what ``ProviderError`` uses when there is no provider status).
"""
from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from ..errors import InvalidRequest, ProviderError

EGRESS_ENV = "BYOK_NB_EGRESS"
DEFAULT_MODE = "default"
PUBLIC_MODE = "public"
MODES = (DEFAULT_MODE, PUBLIC_MODE)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Credential endpoints of cloud instances: never a model provider, always refused.
ALWAYS_REFUSED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16",       # IPv4 link-local; AWS/GCP/Azure metadata at 169.254.169.254
    "fe80::/10",            # IPv6 link-local
    "fd00:ec2::254/128",    # AWS metadata over IPv6
    "100.100.100.200/32",   # Alibaba Cloud metadata
))
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class EgressRefused(ProviderError):
    """A provider call was refused by the egress policy before any byte was sent."""


def egress_mode_from_env(environ: dict[str, str] | None = None) -> str:
    """The egress mode named by ``BYOK_NB_EGRESS`` (unset or blank means ``default``)."""
    value = (os.environ if environ is None else environ).get(EGRESS_ENV, "")
    return normalize_mode(value)


def normalize_mode(value: str | None) -> str:
    """``"public"`` or ``"default"``; anything else is refused, because a typo such as
    ``publc`` silently allowing private addresses would defeat the setting."""
    mode = (value or "").strip().lower() or DEFAULT_MODE
    if mode not in MODES:
        raise InvalidRequest(f"{EGRESS_ENV} must be 'public' or 'default', not {value!r}")
    return mode


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, compatible, 6to4), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_WELL_KNOWN or (address in IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


class EgressPolicy:
    """Decides whether an IP address may be called. ``mode`` is ``default`` or ``public``."""

    def __init__(self, mode: str = DEFAULT_MODE) -> None:
        self.mode = normalize_mode(mode)

    def __repr__(self) -> str:
        return f"EgressPolicy(mode={self.mode!r})"

    def refusal_reason(self, ip: str | IPAddress) -> str | None:
        """Why ``ip`` must not be called, or None when it may be."""
        address = ipaddress.ip_address(ip.split("%", 1)[0] if isinstance(ip, str) else ip)
        candidates = [address]
        inner = embedded_ipv4(address)
        if inner is not None:
            candidates.append(inner)
        for candidate in candidates:
            if any(candidate in net for net in ALWAYS_REFUSED_NETWORKS
                   if net.version == candidate.version):
                return "a link-local or cloud-metadata address, which byok_nb never calls"
        if self.mode == PUBLIC_MODE:
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
            raise EgressRefused(f"Egress refused: {shown} is {reason}.", status_code=502)

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address ``host`` resolves to, each checked; the vetted list to connect to.

        Raises :class:`EgressRefused` when any address is refused (a name that resolves to one
        public and one metadata address is refused as a whole), and :class:`OSError`
        (``socket.gaierror``) when the name does not resolve.
        """
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
