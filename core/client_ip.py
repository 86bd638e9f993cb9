"""The client's address, decided in one place for every rate limit, cap and throttle.

Imports nothing from the apps, so cardshop and payments (and the admin login throttle) share it.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

IPV6_GROUP_PREFIX = 64  # one subscriber gets a whole /64: counting single IPv6 addresses would let them rotate


def client_ip(request: HttpRequest) -> str:
    """The client's address, normalised, or "" when none is usable.

    Client-sent headers are never trusted by default (a peer shop was SQL-injected through X-Forwarded-For);
    behind a reverse proxy the operator names, in CARDSHOP_CLIENT_IP_HEADER, the META key of the one header
    that proxy sets, and its last hop (the one the proxy appended) is used.
    """
    header = getattr(settings, "CARDSHOP_CLIENT_IP_HEADER", "")
    value = request.META.get(header, "") if header else ""
    candidate = value.split(",")[-1].strip() if value else request.META.get("REMOTE_ADDR", "")
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


def ip_group(ip: str) -> str:
    """The key limits count under: an IPv4 address as is, IPv6 by its /64, IPv4-mapped IPv6 as IPv4."""
    if not ip:
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_GROUP_PREFIX), strict=False))
    return str(address)


def client_ip_key(request: HttpRequest) -> str:
    """The rate-limit / cap key of this request's client (see ip_group)."""
    return ip_group(client_ip(request))


def ratelimit_key(_group: str, request: HttpRequest) -> str:
    """django-ratelimit's callable-key signature around client_ip_key."""
    return client_ip_key(request) or "unknown"
