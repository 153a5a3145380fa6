"""Cancel: a customer's cancel of a batch (queued tasks at once, running ones by their workers;
all refunded). A deadline's cancel is the recovery loop's."""

from __future__ import annotations

from services.batch import metrics as batch_metrics
from services.batch.adapters.sql.store import BatchStore
from services.batch.domain.batch import BatchView, parse_batch_id
from services.batch.domain.errors import BatchNotFound
from services.batch.use_cases.reads import tenant_scope


class Cancellation:
    """Cancels batches on their customer's request."""

    def __init__(self, store: BatchStore) -> None:
        self._store = store

    async def cancel_batch(self, tenant_id: str, batch_id: str) -> BatchView:
        """Cancels the batch: queued tasks at once, running ones by their workers; all refunded."""
        parsed = parse_batch_id(batch_id)
        scope = tenant_scope(tenant_id)
        finished = await self._store.cancels.cancel_batch(parsed, scope)
        if finished is None:
            raise BatchNotFound("batch not found", batch_id=batch_id)
        batch_metrics.batches_reached(finished)
        view = await self._store.reads.batch_view(parsed, scope)
        assert view is not None, "batches are never deleted"
        return view
