"""Use cases of the webhook service: fan events out to messages, deliver them, manage endpoints."""

from __future__ import annotations

import asyncio
import logging
import secrets as random_source
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from libs.errors import InvalidArgument
from services.webhook import metrics as webhook_metrics
from services.webhook.adapters.repository import WebhookRepository
from services.webhook.domain.delivery import AttemptResult, ErrorClass, Verdict, retry_delay, verdict_for
from services.webhook.domain.destinations import (
    DestinationPolicy,
    IpAddress,
    WebhookTarget,
    check_resolved,
    parse_target,
)
from services.webhook.domain.errors import EndpointNotFound, MessageNotFound, UnsafeWebhookUrl
from services.webhook.domain.events import (
    BATCH_QUEUED,
    WebhookEvent,
    batch_url_wants,
    endpoint_wants,
    normalize_event_types,
    settled_event_type,
)
from services.webhook.domain.records import (
    Attempt,
    BatchSnapshot,
    ClaimedMessage,
    Endpoint,
    Message,
    NewMessage,
    RotatedEndpointSecret,
    TenantSecret,
)
from services.webhook.domain.signing import SECRET_BYTES, secret_from_bytes, webhook_headers

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

_JITTER_SOURCE = random_source.SystemRandom()


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[IpAddress]: ...


class Sender(Protocol):
    async def post(
        self, target: WebhookTarget, address: IpAddress, headers: dict[str, str], body: bytes
    ) -> AttemptResult: ...


