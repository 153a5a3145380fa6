"""Bus consumers: settlements from billing, dispatch messages for workers. Thin translators."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from reelbatch.proto.events.v1 import events_pb2

from libs.lifecycle import wait_at_most
from libs.messaging.contract import Delivery
from services.batch.domain.batch import BatchId, Settlement, SettlementStatus, TaskId
from services.batch.handlers import BatchHandlers
from services.batch.use_cases.execution import TaskExecutor

log = logging.getLogger(__name__)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class SettlementConsumer:
    """Applies BatchSettled events (in chunks, idempotently)."""

    def __init__(self, handlers: BatchHandlers) -> None:
        self._handlers = handlers

    async def __call__(self, deliveries: Sequence[Delivery]) -> None:
        settlements: list[Settlement] = []
        for delivery in deliveries:
            event = delivery.message
            assert isinstance(event, events_pb2.BatchSettled)
            batch_id = _uuid(event.batch_id)
            try:
                status = SettlementStatus(event.settlement_status)
            except ValueError:
                status = SettlementStatus.PENDING
            if batch_id is None or status is SettlementStatus.PENDING:
                log.error("ignoring malformed BatchSettled %s", delivery.envelope.message_id)
                continue
            settled_at = (
                event.occurred_at.ToDatetime(tzinfo=UTC)
                if event.HasField("occurred_at")
                else datetime.now(UTC)
            )
            settlements.append(Settlement(BatchId(batch_id), status, settled_at))
        await self._handlers.settlements.record_settlements(settlements)


class DispatchConsumer:
    """Runs TaskDispatch messages; can stop taking new ones and wait for those in progress."""

    def __init__(self, executor: TaskExecutor) -> None:
        self._executor = executor
        self._accepting = True
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, deliveries: Sequence[Delivery]) -> None:
        if not self._accepting:
            # Parked, unacknowledged, until the bus closes: the broker then hands the message
            # to another worker. Raising would nack it with a back-off and log an error instead.
            await asyncio.Event().wait()
        self._active += 1
        self._idle.clear()
        handed_back = False
        try:
            for delivery in deliveries:
                event = delivery.message
                assert isinstance(event, events_pb2.TaskDispatch)
                batch_id = _uuid(event.batch_id)
                task_ids = [TaskId(parsed) for raw in event.task_ids if (parsed := _uuid(raw)) is not None]
                if batch_id is None:
                    log.error("ignoring TaskDispatch without a batch id %s", delivery.envelope.message_id)
                    continue
                result = await self._executor.execute_dispatch(BatchId(batch_id), task_ids)
                handed_back = handed_back or result.unclaimed > 0
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()
        if handed_back:
            # The worker stopped claiming with tasks of this message still queued: keep it
            # unacknowledged so the broker hands it to another worker when this one disconnects.
            await asyncio.Event().wait()

    async def drain(self, grace_seconds: float) -> bool:
        """Stops taking new messages; True if those in progress finished within the grace period."""
        self._accepting = False
        self._executor.stop_claiming()
        try:
            await wait_at_most(self._idle.wait(), grace_seconds)
        except TimeoutError:
            return False
        return True
