"""Delivery over real HTTP: signing, retries, timeouts, 410, replay, isolation, crash, SSRF."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from reelbatch.proto.events.v1 import events_pb2
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from libs.db import Database
from libs.errors import InvalidArgument
from libs.messaging.contract import Delivery, Envelope
from services.webhook.domain.errors import EndpointNotFound, UnsafeWebhookUrl
from services.webhook.domain.records import Message
from services.webhook.entrypoints.consumer import WebhookEventConsumer
from services.webhook.use_cases.handlers import WebhookHandlers

from .conftest import HandlersFactory
from .receiver import HANG, Receiver

NOW = datetime(2026, 1, 20, 10, 0, tzinfo=UTC)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def settle(handlers: WebhookHandlers, tenant_id: str, batch_id: str) -> None:
    await handlers.batch_settled(
        batch_id=batch_id,
        tenant_id=tenant_id,
        frozen_credits=200,
        captured_credits=190,
        refunded_credits=10,
        settlement_status="refunded",
        occurred_at=NOW,
    )


async def only_message(handlers: WebhookHandlers, tenant_id: str, batch_id: str) -> Message:
    found, _ = await handlers.list_deliveries(tenant_id, batch_id, "", 50)
    assert len(found) == 1
    return found[0]


async def status_is(handlers: WebhookHandlers, tenant_id: str, batch_id: str, status: str) -> bool:
    return (await only_message(handlers, tenant_id, batch_id)).status == status


async def test_settled_batch_is_delivered_once_with_a_signature_standardwebhooks_accepts(
    make_handlers: HandlersFactory, receiver: Receiver, run_deliverer: Callable[[WebhookHandlers], None]
) -> None:
    handlers = make_handlers()
    tenant_id, batch_id = str(uuid.uuid4()), str(uuid.uuid4())
    await handlers.batch_queued(
        batch_id=batch_id,
        tenant_id=tenant_id,
        webhook_url=receiver.url(),
        total_count=20,
        required_credits=200,
        occurred_at=NOW,
    )
    await settle(handlers, tenant_id, batch_id)
    await settle(handlers, tenant_id, batch_id)  # a redelivered event adds nothing
    run_deliverer(handlers)

    await eventually(lambda: _count(receiver, 2))
    await asyncio.sleep(0)
    completed = [r for r in receiver.received if json.loads(r.body)["type"] == "batch.completed"]
    assert len(completed) == 1
    secret = (await handlers.signing_secret(tenant_id)).secret
    payload = Webhook(secret).verify(completed[0].body, completed[0].headers)
    assert payload["data"] == {
        "batch_id": batch_id,
        "status": "partial",
        "total_count": 20,
        "success_count": 19,
        "failed_count": 1,
        "cancelled_count": 0,
        "pending_count": 0,
        "frozen_credits": 200,
        "credits_spent": 190,
        "refunded_credits": 10,
        "settlement_status": "refunded",
        "created_at": "2026-01-20T00:00:00Z",
        "finished_at": "2026-01-20T00:01:00Z",
        "name": None,
        "metadata": {},
    }


async def _count(receiver: Receiver, expected: int) -> bool:
    return len(receiver.received) >= expected


async def test_receiver_failing_twice_gets_three_attempts_with_the_same_webhook_id(
    make_handlers: HandlersFactory, receiver: Receiver, run_deliverer: Callable[[WebhookHandlers], None]
) -> None:
    handlers = make_handlers()
    tenant_id, batch_id = str(uuid.uuid4()), str(uuid.uuid4())
    receiver.script = [500, 500, 200]
    await handlers.create_endpoint(tenant_id, receiver.url(), [], "")
    await settle(handlers, tenant_id, batch_id)
    run_deliverer(handlers)

    await eventually(lambda: status_is(handlers, tenant_id, batch_id, "delivered"))
    message = await only_message(handlers, tenant_id, batch_id)
    assert [a.http_status for a in message.attempts] == [500, 500, 200]
    assert [a.error_class for a in message.attempts] == ["5xx", "5xx", ""]
    assert {r.headers["webhook-id"] for r in receiver.received} == {message.message_id}
    assert len(receiver.received) == 3


async def test_hanging_receiver_is_recorded_as_timeout_and_retried(
    make_handlers: HandlersFactory, receiver: Receiver, run_deliverer: Callable[[WebhookHandlers], None]
) -> None:
    handlers = make_handlers(timeout=0.3)
    tenant_id, batch_id = str(uuid.uuid4()), str(uuid.uuid4())
    receiver.script = [HANG, 200]
    await handlers.create_endpoint(tenant_id, receiver.url(), [], "")
    await settle(handlers, tenant_id, batch_id)
    run_deliverer(handlers)

    await eventually(lambda: status_is(handlers, tenant_id, batch_id, "delivered"))
    attempts = (await only_message(handlers, tenant_id, batch_id)).attempts
    assert [(a.error_class, a.http_status) for a in attempts] == [("timeout", 0), ("", 200)]
    assert attempts[0].duration_ms >= 250


async def test_gone_disables_the_endpoint_and_exhausted_messages_fail_then_replay_delivers(
    make_handlers: HandlersFactory, receiver: Receiver, run_deliverer: Callable[[WebhookHandlers], None]
) -> None:
    handlers = make_handlers()
    tenant_id = str(uuid.uuid4())
    gone_batch, exhausted_batch = str(uuid.uuid4()), str(uuid.uuid4())
    gone = Receiver(default=410)
    await gone.start()
    try:
        endpoint, _ = await handlers.create_endpoint(tenant_id, gone.url(), [], "")
        await settle(handlers, tenant_id, gone_batch)
        receiver.script = [503, 503, 503]
        await handlers.batch_queued(
            batch_id=exhausted_batch,
            tenant_id=str(uuid.uuid4()),
            webhook_url=receiver.url(),
            total_count=1,
            required_credits=10,
            occurred_at=NOW,
        )
        run_deliverer(handlers)

        await eventually(lambda: status_is(handlers, tenant_id, gone_batch, "failed"))
        listed, _ = await handlers.list_endpoints(tenant_id, "", 10)
        assert [(e.endpoint_id, e.status) for e in listed] == [(endpoint.endpoint_id, "disabled")]
        assert len(gone.received) == 1

        await eventually(lambda: status_is(handlers, "", exhausted_batch, "failed"))
        failed = await only_message(handlers, "", exhausted_batch)
        assert [a.http_status for a in failed.attempts] == [503, 503, 503]

        await handlers.redeliver("", failed.message_id)
        await eventually(lambda: status_is(handlers, "", exhausted_batch, "delivered"))
        assert {r.headers["webhook-id"] for r in receiver.received} == {failed.message_id}
        assert len(receiver.received) == 4
    finally:
        await gone.stop()


async def test_a_hanging_endpoint_does_not_delay_two_hundred_batches_to_another(
    make_handlers: HandlersFactory, receiver: Receiver, run_deliverer: Callable[[WebhookHandlers], None]
) -> None:
    handlers = make_handlers(timeout=30.0)
    hanging = Receiver(default=HANG)
    await hanging.start()
    try:
        slow_tenant, fast_tenant = str(uuid.uuid4()), str(uuid.uuid4())
        await handlers.create_endpoint(slow_tenant, hanging.url(), [], "")
        await handlers.create_endpoint(fast_tenant, receiver.url(), [], "")
        for _ in range(5):
            await settle(handlers, slow_tenant, str(uuid.uuid4()))
        run_deliverer(handlers)
        await eventually(lambda: _count(hanging, 5))
        started = time.monotonic()
        for _ in range(200):
            await settle(handlers, fast_tenant, str(uuid.uuid4()))

        await eventually(lambda: _count(receiver, 200), timeout=20.0)
        # Far less than the 30 s the hanging endpoint holds its own slots for.
        assert time.monotonic() - started < 15
        assert len(hanging.received) == 5
    finally:
        await hanging.stop()


async def test_a_crashed_delivery_is_resent_after_its_lease_with_the_same_webhook_id(
    make_handlers: HandlersFactory, receiver: Receiver, run_deliverer: Callable[[WebhookHandlers], None]
) -> None:
    crashed = make_handlers(lease_seconds=0.5)
    tenant_id, batch_id = str(uuid.uuid4()), str(uuid.uuid4())
    await crashed.create_endpoint(tenant_id, receiver.url(), [], "")
    await settle(crashed, tenant_id, batch_id)
    # The first deliverer leases the message and dies before recording anything (other tests'
    # messages released by their stopped deliverers may be due too: they are leased alike).
    leased = await crashed.claim_due(100)
    assert (await only_message(crashed, tenant_id, batch_id)).message_id in [m.message_id for m in leased]
    assert await crashed.claim_due(100) == []

    run_deliverer(make_handlers())
    await eventually(lambda: status_is(crashed, tenant_id, batch_id, "delivered"))
    message = await only_message(crashed, tenant_id, batch_id)
    assert [r.headers["webhook-id"] for r in receiver.received] == [message.message_id]
    assert len(message.attempts) == 1


@pytest.mark.parametrize(
    "url", ["https://169.254.169.254/latest", "https://10.0.0.1/hook", "https://localhost/hook"]
)
async def test_private_and_metadata_destinations_are_refused_when_not_allowed(
    make_handlers: HandlersFactory, url: str
) -> None:
    handlers = make_handlers(allow_private=False)

    with pytest.raises(UnsafeWebhookUrl):
        await handlers.validate_url(url)
    with pytest.raises(UnsafeWebhookUrl):
        await handlers.create_endpoint(str(uuid.uuid4()), url, [], "")


async def test_delivery_time_check_blocks_a_destination_that_became_private(
    make_handlers: HandlersFactory, receiver: Receiver, run_deliverer: Callable[[WebhookHandlers], None]
) -> None:
    registering = make_handlers(allow_private=True)
    tenant_id, batch_id = str(uuid.uuid4()), str(uuid.uuid4())
    await registering.create_endpoint(tenant_id, receiver.url(), [], "")
    await settle(registering, tenant_id, batch_id)

    run_deliverer(make_handlers(allow_private=False))
    await eventually(lambda: status_is(registering, tenant_id, batch_id, "failed"))
    attempts = (await only_message(registering, tenant_id, batch_id)).attempts
    assert [a.error_class for a in attempts] == ["blocked"]
    assert receiver.received == []


async def test_rotation_sends_both_signatures_and_each_secret_verifies(
    make_handlers: HandlersFactory, receiver: Receiver, run_deliverer: Callable[[WebhookHandlers], None]
) -> None:
    handlers = make_handlers()
    tenant_id, batch_id = str(uuid.uuid4()), str(uuid.uuid4())
    old = (await handlers.signing_secret(tenant_id)).secret
    rotated = await handlers.rotate_signing_secret(tenant_id)
    assert rotated.previous_secret == old and rotated.secret != old
    await handlers.batch_queued(
        batch_id=batch_id,
        tenant_id=tenant_id,
        webhook_url=receiver.url(),
        total_count=1,
        required_credits=10,
        occurred_at=NOW,
    )
    run_deliverer(handlers)

    await eventually(lambda: _count(receiver, 1))
    request = receiver.received[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, rotated.secret):
        assert Webhook(secret).verify(request.body, request.headers)["type"] == "batch.queued"


async def test_task_events_reach_only_endpoints_that_opted_in(make_handlers: HandlersFactory) -> None:
    handlers = make_handlers()
    tenant_id, batch_id = str(uuid.uuid4()), str(uuid.uuid4())
    await handlers.create_endpoint(tenant_id, "http://127.0.0.1:9/default", [], "")
    opted, _ = await handlers.create_endpoint(tenant_id, "http://127.0.0.1:9/tasks", ["task.failed"], "")
    task_id = str(uuid.uuid4())
    for _ in range(2):
        await handlers.task_finished(
            event_type="task.failed",
            task_id=task_id,
            batch_id=batch_id,
            tenant_id=tenant_id,
            data={"status": "failed"},
            occurred_at=NOW,
        )

    found, _ = await handlers.list_deliveries(tenant_id, batch_id, "", 50)
    assert [(m.endpoint_id, m.event_type) for m in found] == [(opted.endpoint_id, "task.failed")]


async def test_a_chunk_of_task_outcomes_reaches_the_opted_in_endpoints_once_per_task(
    make_handlers: HandlersFactory,
) -> None:
    handlers = make_handlers()
    consumer = WebhookEventConsumer(handlers, "http://api.test")
    tenant_id, batch_id = str(uuid.uuid4()), str(uuid.uuid4())
    await handlers.create_endpoint(tenant_id, "http://127.0.0.1:9/default", [], "")
    failures, _ = await handlers.create_endpoint(tenant_id, "http://127.0.0.1:9/failed", ["task.failed"], "")
    everything, _ = await handlers.create_endpoint(
        tenant_id, "http://127.0.0.1:9/all", ["task.succeeded", "task.failed"], ""
    )
    ok, refused = str(uuid.uuid4()), str(uuid.uuid4())
    chunk = events_pb2.TaskOutcomes(
        batch_id=batch_id,
        tenant_id=tenant_id,
        succeeded=[events_pb2.TaskSucceeded(task_id=ok, batch_id=batch_id, tenant_id=tenant_id, attempts=1)],
        failed=[
            events_pb2.TaskFailed(
                task_id=refused, batch_id=batch_id, tenant_id=tenant_id, failure_type="content_policy"
            )
        ],
    )
    delivery = Delivery(envelope=Envelope.of("task.outcomes", chunk), message=chunk, redelivered=False)
    # Delivered twice (at least once): the dedupe keys keep one message per task and endpoint.
    await consumer.handle([delivery])
    await consumer.handle([delivery])

    found, _ = await handlers.list_deliveries(tenant_id, batch_id, "", 50)
    assert sorted((m.endpoint_id or "", m.event_type) for m in found) == sorted(
        [
            (failures.endpoint_id, "task.failed"),
            (everything.endpoint_id, "task.failed"),
            (everything.endpoint_id, "task.succeeded"),
        ]
    )


# The batch service announces a group in one BatchesQueued; a lone BatchQueued is what it
# published before, still read after an upgrade.
@pytest.mark.parametrize("grouped", [True, False], ids=["one BatchesQueued", "lone BatchQueued"])
async def test_queued_batches_delivered_together_are_announced_once_each_to_their_urls_and_endpoints(
    make_handlers: HandlersFactory, grouped: bool
) -> None:
    handlers = make_handlers()
    consumer = WebhookEventConsumer(handlers, "http://api.test")
    tenant_id, quiet_tenant = str(uuid.uuid4()), str(uuid.uuid4())
    endpoint, _ = await handlers.create_endpoint(tenant_id, "http://127.0.0.1:9/all", [], "")
    with_url, plain, other = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())

    def queued(batch_id: str, tenant: str, url: str = "") -> events_pb2.BatchQueued:
        return events_pb2.BatchQueued(
            batch_id=batch_id, tenant_id=tenant, webhook_url=url, total_count=10, required_credits=100
        )

    def delivery(message: events_pb2.BatchQueued | events_pb2.BatchesQueued) -> Delivery:
        return Delivery(envelope=Envelope.of("batch.queued", message), message=message, redelivered=False)

    announced = [
        queued(with_url, tenant_id, "http://127.0.0.1:9/hook"),
        queued(plain, tenant_id),
        queued(other, quiet_tenant),
    ]
    group = (
        [delivery(events_pb2.BatchesQueued(batches=announced))]
        if grouped
        else [delivery(message) for message in announced]
    )
    # Delivered twice (at least once): the dedupe keys keep one message per batch and destination.
    await consumer.handle(group)
    await consumer.handle(group)

    def destinations(found: list[Message]) -> list[tuple[str, str]]:
        return sorted((m.endpoint_id or m.url, m.event_type) for m in found)

    first, _ = await handlers.list_deliveries(tenant_id, with_url, "", 50)
    assert destinations(first) == sorted(
        [("http://127.0.0.1:9/hook", "batch.queued"), (endpoint.endpoint_id, "batch.queued")]
    )
    second, _ = await handlers.list_deliveries(tenant_id, plain, "", 50)
    assert destinations(second) == [(endpoint.endpoint_id, "batch.queued")]
    assert (await handlers.list_deliveries(quiet_tenant, other, "", 50))[0] == []


async def test_settled_batches_delivered_together_each_announce_their_figures_once(
    make_handlers: HandlersFactory, database: Database
) -> None:
    handlers = make_handlers()
    consumer = WebhookEventConsumer(handlers, "http://api.test")
    tenant_id = str(uuid.uuid4())
    endpoint, _ = await handlers.create_endpoint(tenant_id, "http://127.0.0.1:9/all", [], "")
    with_url, plain = str(uuid.uuid4()), str(uuid.uuid4())
    await handlers.batch_queued(
        batch_id=with_url,
        tenant_id=tenant_id,
        webhook_url="http://127.0.0.1:9/hook",
        total_count=20,
        required_credits=200,
        occurred_at=NOW,
    )

    def settled(batch_id: str, refunded: int) -> Delivery:
        message = events_pb2.BatchSettled(
            batch_id=batch_id,
            tenant_id=tenant_id,
            frozen_credits=200,
            captured_credits=200 - refunded,
            refunded_credits=refunded,
            settlement_status="refunded" if refunded else "settled",
        )
        return Delivery(envelope=Envelope.of("batch.settled", message), message=message, redelivered=False)

    group = [settled(with_url, 10), settled(plain, 0)]
    await consumer.handle(group)
    await consumer.handle(group)  # redelivered: nothing new

    first, _ = await handlers.list_deliveries(tenant_id, with_url, "", 50)
    completed = [m for m in first if m.event_type == "batch.completed"]
    assert sorted(m.endpoint_id or m.url for m in completed) == sorted(
        ["http://127.0.0.1:9/hook", endpoint.endpoint_id]
    )
    second, _ = await handlers.list_deliveries(tenant_id, plain, "", 50)
    assert [(m.endpoint_id, m.event_type) for m in second] == [(endpoint.endpoint_id, "batch.completed")]
    async with database.connection() as conn:
        bodies = (
            await conn.execute(
                text(
                    "SELECT batch_id, body FROM webhook.messages WHERE event_type = 'batch.completed'"
                    " AND tenant_id = :t"
                ),
                {"t": uuid.UUID(tenant_id)},
            )
        ).all()
    figures = {(str(row.batch_id), json.loads(row.body)["data"]["refunded_credits"]) for row in bodies}
    assert figures == {(with_url, 10), (plain, 0)}


async def test_endpoint_rotation_signs_with_both_secrets_during_the_overlap_and_only_the_new_after(
    make_handlers: HandlersFactory, receiver: Receiver, run_deliverer: Callable[[WebhookHandlers], None]
) -> None:
    handlers = make_handlers()
    tenant_id = str(uuid.uuid4())
    endpoint, old = await handlers.create_endpoint(tenant_id, receiver.url(), [], "")
    rotated = await handlers.rotate_endpoint_secret(tenant_id, endpoint.endpoint_id)
    assert rotated.secret.startswith("whsec_") and rotated.secret != old
    await settle(handlers, tenant_id, str(uuid.uuid4()))
    run_deliverer(handlers)

    await eventually(lambda: _count(receiver, 1))
    during = receiver.received[0]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, rotated.secret):
        assert Webhook(secret).verify(during.body, during.headers)["type"] == "batch.completed"

    # A rotation made two hours ago with a one-hour overlap: the replaced secret has expired.
    earlier = make_handlers(clock=lambda: datetime.now(UTC) - timedelta(hours=2))
    expired = await earlier.rotate_endpoint_secret(tenant_id, endpoint.endpoint_id)
    await settle(handlers, tenant_id, str(uuid.uuid4()))

    await eventually(lambda: _count(receiver, 2))
    after = receiver.received[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert Webhook(expired.secret).verify(after.body, after.headers)["type"] == "batch.completed"
    with pytest.raises(WebhookVerificationError):
        Webhook(rotated.secret).verify(after.body, after.headers)


async def test_rotating_another_tenants_or_a_deleted_endpoint_is_not_found(
    make_handlers: HandlersFactory,
) -> None:
    handlers = make_handlers()
    owner = str(uuid.uuid4())
    endpoint, _ = await handlers.create_endpoint(owner, "http://127.0.0.1:9/hook", [], "")
    with pytest.raises(EndpointNotFound):
        await handlers.rotate_endpoint_secret(str(uuid.uuid4()), endpoint.endpoint_id)
    await handlers.delete_endpoint(owner, endpoint.endpoint_id)
    with pytest.raises(EndpointNotFound):
        await handlers.rotate_endpoint_secret(owner, endpoint.endpoint_id)
    with pytest.raises(EndpointNotFound):
        await handlers.rotate_endpoint_secret(owner, "not-a-uuid")


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("2026-01-01T00:00:00+00:00|x"),
        _cursor(f"2026-01-01T00:00:00+00:00|{'9' * 30}"),
        _cursor("2026-01-01T00:00:00|0f8fad5b-d9cb-469f-a165-70867728950e"),
        _cursor("not a time|0f8fad5b-d9cb-469f-a165-70867728950e"),
        "%%%",
    ],
)
async def test_a_cursor_that_is_none_of_ours_is_invalid_argument(
    make_handlers: HandlersFactory, cursor: str
) -> None:
    handlers = make_handlers()

    with pytest.raises(InvalidArgument) as refused:
        await handlers.list_endpoints(str(uuid.uuid4()), cursor, 10)

    assert refused.value.details == {"field": "cursor"}
