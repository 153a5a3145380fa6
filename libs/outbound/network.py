"""DNS resolution for the SSRF rule, and URLs pinned to the address that was checked."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

from libs.outbound.destinations import IpAddress, OutboundTarget, literal_address


class SystemResolver:
    """Resolves host names with the system resolver, without blocking the event loop."""

    async def resolve(self, host: str, port: int) -> list[IpAddress]:
        """Every address of `host` (the literal itself for an IP); empty when it does not resolve."""
        literal = literal_address(host)
        if literal is not None:
            return [literal]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            return []
        found: dict[IpAddress, None] = {}
        for *_, sockaddr in infos:
            found[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
        return list(found)


def pinned_url(target: OutboundTarget, address: IpAddress) -> str:
    """The target URL with its host replaced by `address`, so no second DNS lookup can differ."""
    parts = urlsplit(target.url)
    literal = f"[{address}]" if address.version == 6 else str(address)
    return urlunsplit((target.scheme, f"{literal}:{target.port}", parts.path or "/", parts.query, ""))


def host_header(target: OutboundTarget) -> str:
    """The Host header of a pinned request: the name the URL gave (with a non-default port)."""
    return target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