class BatchReader(Protocol):
    async def batch(self, batch_id: str) -> BatchSnapshot: ...


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard we try: the retry schedule (its length is the budget), jitter and the lease."""

    retry_schedule_seconds: tuple[float, ...]
    jitter_fraction: float
    lease_seconds: float
    secret_overlap_seconds: float


@dataclass(frozen=True)
class QueuedBatch:
    """A batch whose credits were frozen (the batch service's BatchQueued), to announce."""

    batch_id: str
    tenant_id: str
    webhook_url: str
    total_count: int
    required_credits: int
    occurred_at: datetime


@dataclass(frozen=True)
class SettledBatch:
    """A batch billing settled (its BatchSettled), to announce with the settled figures."""

    batch_id: str
    tenant_id: str
    frozen_credits: int
    captured_credits: int
    refunded_credits: int
    settlement_status: str
    occurred_at: datetime


def new_message_id() -> str:
    """A Standard Webhooks message id (`msg_` + 32 hex digits)."""
    return f"msg_{uuid.uuid4().hex}"


def new_secret() -> str:
    return secret_from_bytes(random_source.token_bytes(SECRET_BYTES))


def _utc_now() -> datetime:
    return datetime.now(UTC)


def batch_data(batch: BatchSnapshot) -> dict[str, object]:
    """The batch fields of the REST API (GET /api/enterprise/video-batch/{id})."""

    def moment(value: datetime | None) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value else None

    return {
        "batch_id": batch.batch_id,
        "status": batch.status,
        "total_count": batch.total_count,
        "success_count": batch.success_count,
        "failed_count": batch.failed_count,
        "cancelled_count": batch.cancelled_count,
        "pending_count": batch.pending_count,
        "frozen_credits": batch.frozen_credits,
        "credits_spent": batch.credits_spent,
        "refunded_credits": batch.refunded_credits,
        "settlement_status": batch.settlement_status,
        "created_at": moment(batch.created_at),
        "finished_at": moment(batch.finished_at),
    }


def task_event(
    event_type: str,
    task_id: str,
    batch_id: str,
    tenant_id: str,
    data: dict[str, object],
    occurred_at: datetime,
) -> WebhookEvent:
    """A task outcome to announce (`task.succeeded` or `task.failed`), deduplicated by task id."""
    return WebhookEvent(
        event_type=event_type,
        tenant_id=tenant_id,
        batch_id=batch_id,
        source_key=task_id,
        occurred_at=occurred_at,
        data={"task_id": task_id, "batch_id": batch_id, **data},
    )


class WebhookHandlers:
    """The service layer; transports call these, these call the repository and the domain."""

    def __init__(
        self,
        repository: WebhookRepository,
        *,
        destinations: DestinationPolicy,
        delivery: DeliveryPolicy,
        resolver: Resolver,
        sender: Sender,
        batches: BatchReader,
        clock: Clock = _utc_now,
        draw: Callable[[], float] = _JITTER_SOURCE.random,
    ) -> None:
        self._repository = repository
        self._destinations = destinations
        self._delivery = delivery
        self._resolver = resolver
        self._sender = sender
        self._batches = batches
        self._clock = clock
        self._draw = draw

    # --- destinations -------------------------------------------------------------------------

    async def validate_url(self, url: str) -> WebhookTarget:
        """Refuses (UnsafeWebhookUrl) a URL we would never deliver to, resolving its host."""
        target = parse_target(url, self._destinations)
        addresses = await self._resolver.resolve(target.host, target.port)
        check_resolved(target, addresses, self._destinations)
        return target

    # --- events -> messages -------------------------------------------------------------------

    async def record_event(self, event: WebhookEvent, batch_url: str | None) -> int:
        """Fans one event out to the batch's URL and the tenant's matching endpoints (idempotent)."""
        return await self._record_events([(event, batch_url)])

    async def _record_events(self, events: Sequence[tuple[WebhookEvent, str | None]]) -> int:
        """`record_event` of several (event, batch URL): one endpoint lookup per tenant, one write."""
        endpoints_of = await self._repository.enabled_endpoints_of({event.tenant_id for event, _ in events})
        with_secret: set[str] = set()
        new_messages: list[NewMessage] = []
        for event, batch_url in events:
            if batch_url and batch_url_wants(event.event_type):
                if event.tenant_id not in with_secret:
                    await self._repository.ensure_tenant_secret(event.tenant_id, new_secret())
                    with_secret.add(event.tenant_id)
                new_messages.append(self._message(event, batch_url, None))
            for endpoint in endpoints_of[event.tenant_id]:
                if endpoint_wants(endpoint.event_types, event.event_type):
                    new_messages.append(self._message(event, endpoint.url, endpoint.endpoint_id))
        return await self._repository.add_messages(new_messages, self._clock())

    @staticmethod
    def _message(event: WebhookEvent, url: str, endpoint_id: str | None) -> NewMessage:
        return NewMessage(
            message_id=new_message_id(),
            tenant_id=event.tenant_id,
            batch_id=event.batch_id or None,
            event_type=event.event_type,
            body=event.body(),
            url=url,
            endpoint_id=endpoint_id,
            dedupe_key=event.dedupe_key(f"endpoint:{endpoint_id}" if endpoint_id else "batch_url"),
        )

    async def batch_queued(
        self,
        *,
        batch_id: str,
        tenant_id: str,
        webhook_url: str,
        total_count: int,
        required_credits: int,
        occurred_at: datetime,
    ) -> int:
        """Remembers the batch's webhook_url and announces `batch.queued`."""
        return await self.batches_queued(
            [QueuedBatch(batch_id, tenant_id, webhook_url, total_count, required_credits, occurred_at)]
        )

    async def batches_queued(self, queued: Sequence[QueuedBatch]) -> int:
        """`batch_queued` of several batches: one endpoint lookup per tenant and one write each
        for their webhook_urls and their messages (every accepted batch sends one of these)."""
        await self._repository.remember_batch_urls(
            [(batch.batch_id, batch.tenant_id, batch.webhook_url) for batch in queued if batch.webhook_url]
        )
        return await self._record_events(
            [
                (
                    WebhookEvent(
                        event_type=BATCH_QUEUED,
                        tenant_id=batch.tenant_id,
                        batch_id=batch.batch_id,
                        source_key=batch.batch_id,
                        occurred_at=batch.occurred_at,
                        data={
                            "batch_id": batch.batch_id,
                            "status": "queued",
                            "total_count": batch.total_count,
                            "frozen_credits": batch.required_credits,
                        },
                    ),
                    batch.webhook_url or None,
                )
                for batch in queued
            ]
        )

    async def batch_settled(
        self,
        *,
        batch_id: str,
        tenant_id: str,
        frozen_credits: int,
        captured_credits: int,
        refunded_credits: int,
        settlement_status: str,
        occurred_at: datetime,
    ) -> int:
        """Announces `batch.completed` (or `batch.cancelled`) with the settled figures."""
        return await self.batches_settled(
            [
                SettledBatch(
                    batch_id,
                    tenant_id,
                    frozen_credits,
                    captured_credits,
                    refunded_credits,
                    settlement_status,
                    occurred_at,
                )
            ]
        )

    async def batches_settled(self, settled: Sequence[SettledBatch]) -> int:
        """`batch_settled` of several batches: their snapshots asked concurrently, one lookup of
        their remembered URLs, one endpoint lookup per tenant and one write.

        Counts and status come from the batch service; the money comes from the settlement event
        itself, because the batch service may not have applied that event yet when we ask.
        """
        snapshots = await asyncio.gather(*(self._batches.batch(batch.batch_id) for batch in settled))
        remembered = await self._repository.batch_urls([batch.batch_id for batch in settled])
        events: list[tuple[WebhookEvent, str | None]] = []
        for batch, snapshot in zip(settled, snapshots, strict=True):
            figures = BatchSnapshot(
                **{
                    **snapshot.__dict__,
                    "frozen_credits": batch.frozen_credits,
                    "credits_spent": batch.captured_credits,
                    "refunded_credits": batch.refunded_credits,
                    "settlement_status": batch.settlement_status,
                    "pending_count": 0,
                }
            )
            event = WebhookEvent(
                event_type=settled_event_type(snapshot.status),
                tenant_id=batch.tenant_id,
                batch_id=batch.batch_id,
                source_key=batch.batch_id,
                occurred_at=batch.occurred_at,
                data=batch_data(figures),
            )
            events.append((event, remembered.get(batch.batch_id) or snapshot.webhook_url or None))
        return await self._record_events(events)

    async def task_finished(
        self,
        *,
        event_type: str,
        task_id: str,
        batch_id: str,
        tenant_id: str,
        data: dict[str, object],
        occurred_at: datetime,
    ) -> int:
        """Announces a task outcome to the endpoints that opted in (never to batch URLs)."""
        return await self.tasks_finished(
            [task_event(event_type, task_id, batch_id, tenant_id, data, occurred_at)]
        )

    async def tasks_finished(self, events: Sequence[WebhookEvent]) -> int:
        """Announces task outcomes (see `task_event`) to the endpoints that opted in, in one write.

        A chunk of outcomes costs one endpoint lookup per tenant, not one per task: most tenants
        have no endpoint that asks for task events, and then nothing else happens.
        """
        endpoints_of = await self._repository.enabled_endpoints_of({event.tenant_id for event in events})
        new_messages: list[NewMessage] = []
        for event in events:
            for endpoint in endpoints_of[event.tenant_id]:
                if endpoint_wants(endpoint.event_types, event.event_type):
                    new_messages.append(self._message(event, endpoint.url, endpoint.endpoint_id))
        return await self._repository.add_messages(new_messages, self._clock())

    # --- delivery -----------------------------------------------------------------------------

    async def claim_due(self, limit: int) -> list[ClaimedMessage]:
        """Leases up to `limit` due messages for this deliverer."""
        return await self._repository.claim_due(self._clock(), limit, self._delivery.lease_seconds)

    async def deliver(self, claimed: ClaimedMessage) -> Verdict:
        """One attempt of a claimed message: re-check the destination, POST, record, schedule."""
        attempted_at = self._clock()
        with webhook_metrics.delivery_span(claimed.message_id, claimed.traceparent) as span:
            result = await self._attempt(claimed, attempted_at)
            verdict = verdict_for(result)
            span.set_attributes(
                {"http.response.status_code": result.http_status, "webhook.verdict": verdict.value}
            )
        webhook_metrics.attempt_finished(str(result.error_class) or "delivered")
        next_attempt_at: datetime | None = None
        status = "failed"
        if verdict is Verdict.DELIVERED:
            status = "delivered"
        elif verdict is Verdict.RETRY:
            delay = retry_delay(
                self._delivery.retry_schedule_seconds,
                claimed.round_attempts + 1,
                self._delivery.jitter_fraction,
                self._draw(),
            )
            if delay is not None:
                status = "pending"
                next_attempt_at = self._clock() + timedelta(seconds=delay)
        recorded = await self._repository.record_attempt(
            claimed,
            Attempt(
                attempt_number=0,
                attempted_at=attempted_at,
                duration_ms=result.duration_ms,
                http_status=result.http_status,
                error_class=str(result.error_class),
                response_body=result.response_body,
            ),
            status=status,
            next_attempt_at=next_attempt_at,
            disable_endpoint=verdict is Verdict.DISABLE_ENDPOINT,
        )
        if not recorded:
            log.warning("lease of webhook message %s lost; attempt not recorded", claimed.message_id)
        return verdict

    async def _attempt(self, claimed: ClaimedMessage, attempted_at: datetime) -> AttemptResult:
        # Resolve and check again at send time: the name may now point somewhere else (rebinding).
        try:
            target = parse_target(claimed.url, self._destinations)
            addresses = await self._resolver.resolve(target.host, target.port)
            check_resolved(target, addresses, self._destinations)
        except UnsafeWebhookUrl as refusal:
            return AttemptResult(0, ErrorClass.BLOCKED, 0, refusal.message)
        timestamp = int(attempted_at.timestamp())
        headers = webhook_headers(claimed.secrets, claimed.message_id, timestamp, claimed.body)
        return await self._sender.post(target, addresses[0], headers, claimed.body)

    # --- endpoints and secrets ----------------------------------------------------------------

    async def create_endpoint(
        self, tenant_id: str, url: str, event_types: Sequence[str], description: str
    ) -> tuple[Endpoint, str]:
        """Registers an endpoint after the SSRF check; returns it with its secret (shown once)."""
        chosen = normalize_event_types(event_types)
        await self.validate_url(url)
        endpoint = Endpoint(
            endpoint_id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            url=url,
            event_types=chosen,
            status="enabled",
            created_at=self._clock(),
            description=description,
        )
        secret = new_secret()
        await self._repository.create_endpoint(endpoint, secret)
        return endpoint, secret

    async def list_endpoints(self, tenant_id: str, cursor: str, limit: int) -> tuple[list[Endpoint], str]:
        return await self._repository.list_endpoints(tenant_id, cursor, limit)

    async def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        endpoint = await self._repository.delete_endpoint(tenant_id, _uuid_or_missing(endpoint_id))
        if endpoint is None:
            raise EndpointNotFound(f"endpoint {endpoint_id} not found", endpoint_id=endpoint_id)
        return endpoint

    async def rotate_endpoint_secret(self, tenant_id: str, endpoint_id: str) -> RotatedEndpointSecret:
        """A new secret for the endpoint; the old one signs alongside it during the overlap."""
        overlap_until = self._clock() + timedelta(seconds=self._delivery.secret_overlap_seconds)
        rotated = await self._repository.rotate_endpoint_secret(
            tenant_id, _uuid_or_missing(endpoint_id), new_secret(), overlap_until
        )
        if rotated is None:
            raise EndpointNotFound(f"endpoint {endpoint_id} not found", endpoint_id=endpoint_id)
        return rotated

    async def signing_secret(self, tenant_id: str) -> TenantSecret:
        return await self._repository.ensure_tenant_secret(tenant_id, new_secret())

    async def rotate_signing_secret(self, tenant_id: str) -> TenantSecret:
        now = self._clock()
        overlap_until = now + timedelta(seconds=self._delivery.secret_overlap_seconds)
        return await self._repository.rotate_tenant_secret(tenant_id, new_secret(), now, overlap_until)

    # --- replay and reads ---------------------------------------------------------------------

    async def redeliver(self, tenant_id: str, message_id: str) -> Message:
        """Sends a message again, same webhook-id, fresh attempt budget."""
        if not message_id.startswith("msg_") or not await self._repository.redeliver(
            tenant_id, message_id, self._clock()
        ):
            raise MessageNotFound(f"message {message_id} not found", message_id=message_id)
        found = await self._repository.message(tenant_id, message_id)
        if found is None:
            raise MessageNotFound(f"message {message_id} not found", message_id=message_id)
        return found

    async def recover_failed(self, tenant_id: str, since: datetime) -> int:
        return await self._repository.recover_failed(tenant_id, since, self._clock())

    async def list_deliveries(
        self, tenant_id: str, batch_id: str, cursor: str, limit: int
    ) -> tuple[list[Message], str]:
        if batch_id and _uuid_or_missing(batch_id) != batch_id.lower():
            raise InvalidArgument("batch_id must be a UUID", batch_id=batch_id)
        return await self._repository.list_messages(tenant_id, batch_id.lower() or None, cursor, limit)


def _uuid_or_missing(value: str) -> str:
    """The id if it is a UUID, else the nil UUID (which matches nothing): a 404, not a 500."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return str(uuid.UUID(int=0))
