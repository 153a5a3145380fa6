"""DNS resolution and the HTTP POST of one attempt, pinned to the address that was checked."""

from __future__ import annotations

import asyncio
import time

import httpx

from libs.outbound.network import SystemResolver as SystemResolver  # re-exported for the wiring
from libs.outbound.network import host_header as pinned_host_header
from libs.outbound.network import pinned_url
from services.webhook.domain.delivery import AttemptResult, ErrorClass, classify_status, truncate_body
from services.webhook.domain.destinations import IpAddress, WebhookTarget


class HttpSender:
    """POSTs a webhook with one shared connection pool; never follows redirects (SSRF)."""

    def __init__(self, timeout_seconds: float) -> None:
        self._timeout = timeout_seconds
        self._client = httpx.AsyncClient(follow_redirects=False, timeout=timeout_seconds)

    async def post(
        self, target: WebhookTarget, address: IpAddress, headers: dict[str, str], body: bytes
    ) -> AttemptResult:
        """One attempt; transport failures become classified results, never exceptions."""
        host_header = pinned_host_header(target)
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
