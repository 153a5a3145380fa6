"""gRPC client channels, configured once; OpenTelemetry's client interceptors carry the trace context.

Every channel balances round robin over the replicas of its target (one address, a comma-separated
list, or a name such as `dns:///billing:50051` that resolves to several) and sends calls only to
those whose standard health check (grpc.health.v1, the server's overall status "") answers
SERVING: a replica that is draining, stopped or has lost its database gets no new calls.
"""

from __future__ import annotations

import ipaddress
import json
import socket

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from libs.rpc.tls import TlsFiles

# Retries transparently when a server is briefly unreachable (restart, deploy); the calls we
# make are idempotent by design (business keys), so a retried call never doubles an effect.
# The health check watches the server's overall status: every server sets it with its services'.
_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": ""},
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


_CHANNEL_OPTIONS = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
]


# Targets gRPC resolves itself (kept as given, lists included: "ipv4:10.0.0.5:1,10.0.0.6:1").
_GRPC_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:")


def channel_target(target: str) -> tuple[str, str | None]:
    """`target` as gRPC names it, and the authority its servers' certificates are checked against.

    A comma-separated list of replicas (host:port each) becomes one `ipv4:` (or `ipv6:`) target of
    their addresses, resolved now (gRPC Python cannot plug in a resolver of its own; a list is static
    anyway: a name that must be re-resolved is a `dns:///` target). The authority is the first
    host of the list when it is a name, so mutual TLS still checks the name in the certificates.
    """
    if target.strip().startswith(_GRPC_SCHEMES):
        return target.strip(), None
    replicas = [part.strip() for part in target.split(",") if part.strip()]
    if len(replicas) == 1:
        return replicas[0], None
    if not replicas or any("/" in replica for replica in replicas):
        raise ValueError(f"gRPC target {target!r}: a list of replicas is host:port,host:port,...")
    addresses = [_resolve(replica) for replica in replicas]
    if all(address.version == 4 for address, _ in addresses):
        joined = ",".join(f"{address}:{port}" for address, port in addresses)
        resolved = f"ipv4:{joined}"
    else:
        mapped = [(_as_ipv6(address), port) for address, port in addresses]
        resolved = "ipv6:" + ",".join(f"[{address}]:{port}" for address, port in mapped)
    first_host = replicas[0].rsplit(":", 1)[0].strip("[]")
    return resolved, None if _is_ip(first_host) else first_host


def _resolve(replica: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, separator, port = replica.rpartition(":")
    if not separator or not host or not port.isdigit():
        raise ValueError(f"gRPC target replica {replica!r} is not host:port")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ValueError(f"gRPC target replica {replica!r} does not resolve: {error}") from error
    # IPv4 first: a name with both kinds of records keeps the list in one address family.
    addresses = sorted((ipaddress.ip_address(info[4][0]) for info in infos), key=lambda a: a.version)
    return addresses[0], int(port)


def _as_ipv6(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    return address if address.version == 6 else ipaddress.IPv6Address(f"::ffff:{address}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def open_channel(target: str, *, tls: TlsFiles | None = None) -> grpc.aio.Channel:
    """A channel to `target` (host:port, host:port,host:port,..., or a gRPC name such as
    `dns:///billing:50051`) balancing over its healthy replicas, with retries on UNAVAILABLE and
    trace propagation; mutual TLS when `tls` is given."""
    interceptors = aio_client_interceptors()  # type: ignore[no-untyped-call]
    resolved, authority = channel_target(target)
    if tls is None:
        return grpc.aio.insecure_channel(resolved, options=_CHANNEL_OPTIONS, interceptors=interceptors)
    options = (
        _CHANNEL_OPTIONS if authority is None else [*_CHANNEL_OPTIONS, ("grpc.default_authority", authority)]
    )
    return grpc.aio.secure_channel(
        resolved, tls.channel_credentials(), options=options, interceptors=interceptors
    )
