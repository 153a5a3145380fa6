"""What the gateway talks to: the backend stubs and a readiness probe."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from reelbatch.proto.batch.v1 import batch_pb2_grpc
from reelbatch.proto.billing.v1 import billing_pb2_grpc
from reelbatch.proto.webhook.v1 import webhook_pb2_grpc

from libs.invalidations import InvalidationFeed

# Answers {dependency name: is it serving}, e.g. {"billing": True, "batch": False}.
ReadinessProbe = Callable[[], Awaitable[Mapping[str, bool]]]


@dataclass(frozen=True)
class Backends:
    """The gRPC services behind the REST API (real stubs in production, fakes in tests)."""

    billing: billing_pb2_grpc.BillingServiceAsyncStub
    batch: batch_pb2_grpc.BatchServiceAsyncStub
    webhook: webhook_pb2_grpc.WebhookServiceAsyncStub
    readiness: ReadinessProbe
    # Billing's invalidation stream (revoked keys); None in tests without one: caches then rely
    # on their entries' lifetime alone.
    invalidations: InvalidationFeed | None = None
