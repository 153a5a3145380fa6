"""SQL of the tenants' default signing secrets (SQLAlchemy Core)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.webhook.adapters.sql.records import tenant_secret_of
from services.webhook.adapters.sql.topic import TopicQueries
from services.webhook.adapters.tables import signing_secrets
from services.webhook.domain.records import TenantSecret


async def _tenant_secret(session: AsyncSession, tenant_id: str) -> TenantSecret:
    """The tenant's secret as stored now, in the caller's transaction (it must exist)."""
    row = (
        await session.execute(
            select(signing_secrets).where(signing_secrets.c.tenant_id == uuid.UUID(tenant_id))
        )
    ).one()
    return tenant_secret_of(row)


class SigningSecretQueries(TopicQueries):
    """The `signing_secrets` table: one secret per tenant, signing batch-URL messages."""

    async def ensure_tenant_secret(self, tenant_id: str, candidate: str) -> TenantSecret:
        """The tenant's default secret, created from `candidate` if it has none yet."""
        async with self._database.transaction() as session:
            await session.execute(
                insert(signing_secrets)
                .values(tenant_id=uuid.UUID(tenant_id), secret=candidate)
                .on_conflict_do_nothing(index_elements=["tenant_id"])
            )
            return await _tenant_secret(session, tenant_id)

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
                return await _tenant_secret(session, tenant_id)
            return tenant_secret_of(row)
