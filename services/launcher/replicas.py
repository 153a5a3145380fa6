"""Where each replica of a replicated local run listens, and the targets every process is given.

`reelbatch run --replicas N` (distributed mode) starts N processes of billing, batch, webhook and
the gateway. Replica i of a gRPC service listens on its configured port + i x REPLICA_PORT_STEP,
every process's targets list all replicas of each service (clients balance over them), gateway i
answers HTTP on the configured port + i, and replica i of billing, batch and webhook serves
metrics on its usual port + i x REPLICA_PORT_STEP (with REELBATCH_METRICS_PORT set, that is the
base: billing on it, batch on it + 1, webhook on it + 2, workers on it + 3, as the defaults
9101-9104 are spaced).
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.config import METRICS_PORT_DEFAULTS, GrpcServiceName, Settings

# Ports of one service's replicas are this far apart: the defaults (50051-50053, 9101-9104) of
# different services never meet.
REPLICA_PORT_STEP = 100
GRPC_SERVICES: tuple[GrpcServiceName, ...] = ("billing", "batch", "webhook")
# Where a wildcard listen address is reached from this host.
_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "[::1]", "": "127.0.0.1"}


@dataclass(frozen=True)
class ReplicaPlan:
    """The environment each replica process of a replicated run gets on top of the launcher's."""

    replicas: int
    # {service: [environment of replica 0, replica 1, ...]}, gateway included.
    environments: dict[str, list[dict[str, str]]]
    gateway_urls: list[str]


def _host_port(address: str) -> tuple[str, int]:
    host, separator, port = address.rpartition(":")
    if not separator or not port.isdigit():
        raise ValueError(f"a replicated run needs host:port listen addresses, not {address!r}")
    return host, int(port)


def plan_replicas(settings: Settings, replicas: int) -> ReplicaPlan:
    """Listen addresses, targets, HTTP and metrics ports of `replicas` copies of every service."""
    if replicas < 1:
        raise ValueError("--replicas must be at least 1")
    listens: dict[str, list[str]] = {}
    targets: dict[str, str] = {}
    for service in GRPC_SERVICES:
        host, port = _host_port(settings.grpc_listen(service))
        listens[service] = [f"{host}:{port + i * REPLICA_PORT_STEP}" for i in range(replicas)]
        reachable = _WILDCARD_HOSTS.get(host, host)
        targets[service] = ",".join(f"{reachable}:{port + i * REPLICA_PORT_STEP}" for i in range(replicas))
    shared = {f"REELBATCH_{service.upper()}_GRPC_TARGET": targets[service] for service in GRPC_SERVICES}
    environments: dict[str, list[dict[str, str]]] = {}
    for service in GRPC_SERVICES:
        environments[service] = [
            {
                **shared,
                f"REELBATCH_{service.upper()}_GRPC_LISTEN": listens[service][i],
                "REELBATCH_METRICS_PORT": str(_metrics_port(settings, service, i)),
            }
            for i in range(replicas)
        ]
    environments["gateway"] = [
        {**shared, "REELBATCH_HTTP_PORT": str(settings.http_port + i)} for i in range(replicas)
    ]
    gateway_host = _WILDCARD_HOSTS.get(settings.http_host, settings.http_host)
    urls = [f"http://{gateway_host}:{settings.http_port + i}" for i in range(replicas)]
    return ReplicaPlan(replicas, environments, urls)


def worker_metrics_port(settings: Settings) -> int:
    """The metrics port of the workers of a replicated run (beside the services', never on one)."""
    return _metrics_port(settings, "worker", 0)


def _metrics_port(settings: Settings, process: str, replica: int) -> int:
    if settings.metrics_port == 0:
        return 0
    port = METRICS_PORT_DEFAULTS[process]
    if settings.metrics_port is not None:
        port += settings.metrics_port - METRICS_PORT_DEFAULTS["billing"]
    return port + replica * REPLICA_PORT_STEP
