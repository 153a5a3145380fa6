"""SQL of the tenants' endpoints: register, page, delete, rotate their secret (SQLAlchemy Core)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.webhook.adapters.sql.paging import encode_cursor, newest_first_page
from services.webhook.adapters.sql.records import endpoint_of
from services.webhook.adapters.sql.topic import TopicQueries
from services.webhook.adapters.tables import endpoints, messages
from services.webhook.domain.errors import EndpointAlreadyRegistered
from services.webhook.domain.records import Endpoint, RotatedEndpointSecret


async def fail_pending_of(session: AsyncSession, endpoint_id: str) -> None:
    """Fails the endpoint's pending messages, in the caller's transaction (it was deleted or
    disabled: nothing more is sent to it unless the customer replays)."""
    await session.execute(
        update(messages)
        .where(messages.c.endpoint_id == uuid.UUID(endpoint_id), messages.c.status == "pending")
        .values(status="failed", next_attempt_at=None, lease_until=None, claim_token=None)
    )


class EndpointQueries(TopicQueries):
    """The `endpoints` table, as the tenant manages it."""

    async def create_endpoint(self, endpoint: Endpoint, secret: str) -> None:
        """Stores a new endpoint with its signing secret; EndpointAlreadyRegistered when the tenant
        has a live endpoint at the same URL (checked under a lock on (tenant, URL), so two
        concurrent registrations cannot both pass)."""
        async with self._database.transaction() as session:
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                {"key": f"webhook-endpoint:{endpoint.tenant_id}:{endpoint.url}"},
            )
            existing = await session.scalar(
                select(endpoints.c.id).where(
                    endpoints.c.tenant_id == uuid.UUID(endpoint.tenant_id),
                    endpoints.c.url == endpoint.url,
                    endpoints.c.status != "deleted",
                )
            )
            if existing is not None:
                raise EndpointAlreadyRegistered(
                    "an endpoint with this URL is already registered", endpoint_id=str(existing)
                )
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
        query = newest_first_page(query, endpoints, cursor, uuid.UUID, limit)
        async with self._database.transaction() as session:
            rows = [endpoint_of(row) for row in await session.execute(query)]
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].created_at, page[-1].endpoint_id) if len(rows) > limit else ""
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
            await fail_pending_of(session, endpoint_id)
            return endpoint_of(row)

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
                endpoint=endpoint_of(row), secret=row.secret, previous_expires_at=previous_valid_until
            )
