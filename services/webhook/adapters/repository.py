"""All SQL of the webhook service."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from opentelemetry import propagate
from psycopg.rows import namedtuple_row
from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from libs.db import Database
from libs.errors import InvalidArgument
from services.webhook.adapters.tables import (
    SCHEMA,
    attempts,
    batch_destinations,
    endpoints,
    messages,
    signing_secrets,
)
from services.webhook.domain.records import (
    Attempt,
    ClaimedMessage,
    Endpoint,
    Message,
    NewMessage,
    RotatedEndpointSecret,
    TenantSecret,
    secrets_signing_at,
)

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


_Key = TypeVar("_Key")
_MESSAGE_ID = re.compile(r"msg_[0-9a-f]{32}")


def _encode_cursor(created_at: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{key}".encode()).decode()


def _decode_cursor(cursor: str, key_of: Callable[[str], _Key]) -> tuple[datetime, _Key] | None:
    """The position a page continues after (None for the first page), its key parsed by `key_of`;
    InvalidArgument when the cursor is none of ours (clients echo it, so it may be anything)."""
    if not cursor:
        return None
    try:
        moment, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        created_at, parsed_key = datetime.fromisoformat(moment), key_of(key)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("cursor is not valid", field="cursor") from None
    if created_at.tzinfo is None:
        raise InvalidArgument("cursor is not valid", field="cursor")
    return created_at, parsed_key


def _message_key(key: str) -> str:
    if not _MESSAGE_ID.fullmatch(key):
        raise ValueError("not a message id")
    return key


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        endpoint_id=str(row.id),
        tenant_id=str(row.tenant_id),
        url=row.url,
        event_types=tuple(row.event_types),
        status=row.status,
        created_at=row.created_at,
        description=row.description,
    )


_BATCH_URLS = f"SELECT batch_id, webhook_url FROM {SCHEMA}.batch_destinations WHERE batch_id = ANY(%s)"
_ENABLED_ENDPOINTS = f"""
SELECT id, tenant_id, url, event_types, status, created_at, description FROM {SCHEMA}.endpoints
WHERE tenant_id = ANY(%s) AND status = 'enabled'
"""


def _tenant_secret(row: Any) -> TenantSecret:
    return TenantSecret(
        secret=row.secret,
        created_at=row.created_at,
        previous_secret=row.previous_secret,
        previous_expires_at=row.previous_expires_at,
    )


class WebhookRepository:
    """Endpoints, secrets, messages and attempts in the `webhook` schema."""

    def __init__(self, database: Database) -> None:
        self._database = database

    # --- destinations -------------------------------------------------------------------------

    async def remember_batch_url(self, batch_id: str, tenant_id: str, webhook_url: str) -> None:
        """Keeps the batch's webhook_url (first writer wins; it never changes)."""
        await self.remember_batch_urls([(batch_id, tenant_id, webhook_url)])

    async def remember_batch_urls(self, destinations: Sequence[tuple[str, str, str]]) -> None:
        """`remember_batch_url` of several (batch_id, tenant_id, webhook_url), in one statement."""
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

    async def batch_url(self, batch_id: str) -> str | None:
        """The remembered webhook_url of a batch, if batch.queued was seen."""
        return (await self.batch_urls([batch_id])).get(batch_id)

    async def batch_urls(self, batch_ids: Sequence[str]) -> dict[str, str]:
        """The remembered webhook_urls of those of the batches that have one, in one read."""
        if not batch_ids:
            return {}
        async with self._database.raw_connection() as conn:
            cursor = await conn.execute(_BATCH_URLS, ([uuid.UUID(batch_id) for batch_id in batch_ids],))
            rows = await cursor.fetchall()
        return {str(row[0]): row[1] for row in rows}

    async def enabled_endpoints(self, tenant_id: str) -> list[Endpoint]:
        """The tenant's endpoints that receive deliveries."""
        return (await self.enabled_endpoints_of([tenant_id]))[tenant_id]

    async def enabled_endpoints_of(self, tenant_ids: Collection[str]) -> dict[str, list[Endpoint]]:
        """The endpoints that receive deliveries, per tenant (every tenant asked has its list).

        One statement on the autocommit reader: every batch and task event looks this up.
        """
        found: dict[str, list[Endpoint]] = {tenant_id: [] for tenant_id in tenant_ids}
        if not found:
            return found
        async with self._database.raw_connection() as conn, conn.cursor(row_factory=namedtuple_row) as cursor:
            await cursor.execute(_ENABLED_ENDPOINTS, ([uuid.UUID(tenant_id) for tenant_id in found],))
            rows: list[Any] = await cursor.fetchall()
        for row in rows:
            found[str(row.tenant_id)].append(_endpoint(row))
        return found

    # --- endpoints ----------------------------------------------------------------------------

    async def create_endpoint(self, endpoint: Endpoint, secret: str) -> None:
        async with self._database.transaction() as session:
            await session.execute(
                endpoints.insert().values(
                    id=uuid.UUID(endpoint.endpoint_id),
                    tenant_id=uuid.UUID(endpoint.tenant_id),
                    url=endpoint.url,
                    event_types=list(endpoint.event_types),
                    description=endpoint.description,
                    secret=secret,
                    status=endpoint.status,
                    created_at=endpoint.created_at,
                )
            )

    async def list_endpoints(self, tenant_id: str, cursor: str, limit: int) -> tuple[list[Endpoint], str]:
        """The tenant's live endpoints, newest first."""
        query = select(endpoints).where(
            endpoints.c.tenant_id == uuid.UUID(tenant_id), endpoints.c.status != "deleted"
        )
        after = _decode_cursor(cursor, uuid.UUID)
        if after is not None:
            moment, key = after
            query = query.where(
                or_(
                    endpoints.c.created_at < moment,
                    and_(endpoints.c.created_at == moment, endpoints.c.id < key),
                )
            )
        query = query.order_by(endpoints.c.created_at.desc(), endpoints.c.id.desc()).limit(limit + 1)
        async with self._database.transaction() as session:
            rows = [_endpoint(row) for row in await session.execute(query)]
        page = rows[:limit]
        next_cursor = _encode_cursor(page[-1].created_at, page[-1].endpoint_id) if len(rows) > limit else ""
        return page, next_cursor

    async def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> Endpoint | None:
        """Marks the endpoint deleted and fails its pending messages; None if not the tenant's."""
        async with self._database.transaction() as session:
            result = await session.execute(
                update(endpoints)
                .where(
                    endpoints.c.id == uuid.UUID(endpoint_id),
                    endpoints.c.tenant_id == uuid.UUID(tenant_id),
                    endpoints.c.status != "deleted",
                )
                .values(status="deleted", disabled_at=func.now())
                .returning(*endpoints.c)
            )
            row = result.one_or_none()
            if row is None:
                return None
            await self._fail_pending_of(session, endpoint_id)
            return _endpoint(row)

    async def _fail_pending_of(self, session: AsyncSession, endpoint_id: str) -> None:
        await session.execute(
            update(messages)
            .where(messages.c.endpoint_id == uuid.UUID(endpoint_id), messages.c.status == "pending")
            .values(status="failed", next_attempt_at=None, lease_until=None, claim_token=None)
        )

    async def rotate_endpoint_secret(
        self, tenant_id: str, endpoint_id: str, new_secret: str, previous_valid_until: datetime
    ) -> RotatedEndpointSecret | None:
        """Makes `new_secret` the endpoint's; the old one keeps signing until `previous_valid_until`.

        None when the endpoint is not the tenant's or was deleted. A second rotation inside the
        overlap drops the oldest secret: at most two ever sign.
        """
        async with self._database.transaction() as session:
            row = (
                await session.execute(
                    update(endpoints)
                    .where(
                        endpoints.c.id == uuid.UUID(endpoint_id),
                        endpoints.c.tenant_id == uuid.UUID(tenant_id),
                        endpoints.c.status != "deleted",
                    )
                    .values(
                        previous_secret=endpoints.c.secret,
                        previous_secret_expires_at=previous_valid_until,
                        secret=new_secret,
                    )
                    .returning(*endpoints.c)
                )
            ).one_or_none()
            if row is None:
                return None
            return RotatedEndpointSecret(
                endpoint=_endpoint(row), secret=row.secret, previous_expires_at=previous_valid_until
            )

    # --- secrets ------------------------------------------------------------------------------

    async def ensure_tenant_secret(self, tenant_id: str, candidate: str) -> TenantSecret:
        """The tenant's default secret, created from `candidate` if it has none yet."""
        async with self._database.transaction() as session:
            await session.execute(
                insert(signing_secrets)
                .values(tenant_id=uuid.UUID(tenant_id), secret=candidate)
                .on_conflict_do_nothing(index_elements=["tenant_id"])
            )
            row = (
                await session.execute(
                    select(signing_secrets).where(signing_secrets.c.tenant_id == uuid.UUID(tenant_id))
                )
            ).one()
            return _tenant_secret(row)

    async def rotate_tenant_secret(
        self, tenant_id: str, new_secret: str, now: datetime, previous_valid_until: datetime
    ) -> TenantSecret:
        """Makes `new_secret` current; the old one keeps signing until `previous_valid_until`."""
        await self.ensure_tenant_secret(tenant_id, new_secret)
        async with self._database.transaction() as session:
            row = (
                await session.execute(
                    update(signing_secrets)
                    .where(
                        signing_secrets.c.tenant_id == uuid.UUID(tenant_id),
                        signing_secrets.c.secret != new_secret,
                    )
                    .values(
                        previous_secret=signing_secrets.c.secret,
                        previous_expires_at=previous_valid_until,
                        secret=new_secret,
                        created_at=now,
                    )
                    .returning(*signing_secrets.c)
                )
            ).one_or_none()
            if row is None:
                # The tenant had no secret: the new one was just created, nothing to overlap.
                row = (
                    await session.execute(
                        select(signing_secrets).where(signing_secrets.c.tenant_id == uuid.UUID(tenant_id))
                    )
                ).one()
            return _tenant_secret(row)

    # --- messages -----------------------------------------------------------------------------

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
                tenant_secrets = {row.tenant_id: _tenant_secret(row) for row in result}
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
                await self._fail_pending_of(session, claimed.endpoint_id)
            return True

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
        after = _decode_cursor(cursor, _message_key)
        if after is not None:
            moment, key = after
            query = query.where(
                or_(
                    messages.c.created_at < moment, and_(messages.c.created_at == moment, messages.c.id < key)
                )
            )
        query = query.order_by(messages.c.created_at.desc(), messages.c.id.desc()).limit(limit + 1)
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
                    by_message[attempt.message_id].append(
                        Attempt(
                            attempt_number=attempt.attempt_number,
                            attempted_at=attempt.attempted_at,
                            duration_ms=attempt.duration_ms,
                            http_status=attempt.http_status,
                            error_class=attempt.error_class,
                            response_body=attempt.response_body,
                        )
                    )
        found = [
            Message(
                message_id=row.id,
                tenant_id=str(row.tenant_id),
                batch_id=str(row.batch_id) if row.batch_id else None,
                event_type=row.event_type,
                url=row.url,
                endpoint_id=str(row.endpoint_id) if row.endpoint_id else None,
                status=row.status,
                created_at=row.created_at,
                next_attempt_at=row.next_attempt_at,
                delivered_at=row.delivered_at,
                attempts=tuple(by_message[row.id]),
            )
            for row in page
        ]
        next_cursor = _encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else ""
        return found, next_cursor
