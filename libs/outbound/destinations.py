"""Where we agree to send requests on a customer's behalf (the SSRF rule): webhook deliveries and
input image fetches, checked when the URL is given and again when it is called.

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

from libs.errors import InvalidArgument
from libs.outbound.addresses import (
    IpAddress as IpAddress,  # re-exported: the adapters speak of addresses through this module
)
from libs.outbound.addresses import (
    embedded_ipv4,
    ends_in_a_number,
    is_metadata_address,
    is_metadata_hostname,
    is_transition_address,
    parse_ipv4_number_form,
)

MAX_URL_CHARS = 2048


class UnsafeUrl(InvalidArgument):
    """A URL we do not call: its scheme, or an address that would reach our own network."""

    reason = "unsafe_url"


@dataclass(frozen=True)
class DestinationPolicy:
    """The two unsafe switches; both off in production."""

    allow_http: bool = False
    allow_private: bool = False


@dataclass(frozen=True)
class OutboundTarget:
    """A URL split into what delivery needs: scheme, host (no brackets) and port."""

    url: str
    scheme: str
    host: str
    port: int


def parse_target(url: str, policy: DestinationPolicy, subject: str = "URL") -> OutboundTarget:
    """Checks the URL's shape and scheme (no DNS); raises UnsafeUrl."""
    if not url or len(url) > MAX_URL_CHARS:
        raise UnsafeUrl(f"{subject} must be 1..{MAX_URL_CHARS} characters", url=url[:200])
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeUrl(f"{subject} is malformed", url=url) from error
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if policy.allow_http else ("https",)
    if scheme not in allowed:
        raise UnsafeUrl(f"{subject} must use {' or '.join(allowed)}", url=url)
    if not parts.hostname:
        raise UnsafeUrl(f"{subject} has no host", url=url)
    if parts.username or parts.password:
        raise UnsafeUrl(f"{subject} must not carry credentials", url=url)
    default_port = 443 if scheme == "https" else 80
    host = normalized_host(parts.hostname, url, subject)
    return OutboundTarget(url=url, scheme=scheme, host=host, port=port or default_port)


def normalized_host(host: str, url: str, subject: str = "URL") -> str:
    """The host as delivery reaches it: ASCII (IDNA), lowercase, without the trailing dot of a
    fully qualified name, and an IP address in its canonical form whatever its spelling
    (`0xa9fea9fe`, `2852039166`, `169.254.43518`, full-width digits...). Raises UnsafeUrl
    for a host that parsers would read differently (a zone id, a number form no parser accepts)
    or a metadata service's name.
    """
    if "%" in host:
        raise UnsafeUrl(f"{subject} must not carry an IPv6 zone id or an escaped host", url=url)
    if not host.isascii():
        try:
            # Nameprep folds full-width digits and dots: to a resolver they are 169.254...
            host = host.encode("idna").decode("ascii")
        except UnicodeError as error:
            raise UnsafeUrl(f"{subject} has a malformed host", url=url) from error
    host = host.lower()
    literal = literal_address(host)
    if literal is not None:
        return str(literal)
    if ends_in_a_number(host):
        address = parse_ipv4_number_form(host)
        if address is None:
            raise UnsafeUrl(f"{subject} has a malformed IPv4 host", url=url)
        return str(address)
    host = host.removesuffix(".")
    if not host or "" in host.split("."):
        raise UnsafeUrl(f"{subject} has a malformed host", url=url)
    if is_metadata_hostname(host):
        raise UnsafeUrl(f"{subject} names a cloud metadata service", url=url, host=host)
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


def check_resolved(
    target: OutboundTarget, addresses: Sequence[IpAddress], policy: DestinationPolicy, subject: str = "URL"
) -> None:
    """Refuses a host that resolved to nothing, or to any address we must not reach."""
    if not addresses:
        raise UnsafeUrl(
            f"{subject.removesuffix(' URL')} host does not resolve", url=target.url, host=target.host
        )
    if policy.allow_private:
        # Metadata services stay off limits even in demos: they hand out credentials.
        blocked = [address for address in addresses if is_metadata_address(address)]
    else:
        blocked = [address for address in addresses if is_forbidden_address(address)]
    if blocked:
        raise UnsafeUrl(
            f"{subject} resolves to a loopback, private, link-local or metadata address",
            url=target.url,
            address=str(blocked[0]),
        )
