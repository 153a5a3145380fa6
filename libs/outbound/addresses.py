"""What an address or a host name really is, whatever its spelling (the SSRF rule's vocabulary).

A host can name one address in many spellings: `0xa9fea9fe`, `2852039166`, `0251.0376.0251.0376`
and `169.254.43518` are all 169.254.169.254 to a browser's URL parser and to the C library's
`inet_aton`; `::ffff:a9fe:a9fe` is it again over IPv6, and the transition forms (NAT64, 6to4,
Teredo) carry an IPv4 address inside an IPv6 one. Everything here reduces a spelling to the
addresses it reaches, so the rule in `destinations` is written once, against those.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata and host services: they hand out credentials, so they stay out of reach even
# where private addresses are allowed (demos). The whole link-local range, not just
# 169.254.169.254: AWS ECS (169.254.170.2), EKS Pod Identity (169.254.170.23), Tencent
# (169.254.0.23), Oracle, DigitalOcean, Azure and GCP all answer inside it.
METADATA_NETWORKS: tuple[_Network, ...] = tuple(
    ipaddress.ip_network(network)
    for network in (
        "169.254.0.0/16",  # IPv4 link-local: instance metadata of every major cloud
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::/32",  # AWS over IPv6: metadata fd00:ec2::254, DNS ::253, EKS Pod Identity ::23
        "fd20:ce::254/128",  # GCP metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "168.63.129.16/32",  # Azure WireServer (host agent; a public address only Azure routes)
    )
)

# Names of metadata services (and their subdomains), refused before any DNS lookup.
METADATA_HOSTNAMES = frozenset(
    {
        "metadata",  # GCP's short name
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",  # AWS
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.azure.com",
    }
)

# IPv6 prefixes whose addresses lead to the IPv4 address they embed: judged by that address
# (a NAT64 address of a public receiver is what DNS64 hands an IPv6-only deliverer).
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT, RFC 2765
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")  # RFC 3056
_TEREDO = ipaddress.ip_network("2001::/32")  # RFC 4380
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated (RFC 4291): judged by itself too
TRANSITION_NETWORKS = (
    _IPV4_MAPPED,
    _IPV4_TRANSLATED,
    _NAT64_WELL_KNOWN,
    _NAT64_LOCAL_USE,
    _SIX_TO_FOUR,
    _TEREDO,
)

# RFC 6052: where the IPv4 address sits for each NAT64 prefix length (bits 64-71 stay zero).
_RFC6052_IPV4_BITS = {48: (48, 64, 72, 88), 56: (56, 64, 72, 96), 64: (72, 104), 96: (96, 128)}

_HEX_NUMBER = re.compile(r"0x[0-9a-f]*")


def embedded_ipv4(address: IpAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries (mapped, NAT64, 6to4, Teredo, ...); none for IPv4.

    A local-use NAT64 prefix may be any of RFC 6052's lengths, so each possible position counts.
    """
    if isinstance(address, ipaddress.IPv4Address):
        return ()
    return tuple(dict.fromkeys(_embedded_ipv4(address)))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> Iterator[ipaddress.IPv4Address]:
    value = int(address)
    last_32_bits = (_IPV4_MAPPED, _IPV4_TRANSLATED, _NAT64_WELL_KNOWN)
    if any(address in network for network in last_32_bits) or (
        address in _IPV4_COMPATIBLE and value > 1  # not :: nor ::1
    ):
        yield ipaddress.IPv4Address(value & 0xFFFFFFFF)
    elif address in _NAT64_LOCAL_USE:
        for bits in _RFC6052_IPV4_BITS.values():
            yield ipaddress.IPv4Address(_rfc6052_ipv4(value, bits))
    elif address.sixtofour is not None:
        yield address.sixtofour
    elif address.teredo is not None:
        yield from address.teredo  # the server and the (de-obfuscated) client


def _rfc6052_ipv4(value: int, bits: tuple[int, ...]) -> int:
    """The 32 bits found at `bits` (pairs of [start, end) counted from the address's top bit)."""
    found = 0
    for start, end in zip(bits[::2], bits[1::2], strict=True):
        width = end - start
        found = (found << width) | ((value >> (128 - end)) & ((1 << width) - 1))
    return found


def is_transition_address(address: IpAddress) -> bool:
    """Whether the address leads to the IPv4 address it embeds (so is judged by that one)."""
    return isinstance(address, ipaddress.IPv6Address) and any(address in n for n in TRANSITION_NETWORKS)


def is_metadata_address(address: IpAddress) -> bool:
    """A cloud metadata or host service, directly or through an address embedding it."""
    return any(
        candidate in network
        for candidate in (address, *embedded_ipv4(address))
        for network in METADATA_NETWORKS
        if candidate.version == network.version
    )


def is_metadata_hostname(host: str) -> bool:
    """A metadata service's name or a subdomain of one (`host` already normalized)."""
    return any(host == name or host.endswith("." + name) for name in METADATA_HOSTNAMES)


def ends_in_a_number(host: str) -> bool:
    """Whether a URL parser reads `host` as an IPv4 address (WHATWG URL: its last label is a number)."""
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()  # one trailing dot, as in a fully qualified name
    last = labels[-1]
    return last.isascii() and (last.isdigit() or _HEX_NUMBER.fullmatch(last) is not None)


def parse_ipv4_number_form(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address of a host in any of the forms URL parsers and `inet_aton` accept
    (decimal, octal or hex parts; 1 to 4 of them, the last filling the remaining bytes);
    None when the host is no valid IPv4 address."""
    parts = host.split(".")
    if parts and parts[-1] == "":
        parts.pop()  # one trailing dot, as in a fully qualified name
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_ipv4_part(part) for part in parts]
    if any(number is None for number in numbers):
        return None
    *leading, last = (number for number in numbers if number is not None)
    if any(number > 255 for number in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _ipv4_part(part: str) -> int | None:
    if not part.isascii() or not part:
        return None
    if _HEX_NUMBER.fullmatch(part):
        return int(part[2:] or "0", 16)
    if not part.isdigit():
        return None
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if all(digit in "01234567" for digit in part) else None
    return int(part)
