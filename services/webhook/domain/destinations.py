"""Where we agree to send webhooks (SSRF rule), checked at registration and again at delivery.

Resolution is the caller's job (an adapter); these rules judge a URL and the addresses its host
resolved to, so a name that resolves to 127.0.0.1 is refused like 127.0.0.1 itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from services.webhook.domain.errors import UnsafeWebhookUrl

MAX_URL_CHARS = 2048

# Cloud metadata services answer on these even where they are not link-local.
_METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("100.100.100.200"),
        ipaddress.ip_address("fd00:ec2::254"),
    }
)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class DestinationPolicy:
    """The two unsafe switches; both off in production."""

    allow_http: bool = False
    allow_private: bool = False


@dataclass(frozen=True)
class WebhookTarget:
    """A URL split into what delivery needs: scheme, host (no brackets) and port."""

    url: str
    scheme: str
    host: str
    port: int


def parse_target(url: str, policy: DestinationPolicy) -> WebhookTarget:
    """Checks the URL's shape and scheme (no DNS); raises UnsafeWebhookUrl."""
    if not url or len(url) > MAX_URL_CHARS:
        raise UnsafeWebhookUrl(f"webhook URL must be 1..{MAX_URL_CHARS} characters", url=url[:200])
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeWebhookUrl("webhook URL is malformed", url=url) from error
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if policy.allow_http else ("https",)
    if scheme not in allowed:
        raise UnsafeWebhookUrl(f"webhook URL must use {' or '.join(allowed)}", url=url)
    if not parts.hostname:
        raise UnsafeWebhookUrl("webhook URL has no host", url=url)
    if parts.username or parts.password:
        raise UnsafeWebhookUrl("webhook URL must not carry credentials", url=url)
    default_port = 443 if scheme == "https" else 80
    return WebhookTarget(url=url, scheme=scheme, host=parts.hostname, port=port or default_port)


def literal_address(host: str) -> IpAddress | None:
    """The host as an IP address when it is one (then no DNS lookup is needed)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_forbidden_address(address: IpAddress) -> bool:
    """Loopback, private, link-local, metadata, multicast, reserved or unspecified addresses."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_forbidden_address(address.ipv4_mapped)
    return (
        address in _METADATA_ADDRESSES
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def check_resolved(target: WebhookTarget, addresses: Sequence[IpAddress], policy: DestinationPolicy) -> None:
    """Refuses a host that resolved to nothing, or to any address we must not reach."""
    if not addresses:
        raise UnsafeWebhookUrl("webhook host does not resolve", url=target.url, host=target.host)
    if policy.allow_private:
        # Metadata services stay off limits even in demos: they hand out credentials.
        blocked = [address for address in addresses if address in _METADATA_ADDRESSES]
    else:
        blocked = [address for address in addresses if is_forbidden_address(address)]
    if blocked:
        raise UnsafeWebhookUrl(
            "webhook URL resolves to a loopback, private, link-local or metadata address",
            url=target.url,
            address=str(blocked[0]),
        )
