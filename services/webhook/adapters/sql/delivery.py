"""SQL of delivering: lease due messages with their signing secrets, record an attempt.

The claim's lease is one `text()` statement (a CTE with FOR UPDATE SKIP LOCKED that Core would
only spell less clearly); the secret lookups of the same transaction and the attempt writes are
SQLAlchemy Core. Both halves of a claim stay in this one module: they are one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update

from services.webhook.adapters.sql.endpoints import fail_pending_of
from services.webhook.adapters.sql.records import tenant_secret_of
from services.webhook.adapters.sql.topic import TopicQueries
from services.webhook.adapters.tables import attempts, endpoints, messages, signing_secrets
from services.webhook.domain.records import Attempt, ClaimedMessage, TenantSecret, secrets_signing_at

# Leases the oldest due messages. SKIP LOCKED lets many deliverers claim side by side; a message
# whose lease expired (its deliverer died mid-send) is due again and keeps its id.
_CLAIM_SQL = text(
    """
    WITH due AS (
        SELECT id FROM webhook.messages
        WHERE status = 'pending' AND next_attempt_at <= :now
          AND (lease_until IS NULL OR lease_until < :now)
        ORDER BY next_attempt_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook.messages AS m
    SET lease_until = :lease_until, claim_token = :token
    FROM due
    WHERE m.id = due.id
    RETURNING m.id, m.url, m.body, m.endpoint_id, m.tenant_id, m.round_attempts, m.attempt_count,
        m.traceparent
    """
)


class DeliveryQueries(TopicQueries):
    """Claims of due messages and the attempts made on them."""

    async def claim_due(self, now: datetime, limit: int, lease_seconds: float) -> list[ClaimedMessage]:
        """Leases up to `limit` due messages and returns them with their signing secrets."""
        token = uuid.uuid4()
        async with self._database.transaction() as session:
            rows = (
                await session.execute(
                    _CLAIM_SQL,
                    {
                        "now": now,
                        "limit": limit,
                        "lease_until": now + timedelta(seconds=lease_seconds),
                        "token": token,
                    },
                )
            ).all()
            if not rows:
                return []
            endpoint_ids = {row.endpoint_id for row in rows if row.endpoint_id is not None}
            tenant_ids = {row.tenant_id for row in rows if row.endpoint_id is None}
            endpoint_secrets: dict[uuid.UUID, tuple[str, ...]] = {}
            if endpoint_ids:
                result = await session.execute(
                    select(
                        endpoints.c.id,
                        endpoints.c.secret,
                        endpoints.c.previous_secret,
                        endpoints.c.previous_secret_expires_at,
                    ).where(endpoints.c.id.in_(endpoint_ids))
                )
                endpoint_secrets = {
                    row.id: secrets_signing_at(
                        row.secret, row.previous_secret, row.previous_secret_expires_at, now
                    )
                    for row in result
                }
            tenant_secrets: dict[uuid.UUID, TenantSecret] = {}
            if tenant_ids:
                result = await session.execute(
                    select(signing_secrets).where(signing_secrets.c.tenant_id.in_(tenant_ids))
                )
                tenant_secrets = {row.tenant_id: tenant_secret_of(row) for row in result}
        claimed: list[ClaimedMessage] = []
        for row in rows:
            if row.endpoint_id is not None:
                secrets = endpoint_secrets[row.endpoint_id]
            else:
                secrets = tenant_secrets[row.tenant_id].signing_secrets(now)
            claimed.append(
                ClaimedMessage(
                    message_id=row.id,
                    url=row.url,
                    body=bytes(row.body),
                    endpoint_id=str(row.endpoint_id) if row.endpoint_id else None,
                    secrets=secrets,
                    round_attempts=row.round_attempts,
                    attempt_count=row.attempt_count,
                    claim_token=str(token),
                    traceparent=row.traceparent or "",
                )
            )
        return claimed

    async def release(self, claimed: Sequence[ClaimedMessage]) -> int:
        """Ends the leases of claimed messages still held by their claim (no attempt recorded), so
        any deliverer's next claim takes them; returns how many were still held."""
        if not claimed:
            return 0
        async with self._database.transaction() as session:
            result = await session.execute(
                update(messages)
                .where(
                    messages.c.id.in_([message.message_id for message in claimed]),
                    messages.c.claim_token.in_({uuid.UUID(message.claim_token) for message in claimed}),
                    messages.c.status == "pending",
                )
                .values(lease_until=None, claim_token=None)
                .returning(messages.c.id)
            )
            return len(result.all())

    async def record_attempt(
        self,
        claimed: ClaimedMessage,
        attempt: Attempt,
        *,
        status: str,
        next_attempt_at: datetime | None,
        disable_endpoint: bool,
    ) -> bool:
        """Writes the attempt and the message's new state, if this deliverer still holds the lease.

        Returns False when the lease was lost (another deliverer took the message over): the
        attempt is then not recorded, so the log never shows two owners of one attempt number.
        """
        async with self._database.transaction() as session:
            result = await session.execute(
                update(messages)
                .where(
                    messages.c.id == claimed.message_id,
                    messages.c.claim_token == uuid.UUID(claimed.claim_token),
                    messages.c.status == "pending",
                )
                .values(
                    status=status,
                    attempt_count=messages.c.attempt_count + 1,
                    round_attempts=messages.c.round_attempts + 1,
                    next_attempt_at=next_attempt_at,
                    lease_until=None,
                    claim_token=None,
                    delivered_at=attempt.attempted_at if status == "delivered" else None,
                )
                .returning(messages.c.attempt_count)
            )
            number = result.scalar_one_or_none()
            if number is None:
                return False
            await session.execute(
                attempts.insert().values(
                    message_id=claimed.message_id,
                    attempt_number=number,
                    attempted_at=attempt.attempted_at,
                    duration_ms=attempt.duration_ms,
                    http_status=attempt.http_status,
                    error_class=attempt.error_class,
                    response_body=attempt.response_body,
                )
            )
            if disable_endpoint and claimed.endpoint_id is not None:
                await session.execute(
                    update(endpoints)
                    .where(endpoints.c.id == uuid.UUID(claimed.endpoint_id), endpoints.c.status == "enabled")
                    .values(status="disabled", disabled_at=func.now())
                )
                await fail_pending_of(session, claimed.endpoint_id)
            return True
