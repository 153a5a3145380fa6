"""DNS resolution and the HTTP POST of one attempt, pinned to the address that was checked."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from urllib.parse import urlsplit, urlunsplit

import httpx

from services.webhook.domain.delivery import AttemptResult, ErrorClass, classify_status, truncate_body
from services.webhook.domain.destinations import IpAddress, WebhookTarget, literal_address


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


def pinned_url(target: WebhookTarget, address: IpAddress) -> str:
    """The target URL with its host replaced by `address`, so no second DNS lookup can differ."""
    parts = urlsplit(target.url)
    literal = f"[{address}]" if address.version == 6 else str(address)
    return urlunsplit((target.scheme, f"{literal}:{target.port}", parts.path or "/", parts.query, ""))


class HttpSender:
    """POSTs a webhook with one shared connection pool; never follows redirects (SSRF)."""

    def __init__(self, timeout_seconds: float) -> None:
        self._timeout = timeout_seconds
        self._client = httpx.AsyncClient(follow_redirects=False, timeout=timeout_seconds)

    async def post(
        self, target: WebhookTarget, address: IpAddress, headers: dict[str, str], body: bytes
    ) -> AttemptResult:
        """One attempt; transport failures become classified results, never exceptions."""
        host_header = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
        started = time.monotonic()

        def elapsed_ms() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            # The overall deadline also bounds a receiver that trickles its answer byte by byte.
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(
                    pinned_url(target, address),
                    content=body,
                    headers={**headers, "host": host_header, "user-agent": "Reelbatch-Webhooks/1"},
                    extensions={"sni_hostname": target.host},
                )
        except (TimeoutError, httpx.TimeoutException):
            return AttemptResult(0, ErrorClass.TIMEOUT, elapsed_ms())
        except httpx.HTTPError as error:
            return AttemptResult(0, ErrorClass.CONNECTION, elapsed_ms(), truncate_body(type(error).__name__))
        return AttemptResult(
            http_status=response.status_code,
            error_class=classify_status(response.status_code),
            duration_ms=elapsed_ms(),
            response_body=truncate_body(response.text),
        )

    async def close(self) -> None:
        await self._client.aclose()
