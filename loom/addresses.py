"""Which network addresses the server may reach for a client: never its own network.

Shared by everything that connects somewhere a client named (logo, sheet and video fetches in
``loom.fetch``; webhooks in ``app.webhooks``). A name is resolved once and the very address that
was checked is the one connected to, so DNS rebinding between the check and the connection
cannot lead inside.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

# Cloud metadata services, by name and by address (some are outside the private ranges).
METADATA_HOSTS = {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
}
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_allowed_hosts(text: str | Iterable[str]) -> set[str]:
    """``host`` or ``host:port`` entries (a full URL is read as its host and port)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = set()
    for item in (i.strip() for i in items if i and i.strip()):
        if "://" in item:
            parts = urlsplit(item)
            item = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        out.add(item.lower().rstrip("."))
    return {h for h in out if h}


def is_allowed(host: str, port: int, allowed: set[str]) -> bool:
    return host in allowed or f"{host}:{port}" in allowed


def embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address hidden in IPv4-mapped, NAT64 or 6to4 IPv6 forms (``::ffff:10.0.0.1``)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def blocked_reason(address: str) -> str | None:
    """Why a destination address is refused (metadata, loopback, private, ...), or None if public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip in NAT64_LOCAL:
        return "a private address"  # local-use NAT64 (RFC 8215): translated inside the network
    ip = embedded_ipv4(ip)
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or not ip.is_global:
        return "not a public address"
    return None


def internal_name(host: str) -> bool:
    """Names that mean the server's own network whatever they resolve to."""
    return host in METADATA_HOSTS or host.endswith(".internal") or host == "localhost" or host.endswith(".localhost")


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (numeric forms like ``2852039166`` included)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
