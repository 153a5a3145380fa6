"""The shared circuit breakers of models (ADR-113): one row per model, changed under a row lock.

SQL style: plain SQL on the autocommit pool. A change reads the row FOR UPDATE, applies the pure
transition of `domain.breaker` at the database's clock, and writes it back in one transaction, so
two workers failing at once count two failures and only one of them becomes the probe.

Every attempt at a remote provider asks its breaker first and every success asks again: a worker
starting thousands of jobs at once asked thousands of times in the same second (ADR-161). An
attempt's look (`recent`) is therefore answered from a read at most `recent_seconds` old, one read
per model in flight at a time; this process's own changes replace it at once, another worker's
are seen within `recent_seconds`. Changes themselves always go to the row under its lock.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from libs.db import Database
from libs.expiring_cache import ExpiringCache
from libs.group_commit import GroupCommitter
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


# How old a breaker read an attempt may be answered with (see the module docstring).
RECENT_SECONDS = 1.0
_RECENT_MODELS = 1024
# Changes of one model applied in one transaction at most (each is a few comparisons).
_CHANGE_GROUP_SIZE = 1000


class ModelBreakers:
    """The breakers table."""

    def __init__(
        self,
        database: Database,
        *,
        recent_seconds: float = RECENT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = database
        self._clock = clock
        # By model: the breaker, the database's clock when read, and our clock then.
        self._recent: ExpiringCache[str, tuple[Breaker, float, float]] = ExpiringCache(
            recent_seconds, _RECENT_MODELS, clock
        )
        self._reading: dict[str, asyncio.Future[tuple[Breaker, float]]] = {}
        self._changes: dict[str, GroupCommitter[Transition, tuple[Breaker, Breaker]]] = {}

    async def recent(self, model: str) -> tuple[Breaker, float]:
        """`read`, answered from one at most `recent_seconds` old (its clock moved on by the time
        since): the look every attempt takes. Askers while a read runs share it."""
        cached = self._recent.get(model)
        if cached is not None:
            breaker, database_now, read_at = cached
            return breaker, database_now + (self._clock() - read_at)
        reading = self._reading.get(model)
        if reading is None:
            reading = asyncio.ensure_future(self._read_fresh(model))
            self._reading[model] = reading
            reading.add_done_callback(lambda _done: self._reading.pop(model, None))
        # Shielded: one asker cancelled (its attempt's timeout) must not fail the others' read.
        return await asyncio.shield(reading)

    async def _read_fresh(self, model: str) -> tuple[Breaker, float]:
        breaker, now = await self.read(model)
        self._recent.put(model, (breaker, now, self._clock()))
        return breaker, now

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
        the breaker before and after.

        Changes of one model asked while another runs share the next transaction, applied in
        arrival order (group commit, ADR-161): thousands of attempts timing out together once
        queued a connection and a row lock each and emptied the pool for everyone else.
        """
        committer = self._changes.get(model)
        if committer is None:
            committer = GroupCommitter(
                functools.partial(self._change_group, model),
                max_group_size=_CHANGE_GROUP_SIZE,
                name=f"breaker-{model}",
            )
            self._changes[model] = committer
        return await committer.submit(transition)

    async def _change_group(
        self, model: str, transitions: Sequence[Transition]
    ) -> list[tuple[Breaker, Breaker]]:
        changes: list[tuple[Breaker, Breaker]] = []
        async with self._db.raw_connection() as conn, conn.transaction():
            await conn.execute(_ENSURE, {"model": model})
            now = float((await (await conn.execute(_NOW)).fetchone() or (0.0,))[0])
            row = await (await conn.execute(_LOCK, {"model": model})).fetchone()
            first = current = _breaker(row)
            for transition in transitions:
                after = transition(current, now)
                changes.append((current, after))
                current = after
            if current != first:
                await conn.execute(
                    _WRITE,
                    {
                        "model": model,
                        "state": current.state.value,
                        "failures": current.failures,
                        "outage_since": current.outage_since,
                        "retry_at": current.retry_at,
                        "probe_until": current.probe_until,
                        "opens": current.opens,
                        "opened": any(after.opens > before.opens for before, after in changes),
                        "closed": any(
                            before.state is not BreakerState.CLOSED and after.state is BreakerState.CLOSED
                            for before, after in changes
                        ),
                    },
                )
        # This process's attempts see its own change at once.
        self._recent.put(model, (current, now, self._clock()))
        return changes

    async def degraded(self) -> list[DegradedModel]:
        """Models whose breaker is not closed, by name (the admin overview)."""
        async with self._db.raw_connection() as conn:
            rows = await (await conn.execute(_DEGRADED)).fetchall()
        return [DegradedModel(_breaker(row), row[7], float(row[8])) for row in rows]
