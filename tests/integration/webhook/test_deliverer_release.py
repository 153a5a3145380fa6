"""A deliverer that stops (ADR-139): sends that finish within the grace period are recorded; sends
still running when it is cancelled are released at once, unrecorded, and another deliverer sends
them again with the same webhook-id long before their lease would have expired."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid

from services.webhook.entrypoints.deliverer import Deliverer

from .conftest import HandlersFactory
from .receiver import HANG, Receiver
from .test_webhook_delivery import eventually, only_message, settle, status_is

MESSAGES = 5
LEASE_SECONDS = 60.0


async def test_sends_cut_off_by_a_stop_are_released_and_sent_again_at_once(
    make_handlers: HandlersFactory, receiver: Receiver
) -> None:
    handlers = make_handlers(timeout=30.0, lease_seconds=LEASE_SECONDS)
    tenant_id = str(uuid.uuid4())
    batches = [str(uuid.uuid4()) for _ in range(MESSAGES)]
    receiver.script = [HANG] * MESSAGES  # the first send of each hangs; any later one gets 200
    await handlers.create_endpoint(tenant_id, receiver.url(), [], "")
    for batch_id in batches:
        await settle(handlers, tenant_id, batch_id)

    stopping = asyncio.Event()
    first = asyncio.create_task(
        Deliverer(handlers, concurrency=32, claim_batch_size=50, poll_seconds=0.02).run(stopping)
    )

    async def all_in_flight() -> bool:
        return len(receiver.received) == MESSAGES

    await eventually(all_in_flight)
    stopping.set()
    # Stopping, it keeps waiting for its sends (they hang) until the grace period cancels it.
    await asyncio.sleep(0.3)
    assert not first.done()
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    released_at = time.monotonic()

    for batch_id in batches:
        message = await only_message(handlers, tenant_id, batch_id)
        assert message.status == "pending" and message.attempts == (), "released, nothing recorded"

    second_stopping = asyncio.Event()
    second = asyncio.create_task(
        Deliverer(handlers, concurrency=32, claim_batch_size=50, poll_seconds=0.02).run(second_stopping)
    )
    try:
        for batch_id in batches:
            await eventually(functools.partial(status_is, handlers, tenant_id, batch_id, "delivered"))
        taken_over = time.monotonic() - released_at
    finally:
        second_stopping.set()
        await asyncio.wait_for(second, 5)

    assert taken_over < 5.0 < LEASE_SECONDS, "sent again long before the lease would have expired"
    for batch_id in batches:
        message = await only_message(handlers, tenant_id, batch_id)
        assert [attempt.http_status for attempt in message.attempts] == [200]
    ids = [request.headers["webhook-id"] for request in receiver.received]
    assert len(ids) == 2 * MESSAGES and len(set(ids)) == MESSAGES, "each sent twice, same webhook-id"
