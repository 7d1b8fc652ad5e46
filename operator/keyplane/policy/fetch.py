"""Which network addresses a metadata or discovery fetch may connect to (SSRF protection).

The decision only; ``keyplane.sources.fetcher`` resolves names, pins the connection to the addresses
checked here, and follows redirects hop by hop through the same check.
"""

from __future__ import annotations

import ipaddress

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Cloud instance-metadata services hold node credentials; no IdP lives there, so they
# stay refused even when private networks are allowed (AWS/GCP/Azure/OpenStack, AWS IPv6,
# ECS task metadata, Alibaba).
_CLOUD_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200")
)
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv6 forms that carry an IPv4 address reach that IPv4 host: the addresses to judge instead."""
    embedded = ip.ipv4_mapped or ip.sixtofour
    if embedded is None and ip in _NAT64:
        embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if embedded is not None:
        return [embedded]
    return list(ip.teredo) if ip.teredo is not None else []


def _never_allowed(ip: IPAddress) -> str | None:
    """Never useful as a metadata server, whatever the settings."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip in _CLOUD_METADATA:
        return "cloud instance metadata"
    if ip == _BROADCAST:
        return "broadcast"
    return None


def _not_public(ip: IPAddress) -> str | None:
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip in _CGNAT:
        return "carrier-grade NAT"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "non-global"
    return None


def forbidden_address_class(address: str, *, allow_private_networks: bool = False) -> str | None:
    """Why connecting to ``address`` is refused (e.g. "loopback"), or None when it is allowed."""
    try:
        ip: IPAddress = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:  # "fe80::1%eth0": the zone doesn't change what the address is
            ip = ipaddress.IPv6Address(str(ip).split("%")[0])
        embedded = _embedded_ipv4(ip)
        if embedded:
            reasons = (forbidden_address_class(str(e), allow_private_networks=allow_private_networks) for e in embedded)
            why = next((r for r in reasons if r), None)
            if why or ip.ipv4_mapped or ip.sixtofour or ip in _NAT64:
                return why
    return _never_allowed(ip) or (None if allow_private_networks else _not_public(ip))
