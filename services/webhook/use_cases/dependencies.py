"""What the webhook use cases run on: the repository, the policies and the outside world's ports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.webhook.adapters.repository import WebhookRepository
from services.webhook.domain.delivery import AttemptResult
from services.webhook.domain.destinations import DestinationPolicy, IpAddress, WebhookTarget
from services.webhook.domain.records import BatchSnapshot


class Resolver(Protocol):
    """Resolves a host name to the addresses a delivery may connect to."""

    async def resolve(self, host: str, port: int) -> list[IpAddress]: ...


class Sender(Protocol):
    """POSTs one signed delivery to an already checked address."""

    async def post(
        self, target: WebhookTarget, address: IpAddress, headers: dict[str, str], body: bytes
    ) -> AttemptResult: ...


class BatchReader(Protocol):
    """Reads a batch's counts and status (the batch service)."""

    async def batch(self, batch_id: str) -> BatchSnapshot: ...


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard we try: the retry schedule (its length is the budget), jitter and the lease."""

    retry_schedule_seconds: tuple[float, ...]
    jitter_fraction: float
    lease_seconds: float
    secret_overlap_seconds: float


@dataclass(frozen=True)
class Dependencies:
    """Everything a webhook use case may need; built once per service by `WebhookHandlers`."""

    repository: WebhookRepository
    destinations: DestinationPolicy
    delivery: DeliveryPolicy
    resolver: Resolver
    sender: Sender
    batches: BatchReader
    clock: Callable[[], datetime]
    # A uniform draw in [0, 1) for the retry jitter.
    draw: Callable[[], float]
