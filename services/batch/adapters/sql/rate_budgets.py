"""The shared requests-per-minute budgets of provider routes (ADR-148): one row per budget.

SQL style: plain SQL on the autocommit pool. A draw locks the budget's row (created on first use
by the same statement), applies the pure `domain.rate_budget.draw` at the database's clock and
writes the kept grants back in one transaction, so two workers drawing at once never both take
the last call of a window.
"""

from __future__ import annotations

from libs.db import Database
from services.batch.domain.rate_budget import Draw, RateBudget, draw

# Creates the row on first use and locks it either way; the clock is read in the same statement.
_LOCK = """
INSERT INTO batch.rate_budgets AS b (budget) VALUES (%(budget)s)
ON CONFLICT (budget) DO UPDATE SET budget = b.budget
RETURNING b.grants, extract(epoch FROM clock_timestamp())::float8
"""
_WRITE = "UPDATE batch.rate_budgets SET grants = %(grants)s WHERE budget = %(budget)s"
_GRANTED_SINCE = """
SELECT budget, cardinality(array(SELECT g FROM unnest(grants) AS g
    WHERE g > extract(epoch FROM clock_timestamp()) - %(seconds)s))
FROM batch.rate_budgets ORDER BY budget
"""


class RateBudgets:
    """The rate budgets table."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def draw(self, budget_key: str, budget: RateBudget) -> Draw:
        """Asks the budget `budget_key` for one create call now (see `domain.rate_budget`)."""
        async with self._db.raw_connection() as conn, conn.transaction():
            row = await (await conn.execute(_LOCK, {"budget": budget_key})).fetchone()
            assert row is not None  # the upsert always returns its row
            grants, now = list(row[0] or ()), float(row[1])
            result = draw(grants, now, budget)
            # A refused draw that dropped no expired grant leaves the row as it was.
            if result.granted or len(result.grants) != len(grants):
                await conn.execute(_WRITE, {"budget": budget_key, "grants": list(result.grants)})
        return result

    async def granted_since(self, seconds: float) -> dict[str, int]:
        """Calls granted in the last `seconds`, per budget (operators and tests)."""
        async with self._db.raw_connection() as conn:
            rows = await (await conn.execute(_GRANTED_SINCE, {"seconds": seconds})).fetchall()
        return {str(row[0]): int(row[1]) for row in rows}
