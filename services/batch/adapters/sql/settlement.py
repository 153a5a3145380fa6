"""Settlement: billing's verdict on a finished batch (settled or refunded) recorded once.

SQL style: plain SQL run by psycopg on the connection of a SQLAlchemy transaction (`run_sql`).
"""

from __future__ import annotations

from collections.abc import Sequence

from libs.db import Database, run_sql
from services.batch.adapters.sql.statements import locked_batch_ids
from services.batch.domain.batch import BatchId, Settlement

_RECORD_SETTLEMENTS = f"""
WITH pending AS ({locked_batch_ids("settlement_status = 'pending'")})
UPDATE batch.batches AS b SET settlement_status = v.status, settled_at = v.settled_at
FROM unnest(CAST(%(ids)b AS uuid[]), CAST(%(statuses)b AS text[]), CAST(%(settled_at)b AS timestamptz[]))
    AS v(id, status, settled_at)
WHERE b.id = v.id AND b.id IN (SELECT id FROM pending)
RETURNING b.id
"""


class BatchSettlements:
    """Records billing's settlements of batches."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def record_settlements(self, settlements: Sequence[Settlement]) -> int:
        """Marks batches settled or refunded, once; returns how many changed.

        One statement for the whole chunk (the first settlement of a batch counts), the rows
        locked in id order.
        """
        first: dict[BatchId, Settlement] = {}
        for settlement in settlements:
            first.setdefault(settlement.batch_id, settlement)
        if not first:
            return 0
        ordered = sorted(first)
        async with self._db.connection() as conn:
            rows = await run_sql(
                conn,
                _RECORD_SETTLEMENTS,
                {
                    "ids": ordered,
                    "statuses": [first[batch_id].status.value for batch_id in ordered],
                    "settled_at": [first[batch_id].settled_at for batch_id in ordered],
                },
            )
        return len(rows)
