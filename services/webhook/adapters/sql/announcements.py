"""The writes of announcing events: remembered batch URLs and new messages (SQLAlchemy Core)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from opentelemetry import propagate
from sqlalchemy.dialects.postgresql import insert

from services.webhook.adapters.sql.topic import TopicQueries
from services.webhook.adapters.tables import batch_destinations, messages
from services.webhook.domain.records import NewMessage


class AnnouncementQueries(TopicQueries):
    """Batch URLs remembered from `batch.queued`, and the messages events fan out to."""

    async def remember_batch_urls(self, destinations: Sequence[tuple[str, str, str]]) -> None:
        """Keeps each (batch_id, tenant_id, webhook_url), in one statement (first writer wins; a
        batch's URL never changes)."""
        if not destinations:
            return
        async with self._database.transaction() as session:
            await session.execute(
                insert(batch_destinations)
                .values(
                    [
                        {
                            "batch_id": uuid.UUID(batch_id),
                            "tenant_id": uuid.UUID(tenant_id),
                            "webhook_url": url,
                        }
                        for batch_id, tenant_id, url in destinations
                    ]
                )
                .on_conflict_do_nothing(index_elements=["batch_id"])
            )

    async def add_messages(self, new_messages: Sequence[NewMessage], now: datetime) -> int:
        """Records messages due now; a dedupe key seen before is skipped. Returns how many are new."""
        if not new_messages:
            return 0
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        traceparent = carrier.get("traceparent")
        rows = [
            {
                "id": message.message_id,
                "tenant_id": uuid.UUID(message.tenant_id),
                "batch_id": uuid.UUID(message.batch_id) if message.batch_id else None,
                "event_type": message.event_type,
                "body": message.body,
                "url": message.url,
                "endpoint_id": uuid.UUID(message.endpoint_id) if message.endpoint_id else None,
                "dedupe_key": message.dedupe_key,
                "status": "pending",
                "next_attempt_at": now,
                "created_at": now,
                "traceparent": traceparent,
            }
            for message in new_messages
        ]
        async with self._database.transaction() as session:
            result = await session.execute(
                insert(messages)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
                .returning(messages.c.id)
            )
            return len(result.all())
