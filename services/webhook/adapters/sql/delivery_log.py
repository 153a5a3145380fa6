"""SQL of the delivery log: messages with their attempts, newest first, and replays of them
(SQLAlchemy Core)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from sqlalchemy import select, update

from libs.field_mapping import from_fields
from services.webhook.adapters.sql.paging import encode_cursor, newest_first_page
from services.webhook.adapters.sql.topic import TopicQueries
from services.webhook.adapters.tables import attempts, messages
from services.webhook.domain.records import Attempt, Message

_MESSAGE_ID = re.compile(r"msg_[0-9a-f]{32}")


def _message_key(key: str) -> str:
    if not _MESSAGE_ID.fullmatch(key):
        raise ValueError("not a message id")
    return key


class DeliveryLogQueries(TopicQueries):
    """What was sent where and how each attempt went; replays make messages due again."""

    async def redeliver(self, tenant_id: str, message_id: str, now: datetime) -> bool:
        """Makes a message due again with a fresh attempt budget; False if not found in scope.

        A message to a deleted or disabled endpoint is replayed too: the customer asked for it.
        """
        query = update(messages).where(messages.c.id == message_id)
        if tenant_id:
            query = query.where(messages.c.tenant_id == uuid.UUID(tenant_id))
        async with self._database.transaction() as session:
            result = await session.execute(
                query.values(
                    status="pending",
                    round_attempts=0,
                    next_attempt_at=now,
                    lease_until=None,
                    claim_token=None,
                ).returning(messages.c.id)
            )
            return result.scalar_one_or_none() is not None

    async def recover_failed(self, tenant_id: str, since: datetime, now: datetime) -> int:
        """Makes every failed message created since `since` due again; returns how many."""
        query = update(messages).where(messages.c.status == "failed", messages.c.created_at >= since)
        if tenant_id:
            query = query.where(messages.c.tenant_id == uuid.UUID(tenant_id))
        async with self._database.transaction() as session:
            result = await session.execute(
                query.values(status="pending", round_attempts=0, next_attempt_at=now).returning(messages.c.id)
            )
            return len(result.all())

    async def message(self, tenant_id: str, message_id: str) -> Message | None:
        """One message with its attempts (any tenant's in admin scope, `tenant_id` "")."""
        found, _ = await self._messages(tenant_id, None, message_id, "", 1)
        return found[0] if found else None

    async def list_messages(
        self, tenant_id: str, batch_id: str | None, cursor: str, limit: int
    ) -> tuple[list[Message], str]:
        """Messages newest first (of a batch, or of the tenant; every tenant in admin scope)."""
        return await self._messages(tenant_id, batch_id, None, cursor, limit)

    async def _messages(
        self, tenant_id: str, batch_id: str | None, message_id: str | None, cursor: str, limit: int
    ) -> tuple[list[Message], str]:
        query = select(messages)
        if tenant_id:
            query = query.where(messages.c.tenant_id == uuid.UUID(tenant_id))
        if batch_id:
            query = query.where(messages.c.batch_id == uuid.UUID(batch_id))
        if message_id is not None:
            query = query.where(messages.c.id == message_id)
        query = newest_first_page(query, messages, cursor, _message_key, limit)
        async with self._database.transaction() as session:
            rows = (await session.execute(query)).all()
            page = rows[:limit]
            by_message: dict[str, list[Attempt]] = {row.id: [] for row in page}
            if page:
                result = await session.execute(
                    select(attempts)
                    .where(attempts.c.message_id.in_(list(by_message)))
                    .order_by(attempts.c.message_id, attempts.c.attempt_number)
                )
                for attempt in result:
                    by_message[attempt.message_id].append(from_fields(Attempt, attempt))
        found = [
            from_fields(
                Message,
                row,
                message_id=row.id,
                tenant_id=str(row.tenant_id),
                batch_id=str(row.batch_id) if row.batch_id else None,
                endpoint_id=str(row.endpoint_id) if row.endpoint_id else None,
                attempts=tuple(by_message[row.id]),
            )
            for row in page
        ]
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else ""
        return found, next_cursor
