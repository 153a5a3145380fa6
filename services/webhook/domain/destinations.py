"""Where we agree to send webhooks (SSRF rule), checked at registration and again at delivery.

Resolution is the caller's job (an adapter); these rules judge a URL and the addresses its host
resolved to, so a name that resolves to 127.0.0.1 is refused like 127.0.0.1 itself. The host is
first reduced to the one spelling delivery uses (`normalized_host`): an IP address in any of its
number forms is that address, so it needs no DNS and is judged as itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from services.webhook.domain.addresses import (
    IpAddress as IpAddress,  # re-exported: the adapters speak of addresses through this module
)
from services.webhook.domain.addresses import (
    embedded_ipv4,
    ends_in_a_number,
    is_metadata_address,
    is_metadata_hostname,
    is_transition_address,
    parse_ipv4_number_form,
)
from services.webhook.domain.errors import UnsafeWebhookUrl

MAX_URL_CHARS = 2048


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
    host = normalized_host(parts.hostname, url)
    return WebhookTarget(url=url, scheme=scheme, host=host, port=port or default_port)


def normalized_host(host: str, url: str) -> str:
    """The host as delivery reaches it: ASCII (IDNA), lowercase, without the trailing dot of a
    fully qualified name, and an IP address in its canonical form whatever its spelling
    (`0xa9fea9fe`, `2852039166`, `169.254.43518`, full-width digits...). Raises UnsafeWebhookUrl
    for a host that parsers would read differently (a zone id, a number form no parser accepts)
    or a metadata service's name.
    """
    if "%" in host:
        raise UnsafeWebhookUrl("webhook URL must not carry an IPv6 zone id or an escaped host", url=url)
    if not host.isascii():
        try:
            # Nameprep folds full-width digits and dots: to a resolver they are 169.254...
            host = host.encode("idna").decode("ascii")
        except UnicodeError as error:
            raise UnsafeWebhookUrl("webhook URL has a malformed host", url=url) from error
    host = host.lower()
    literal = literal_address(host)
    if literal is not None:
        return str(literal)
    if ends_in_a_number(host):
        address = parse_ipv4_number_form(host)
        if address is None:
            raise UnsafeWebhookUrl("webhook URL has a malformed IPv4 host", url=url)
        return str(address)
    host = host.removesuffix(".")
    if not host or "" in host.split("."):
        raise UnsafeWebhookUrl("webhook URL has a malformed host", url=url)
    if is_metadata_hostname(host):
        raise UnsafeWebhookUrl("webhook URL names a cloud metadata service", url=url, host=host)
    return host


def literal_address(host: str) -> IpAddress | None:
    """The host as an IP address when it is one (then no DNS lookup is needed)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_forbidden_address(address: IpAddress) -> bool:
    """Loopback, private, link-local, metadata, multicast, reserved or unspecified addresses.

    An IPv6 address that carries IPv4 addresses (IPv4-mapped, NAT64, 6to4, Teredo) is refused when
    any of them would be; a transition form is otherwise judged by them alone, not by its prefix.
    """
    if is_metadata_address(address):
        return True
    embedded = embedded_ipv4(address)
    if any(is_forbidden_address(inner) for inner in embedded):
        return True
    if embedded and is_transition_address(address):
        return False
    return (
        address.is_loopback
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
        blocked = [address for address in addresses if is_metadata_address(address)]
    else:
        blocked = [address for address in addresses if is_forbidden_address(address)]
    if blocked:
        raise UnsafeWebhookUrl(
            "webhook URL resolves to a loopback, private, link-local or metadata address",
            url=target.url,
            address=str(blocked[0]),
        )
