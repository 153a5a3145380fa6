"""The SSRF rule against every spelling of an address we must not reach.

Each URL goes through what registration and delivery both do: `parse_target`, then the host's
addresses (the literal itself, or what a name resolves to, here from a table standing in for DNS),
then `check_resolved`. Metadata services are refused in production and in demo mode (private
addresses allowed); private addresses in production only; transition forms (NAT64, 6to4, Teredo,
IPv4-mapped) are judged by the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress

import pytest

from services.webhook.domain.destinations import (
    DestinationPolicy,
    IpAddress,
    check_resolved,
    literal_address,
    parse_target,
)
from services.webhook.domain.errors import UnsafeWebhookUrl

STRICT = DestinationPolicy()
DEMO = DestinationPolicy(allow_http=True, allow_private=True)

# What names resolve to (a rebinding attacker controls their records).
DNS: dict[str, list[str]] = {
    "hooks.example.com": ["93.184.216.34"],
    "imds.attacker.example": ["::ffff:169.254.169.254"],
    "ecs.attacker.example": ["93.184.216.34", "169.254.170.2"],
    "six-to-four.attacker.example": ["2002:a9fe:a9fe::1"],
    "nat64.attacker.example": ["64:ff9b::a9fe:a9fe"],
    "loopback.attacker.example": ["2002:7f00:1::1"],
    "private-nat64.attacker.example": ["64:ff9b::a00:1"],
    "dns64.example.com": ["64:ff9b::5db8:d822"],
}


def _judge(url: str, policy: DestinationPolicy) -> str:
    """Registration's and delivery's check of `url`; the host it will reach (raises if refused)."""
    target = parse_target(url, policy)
    literal = literal_address(target.host)
    found: list[IpAddress] = (
        [literal] if literal is not None else [ipaddress.ip_address(a) for a in DNS.get(target.host, [])]
    )
    check_resolved(target, found, policy)
    return target.host


METADATA_SPELLINGS = [
    # The link-local range, not just its best-known address.
    "https://169.254.169.254/latest/meta-data/",
    "https://169.254.170.2/v2/credentials",  # AWS ECS task credentials
    "https://169.254.170.23/v1/credentials",  # EKS Pod Identity
    "https://169.254.0.23/",  # Tencent Cloud
    "https://169.254.1.1/",
    # Number forms of 169.254.169.254 that URL parsers and inet_aton accept.
    "https://2852039166/",
    "https://0xa9fea9fe/",
    "https://0XA9FEA9FE/",
    "https://0251.0376.0251.0376/",
    "https://169.254.43518/",
    "https://169.16689662/",
    "https://0xa9.0xfe.0xa9.0xfe/",
    "https://0251.254.169.254/",
    "https://169.254.169.254./",
    # Full-width digits and dots (IDNA folds them to 169.254.169.254).
    "https://\uff11\uff16\uff19\uff0e\uff12\uff15\uff14\uff0e\uff11\uff16\uff19\uff0e\uff12\uff15\uff14/",
    # IPv6 spellings of it.
    "https://[::ffff:169.254.169.254]/",
    "https://[::ffff:a9fe:a9fe]/",
    "https://[::FFFF:A9FE:A9FE]/",
    "https://[0:0:0:0:0:ffff:a9fe:a9fe]/",
    "https://[::ffff:0:a9fe:a9fe]/",  # IPv4-translated (SIIT)
    "https://[::a9fe:a9fe]/",  # IPv4-compatible (deprecated)
    "https://[64:ff9b::a9fe:a9fe]/",  # NAT64, well-known prefix
    "https://[64:ff9b::169.254.169.254]/",
    "https://[64:ff9b:1::a9fe:a9fe]/",  # NAT64, local-use prefix as a /96
    "https://[64:ff9b:1:a9fe:a9:fe00::]/",  # NAT64, local-use prefix as a /48
    "https://[2002:a9fe:a9fe::]/",  # 6to4
    "https://[2001:0:4136:e378:8000:0:5601:5601]/",  # Teredo, client 169.254.169.254
    "https://[fe80::1]/",
    "https://[fe80::1%25eth0]/",  # zone id
    # Other clouds' metadata services.
    "https://[fd00:ec2::254]/",  # AWS over IPv6
    "https://[fd00:ec2::23]/",  # EKS Pod Identity over IPv6
    "https://[fd20:ce::254]/",  # GCP over IPv6
    "https://100.100.100.200/",  # Alibaba Cloud
    "https://168.63.129.16/",  # Azure WireServer
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://METADATA.GOOGLE.INTERNAL./",
    "https://metadata.goog/",
    "https://metadata/",
    "https://instance-data.ec2.internal/",
    "https://metadata.tencentyun.com/",
    # Names resolving to it.
    "https://imds.attacker.example/",
    "https://ecs.attacker.example/",
    "https://six-to-four.attacker.example/",
    "https://nat64.attacker.example/",
]


@pytest.mark.parametrize("url", METADATA_SPELLINGS)
def test_every_spelling_of_a_metadata_service_is_refused_even_in_demo_mode(url: str) -> None:
    for policy in (STRICT, DEMO):
        with pytest.raises(UnsafeWebhookUrl):
            _judge(url, policy)


PRIVATE_SPELLINGS = [
    "https://127.0.0.1/",
    "https://2130706433/",
    "https://0x7f000001/",
    "https://017700000001/",
    "https://127.1/",
    "https://0x7f.1/",
    "https://0/",
    "https://10.1/",
    "https://[::1]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://[64:ff9b::7f00:1]/",  # NAT64 of loopback
    "https://[64:ff9b::10.0.0.1]/",  # NAT64 of a private address
    "https://[2002:7f00:1::]/",  # 6to4 of loopback
    "https://[2002:c0a8:101::1]/",  # 6to4 of 192.168.1.1
    "https://[2001:0:4136:e378:8000:0:f5ff:fffe]/",  # Teredo, client 10.0.0.1
    "https://[fd12:3456::1]/",
    "https://loopback.attacker.example/",
    "https://private-nat64.attacker.example/",
]


@pytest.mark.parametrize("url", PRIVATE_SPELLINGS)
def test_every_spelling_of_a_private_address_is_refused_in_production_only(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl):
        _judge(url, STRICT)
    _judge(url, DEMO)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://hooks.example.com/x", "hooks.example.com"),
        ("https://HOOKS.Example.COM./x", "hooks.example.com"),
        ("https://93.184.216.34/", "93.184.216.34"),
        ("https://1572395042/", "93.184.216.34"),  # a number form is judged as the address itself
        ("https://0x5d.0xb8.0xd8.0x22/", "93.184.216.34"),
        ("https://[2606:4700:4700::1111]/", "2606:4700:4700::1111"),
        ("https://[64:ff9b::5db8:d822]/", "64:ff9b::5db8:d822"),  # NAT64 of a public address (DNS64)
        ("https://[2002:5db8:d822::1]/", "2002:5db8:d822::1"),  # 6to4 of a public address
        ("https://[2001:0:4136:e378:8000:0:a247:27dd]/", "2001:0:4136:e378:8000:0:a247:27dd"),  # Teredo
        ("https://dns64.example.com/", "dns64.example.com"),
    ],
)
def test_public_destinations_in_any_spelling_are_accepted_as_the_host_they_reach(url: str, host: str) -> None:
    assert _judge(url, STRICT) == host


@pytest.mark.parametrize(
    "url",
    [
        "https://1.2.3.4.5/",
        "https://256.1.1.1/",
        "https://4294967296/",
        "https://08.1.1.1/",
        "https://hooks..example.com/",
        "https://169.254.169.254%2f/",
        "https://[169.254.169.254]/",
    ],
)
def test_a_host_that_parsers_would_read_differently_is_refused(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl):
        parse_target(url, DEMO)
