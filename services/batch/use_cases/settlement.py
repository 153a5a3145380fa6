"""Settlement: billing's settlements of finished batches recorded on them."""

from __future__ import annotations

from collections.abc import Sequence

from services.batch.adapters.sql.store import BatchStore
from services.batch.domain.batch import Settlement


class Settlements:
    """Records billing's settlements."""

    def __init__(self, store: BatchStore) -> None:
        self._store = store

    async def record_settlements(self, settlements: Sequence[Settlement]) -> int:
        """Applies billing's settlements (idempotent); returns how many batches changed."""
        return await self._store.settlements.record_settlements(settlements)
