"""Where we may deliver: the SSRF check of a URL, with its host resolved."""

from __future__ import annotations

from services.webhook.domain.destinations import IpAddress, WebhookTarget, check_resolved, parse_target
from services.webhook.use_cases.dependencies import Dependencies


async def checked_destination(deps: Dependencies, url: str) -> tuple[WebhookTarget, list[IpAddress]]:
    """The URL's target and the addresses its host resolves to now, all of them allowed;
    UnsafeWebhookUrl otherwise. Run at registration and again before every send (the name may
    point somewhere else by then: DNS rebinding)."""
    target = parse_target(url, deps.destinations)
    addresses = await deps.resolver.resolve(target.host, target.port)
    check_resolved(target, addresses, deps.destinations)
    return target, addresses


async def validate_url(deps: Dependencies, url: str) -> WebhookTarget:
    """Refuses (UnsafeWebhookUrl) a URL we would never deliver to, resolving its host."""
    target, _ = await checked_destination(deps, url)
    return target
