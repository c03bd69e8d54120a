"""Server-side request forgery: subscribers' URLs must not reach into our own network.

An endpoint is refused when its host is, or resolves to, a loopback, private, link-local or other
non-global address (unless ``CWI_PUBLISHER_ALLOW_PRIVATE``), and when it is plain ``http://``
(unless ``CWI_PUBLISHER_ALLOW_HTTP``). The URL is checked when a subscription is added; at
delivery the connector's own resolver checks every address it is about to connect to, so a name
that resolves differently later (DNS rebinding) is refused too. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp import ThreadedResolver
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

ALLOW_SETTING = "CWI_PUBLISHER_ALLOW_PRIVATE"


class EndpointRefused(OSError):
    """The endpoint is not allowed; the message says why and which setting would allow it.

    An OSError, so that aiohttp reports it as the connection's failure (``os_error``)."""


def address_kind(address: str) -> str | None:
    """What sort of non-global address this is (``loopback``, ``private``, …), None for a global one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, test in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("unspecified", ip.is_unspecified),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if test:
            return kind
    return None if ip.is_global else "non-global"


def check_address(host: str, address: str, *, allow_private: bool) -> None:
    if allow_private:
        return
    kind = address_kind(address)
    if kind is not None:
        where = address if host == address else f"{host} ({address})"
        raise EndpointRefused(
            f"refused: {where} is a {kind} address; set {ALLOW_SETTING}=true to allow such endpoints"
        )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> URL:
    """The parsed URL, or EndpointRefused naming what is wrong (the scheme, a user in it, an address)."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        raise EndpointRefused(f"not a URL: {url!r}") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parsed.scheme not in schemes:
        allowed = (
            "http:// or https://" if allow_http else "https:// (set CWI_PUBLISHER_ALLOW_HTTP=true for http)"
        )
        raise EndpointRefused(f"the endpoint must be an {allowed} URL, not {url!r}")
    if not parsed.host:
        raise EndpointRefused(f"the endpoint URL has no host: {url!r}")
    if parsed.user is not None or parsed.password is not None:
        raise EndpointRefused(
            "the endpoint URL must not carry a user or password (the secret signs each call)"
        )
    if _is_address(parsed.host):
        check_address(parsed.host, parsed.host, allow_private=allow_private)
    return parsed


async def check_resolved(host: str, *, allow_private: bool) -> None:
    """Refuse a name that resolves to a refused address now (what adding a subscription checks)."""
    if allow_private or _is_address(host):
        return
    resolver = GuardedResolver(allow_private=False)
    try:
        await resolver.resolve(host, 443, socket.AF_UNSPEC)
    except EndpointRefused:
        raise
    except OSError as exc:
        raise EndpointRefused(f"cannot resolve {host}: {exc.strerror or exc}") from None
    finally:
        await resolver.close()


class GuardedResolver(AbstractResolver):
    """The connector's resolver: every address it hands out was checked (all of a name's, or none)."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for result in found:
            check_address(host, result["host"], allow_private=self._allow_private)
        return found

    async def close(self) -> None:
        await self._inner.close()
