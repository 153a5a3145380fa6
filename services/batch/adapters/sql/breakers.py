"""The shared circuit breakers of models (ADR-113): one row per model, changed under a row lock.

SQL style: plain SQL on the autocommit pool. A change reads the row FOR UPDATE, applies the pure
transition of `domain.breaker` at the database's clock, and writes it back in one transaction, so
two workers failing at once count two failures and only one of them becomes the probe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from libs.db import Database
from services.batch.domain.breaker import Breaker, BreakerState

_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"
_ENSURE = "INSERT INTO batch.model_breakers (model) VALUES (%(model)s) ON CONFLICT (model) DO NOTHING"
_COLUMNS = "model, state, failures, outage_since, retry_at, probe_until, opens"
_READ = f"SELECT {_COLUMNS} FROM batch.model_breakers WHERE model = %(model)s"
_LOCK = _READ + " FOR UPDATE"
_READ_WITH_CLOCK = f"""
SELECT {_COLUMNS}, extract(epoch FROM clock_timestamp())::float8
FROM (SELECT 1) AS clock LEFT JOIN batch.model_breakers ON model = %(model)s
"""
_DEGRADED = f"""
SELECT {_COLUMNS}, last_opened_at, extract(epoch FROM clock_timestamp())::float8
FROM batch.model_breakers WHERE state <> 'closed' ORDER BY model
"""
_WRITE = """
UPDATE batch.model_breakers SET state = %(state)s, failures = %(failures)s,
    outage_since = %(outage_since)s, retry_at = %(retry_at)s, probe_until = %(probe_until)s,
    opens = %(opens)s,
    last_opened_at = CASE WHEN %(opened)s THEN clock_timestamp() ELSE last_opened_at END,
    last_closed_at = CASE WHEN %(closed)s THEN clock_timestamp() ELSE last_closed_at END
WHERE model = %(model)s
"""


@dataclass(frozen=True)
class DegradedModel:
    """A model whose breaker is not closed: the breaker, when it last opened, the clock now."""

    breaker: Breaker
    opened_at: datetime | None
    now: float

    @property
    def outage_seconds(self) -> float:
        """How long the outage has lasted."""
        since = self.breaker.outage_since
        return max(0.0, self.now - since) if since is not None else 0.0


Transition = Callable[[Breaker, float], Breaker]


def _breaker(row: Any) -> Breaker:
    return Breaker(row[0], BreakerState(row[1]), row[2], row[3], row[4], row[5], row[6])


class ModelBreakers:
    """The breakers table."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def read(self, model: str) -> tuple[Breaker, float]:
        """The model's breaker (closed when it has no row) and the database's clock, in one
        statement (every attempt at a remote provider asks first)."""
        async with self._db.raw_connection() as conn:
            row = await (await conn.execute(_READ_WITH_CLOCK, {"model": model})).fetchone()
        assert row is not None  # the outer join always yields the clock's row
        found = _breaker(row) if row[0] is not None else Breaker(model)
        return found, float(row[7])

    async def change(self, model: str, transition: Transition) -> tuple[Breaker, Breaker]:
        """Applies `transition` (given the breaker and the clock) under the row's lock; returns
        the breaker before and after."""
        async with self._db.raw_connection() as conn, conn.transaction():
            await conn.execute(_ENSURE, {"model": model})
            now = (await (await conn.execute(_NOW)).fetchone() or (0.0,))[0]
            row = await (await conn.execute(_LOCK, {"model": model})).fetchone()
            before = _breaker(row)
            after = transition(before, float(now))
            if after != before:
                await conn.execute(
                    _WRITE,
                    {
                        "model": model,
                        "state": after.state.value,
                        "failures": after.failures,
                        "outage_since": after.outage_since,
                        "retry_at": after.retry_at,
                        "probe_until": after.probe_until,
                        "opens": after.opens,
                        "opened": after.opens > before.opens,
                        "closed": before.state is not BreakerState.CLOSED
                        and after.state is BreakerState.CLOSED,
                    },
                )
        return before, after

    async def degraded(self) -> list[DegradedModel]:
        """Models whose breaker is not closed, by name (the admin overview)."""
        async with self._db.raw_connection() as conn:
            rows = await (await conn.execute(_DEGRADED)).fetchall()
        return [DegradedModel(_breaker(row), row[7], float(row[8])) for row in rows]
