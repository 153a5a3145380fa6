"""Recovery: one round of repairs after crashes and outages (batches stuck reserving, deadlines
passed, leases expired, batches never finished, windows never topped up)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from libs.errors import ServiceError
from services.batch import metrics as batch_metrics
from services.batch.adapters.sql.store import BatchStore
from services.batch.domain.errors import BATCH_REJECTIONS
from services.batch.use_cases.intake import Intake

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecoveryReport:
    """What one recovery round repaired."""

    reservations_resumed: int = 0
    tasks_requeued: int = 0
    tasks_lost: int = 0
    batches_finished: int = 0
    deadlines_expired: int = 0
    tasks_dispatched: int = 0


class Recovery:
    """The recovery loop's round; safe to run on several replicas."""

    def __init__(self, store: BatchStore, intake: Intake) -> None:
        self._store = store
        self._intake = intake

    async def recover_once(self, *, reserving_grace_seconds: float, limit: int = 500) -> RecoveryReport:
        """One round of repairs after crashes and outages; safe to run on several replicas."""
        resumed = 0
        for batch_id in await self._store.recovery.stale_reserving_batches(reserving_grace_seconds, limit):
            try:
                await self._intake.complete_reservation(batch_id)
            except BATCH_REJECTIONS:
                resumed += 1  # rejected: settled for good
            except ServiceError as refused:
                # Billing is down or refused: the batch stays reserving and the next round retries.
                log.warning("reservation of batch %s not completed: %s", batch_id, refused.message)
            else:
                resumed += 1
        recovery = self._store.recovery
        expired = await recovery.expire_deadlines(limit)
        batch_metrics.batches_reached(expired.finished)
        leases = await recovery.recover_expired_leases(limit)
        batch_metrics.batches_reached(leases.finished)
        forgotten = await recovery.finish_forgotten_batches(limit)
        batch_metrics.batches_reached(forgotten.finished)
        dispatched = await recovery.top_up_windows(limit)
        return RecoveryReport(
            resumed, leases.requeued, leases.failed, forgotten.count, expired.count, dispatched
        )
