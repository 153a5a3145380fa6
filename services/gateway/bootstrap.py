"""Builds the gateway's gRPC channels, stubs and readiness probe from settings."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from reelbatch.proto.batch.v1 import batch_pb2_grpc
from reelbatch.proto.billing.v1 import billing_pb2_grpc
from reelbatch.proto.webhook.v1 import webhook_pb2_grpc

from libs.config import Settings
from libs.invalidations import InvalidationFeed
from libs.rpc.client import open_channel
from libs.rpc.tls import tls_from_settings
from services.gateway.adapters.backends import Backends, ReadinessProbe

BILLING_SERVICE = "reelbatch.proto.billing.v1.BillingService"
BATCH_SERVICE = "reelbatch.proto.batch.v1.BatchService"
WEBHOOK_SERVICE = "reelbatch.proto.webhook.v1.WebhookService"

# A readiness probe must answer quickly even when a backend hangs.
HEALTH_CHECK_DEADLINE_SECONDS = 1.0


@dataclass(frozen=True)
class GatewayBackends:
    """The backends with the channels they use, which `close` releases."""

    backends: Backends
    channels: tuple[grpc.aio.Channel, ...]

    async def close(self) -> None:
        """Closes every channel (in-flight calls are cancelled)."""
        await asyncio.gather(*(channel.close(None) for channel in self.channels))


def health_probe(
    targets: Mapping[str, tuple[grpc.aio.Channel, str]], deadline_seconds: float
) -> ReadinessProbe:
    """A probe asking each `{name: (channel, service)}` the standard gRPC health check."""

    async def is_serving(channel: grpc.aio.Channel, service: str) -> bool:
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=deadline_seconds
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def probe() -> Mapping[str, bool]:
        names = list(targets)
        results = await asyncio.gather(*(is_serving(*targets[name]) for name in names))
        return dict(zip(names, results, strict=True))

    return probe


def build_backends(settings: Settings) -> GatewayBackends:
    """Opens (lazily connecting) channels to billing, batch and webhook and wraps them in stubs."""
    tls = tls_from_settings(settings)
    billing_channel = open_channel(settings.grpc_target("billing"), tls=tls)
    batch_channel = open_channel(settings.grpc_target("batch"), tls=tls)
    webhook_channel = open_channel(settings.grpc_target("webhook"), tls=tls)
    probe = health_probe(
        {
            "billing": (billing_channel, BILLING_SERVICE),
            "batch": (batch_channel, BATCH_SERVICE),
            "webhook": (webhook_channel, WEBHOOK_SERVICE),
        },
        min(HEALTH_CHECK_DEADLINE_SECONDS, settings.grpc_deadline_seconds),
    )
    billing = billing_pb2_grpc.BillingServiceStub(billing_channel)
    backends = Backends(
        billing=billing,
        batch=batch_pb2_grpc.BatchServiceStub(batch_channel),
        webhook=webhook_pb2_grpc.WebhookServiceStub(webhook_channel),
        readiness=probe,
        invalidations=InvalidationFeed(billing),
    )
    return GatewayBackends(backends=backends, channels=(billing_channel, batch_channel, webhook_channel))
