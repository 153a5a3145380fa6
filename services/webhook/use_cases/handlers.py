"""The webhook service's handlers: every use case, bound to one service's dependencies.

Transports (the gRPC servicer, the event consumer, the deliverer loop) call only these. Each
line names the topic module where the use case and its rules live; nothing else happens here.
"""

from __future__ import annotations

import secrets as random_source
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from services.webhook.adapters.repository import WebhookRepository
from services.webhook.domain.destinations import DestinationPolicy
from services.webhook.use_cases import announcements, delivery_log, endpoints, signing_secrets

# Aliased: `delivery` and `destinations` also name the policies the constructor takes.
from services.webhook.use_cases import delivery as _delivery
from services.webhook.use_cases import destinations as _destinations
from services.webhook.use_cases.dependencies import (
    BatchReader,
    DeliveryPolicy,
    Dependencies,
    Resolver,
    Sender,
)

_JITTER_SOURCE = random_source.SystemRandom()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class WebhookHandlers:
    """The webhook service layer, one line per use case; the rules live in the topic modules."""

    def __init__(
        self,
        repository: WebhookRepository,
        *,
        destinations: DestinationPolicy,
        delivery: DeliveryPolicy,
        resolver: Resolver,
        sender: Sender,
        batches: BatchReader,
        clock: Callable[[], datetime] = _utc_now,
        draw: Callable[[], float] = _JITTER_SOURCE.random,
    ) -> None:
        deps = Dependencies(
            repository=repository,
            destinations=destinations,
            delivery=delivery,
            resolver=resolver,
            sender=sender,
            batches=batches,
            clock=clock,
            draw=draw,
        )
        self.dependencies = deps
        # Bound once per service, so a call costs what calling the function does.
        self.validate_url = partial(_destinations.validate_url, deps)

        # Events announced as messages.
        self.batch_queued = partial(announcements.batch_queued, deps)
        self.batches_queued = partial(announcements.batches_queued, deps)
        self.batch_settled = partial(announcements.batch_settled, deps)
        self.batches_settled = partial(announcements.batches_settled, deps)
        self.task_finished = partial(announcements.task_finished, deps)
        self.tasks_finished = partial(announcements.tasks_finished, deps)
        self.spend_alerts = partial(announcements.spend_alerts, deps)

        # Delivery.
        self.claim_due = partial(_delivery.claim_due, deps)
        self.deliver = partial(_delivery.deliver, deps)
        self.release = partial(_delivery.release, deps)

        # Endpoints and signing secrets.
        self.create_endpoint = partial(endpoints.create_endpoint, deps)
        self.list_endpoints = partial(endpoints.list_endpoints, deps)
        self.delete_endpoint = partial(endpoints.delete_endpoint, deps)
        self.rotate_endpoint_secret = partial(signing_secrets.rotate_endpoint_secret, deps)
        self.signing_secret = partial(signing_secrets.signing_secret, deps)
        self.rotate_signing_secret = partial(signing_secrets.rotate_signing_secret, deps)

        # The delivery log and replays.
        self.redeliver = partial(delivery_log.redeliver, deps)
        self.recover_failed = partial(delivery_log.recover_failed, deps)
        self.list_deliveries = partial(delivery_log.list_deliveries, deps)
