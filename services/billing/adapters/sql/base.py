"""What every topic's queries share: the connection of the transaction they run in, and the insert
of a domain record whose fields name the table's columns."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection

_COLUMN_NAMES: dict[Table, tuple[str, ...]] = {}


def record_values(table: Table, record: object, /, **differing: Any) -> dict[str, Any]:
    """The values of one row of `table` read by column name from `record`, except the `differing`
    ones given; a column the record has no attribute for (its id, a server default) is left out.

    The write-side counterpart of `libs.field_mapping.to_record`: column names are read once per
    table, then one getattr per column (for logs and payments, not for the ledger's hot writes).
    """
    names = _COLUMN_NAMES.get(table)
    if names is None:
        names = _COLUMN_NAMES[table] = tuple(column.name for column in table.columns)
    values = {
        name: getattr(record, name) for name in names if name not in differing and hasattr(record, name)
    }
    values.update(differing)
    return values


class TransactionQueries:
    """Base of the topic query classes that `LedgerTransaction` groups: each runs on the connection
    of one transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def _insert_returning_id(self, table: Table, record: object, /, **differing: Any) -> int:
        """Inserts `record` as one row of `table` (see `record_values`); returns the row's new id."""
        inserted = await self._conn.execute(
            insert(table).values(record_values(table, record, **differing)).returning(table.c.id)
        )
        return int(inserted.scalar_one())
