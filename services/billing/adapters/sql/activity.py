"""SQL of each tenant's activity log (SQLAlchemy Core): append, and list newest first."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from libs.field_mapping import to_record
from services.billing.adapters.sql.base import TransactionQueries
from services.billing.adapters.tables import tenant_activity
from services.billing.domain.console_access import ActivityEntry, Actor, ActorKind
from services.billing.domain.ids import TenantId


class ActivityQueries(TransactionQueries):
    """A tenant's activity log, inside the transaction of the change it records."""

    async def record(self, entry: ActivityEntry, now: datetime) -> int:
        """Appends one entry (at `entry.occurred_at`, or `now`); returns its id."""
        return await self._insert_returning_id(
            tenant_activity,
            entry,
            occurred_at=entry.occurred_at or now,
            actor_kind=entry.actor.kind.value,
            actor_id=entry.actor.actor_id,
            actor_label=entry.actor.label,
        )

    async def list(
        self,
        tenant_id: TenantId,
        *,
        action: str,
        actor_id: str,
        occurred_from: datetime | None,
        occurred_to: datetime | None,
        before_id: int | None,
        limit: int,
    ) -> list[ActivityEntry]:
        """The tenant's entries newest first, filtered, ids below `before_id`."""
        log = tenant_activity.c
        query = select(tenant_activity).where(log.tenant_id == tenant_id).order_by(log.id.desc()).limit(limit)
        if action:
            query = query.where(log.action == action)
        if actor_id:
            query = query.where(log.actor_id == actor_id)
        if occurred_from is not None:
            query = query.where(log.occurred_at >= occurred_from)
        if occurred_to is not None:
            query = query.where(log.occurred_at < occurred_to)
        if before_id is not None:
            query = query.where(log.id < before_id)
        return [
            to_record(
                ActivityEntry,
                row,
                actor=Actor(ActorKind(row.actor_kind), row.actor_id, row.actor_label),
                activity_id=row.id,
            )
            for row in await self._conn.execute(query)
        ]
