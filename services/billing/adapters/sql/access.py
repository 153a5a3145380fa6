"""SQL of tenants, API keys, operator keys and the video access log (SQLAlchemy Core)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.field_mapping import from_fields, to_record
from libs.invalidations import NOTIFY_CHANNEL, InvalidationKind, encode
from services.billing.adapters.sql.base import TransactionQueries
from services.billing.adapters.tables import accounts, admin_keys, api_keys, tenants, video_access_log
from services.billing.domain.api_keys import (
    ALL_SCOPES,
    AdminKeyInfo,
    AdminRole,
    ApiKeyInfo,
    KeyScope,
    sorted_scopes,
)
from services.billing.domain.ids import TenantId
from services.billing.domain.ledger import AccountKind
from services.billing.domain.video_access import VideoAccess


async def notify_invalidation(conn: AsyncConnection, kind: InvalidationKind, subject: str = "") -> None:
    """Queues an invalidation that PostgreSQL delivers to every listener if and when this
    transaction commits (never for a rolled-back change)."""
    await conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, encode(kind, subject))))


@dataclass(frozen=True)
class ApiKeyRecord:
    """A stored API key (its hash only)."""

    key_id: uuid.UUID
    tenant_id: TenantId
    revoked: bool
    last_used_at: datetime | None
    scopes: frozenset[KeyScope] = ALL_SCOPES
    expires_at: datetime | None = None


# The columns of what may be shown about a key, labelled as ApiKeyInfo / AdminKeyInfo name them.
_API_KEY_INFO_COLUMNS = (
    api_keys.c.id.label("key_id"),
    api_keys.c.tenant_id,
    api_keys.c.key_prefix.label("prefix"),
    api_keys.c.created_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
    api_keys.c.scopes,
    api_keys.c.expires_at,
)
_ADMIN_KEY_INFO_COLUMNS = (
    admin_keys.c.id.label("key_id"),
    admin_keys.c.role,
    admin_keys.c.name,
    admin_keys.c.key_prefix.label("prefix"),
    admin_keys.c.created_at,
    admin_keys.c.last_used_at,
    admin_keys.c.revoked_at,
)


def _api_key_info(row: Row[*tuple[Any, ...]]) -> ApiKeyInfo:
    return from_fields(ApiKeyInfo, row, scopes=frozenset(map(KeyScope, row.scopes)))


def _admin_key_info(row: Row[*tuple[Any, ...]]) -> AdminKeyInfo:
    return to_record(AdminKeyInfo, row)


class AccessQueries(TransactionQueries):
    """Tenants, API keys, operator keys and the video access log, inside one transaction."""

    async def insert_tenant(self, tenant_id: TenantId, name: str) -> None:
        """Creates a tenant and its available account."""
        await self._conn.execute(insert(tenants).values(id=tenant_id, name=name))
        await self._conn.execute(
            insert(accounts).values(kind=AccountKind.AVAILABLE.value, tenant_id=tenant_id)
        )

    async def tenant_exists(self, tenant_id: TenantId) -> bool:
        found = await self._conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id))
        return found.first() is not None

    async def insert_api_key(
        self,
        key_id: uuid.UUID,
        tenant_id: TenantId,
        key_hash: str,
        prefix: str,
        scopes: frozenset[KeyScope] = ALL_SCOPES,
        expires_at: datetime | None = None,
    ) -> bool:
        """Stores a key hash; False when that hash is already registered."""
        inserted = await self._conn.execute(
            pg_insert(api_keys)
            .values(
                id=key_id,
                tenant_id=tenant_id,
                key_hash=key_hash,
                key_prefix=prefix,
                scopes=sorted_scopes(scopes),
                expires_at=expires_at,
            )
            .on_conflict_do_nothing(index_elements=[api_keys.c.key_hash])
            .returning(api_keys.c.id)
        )
        return inserted.first() is not None

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        row = (
            await self._conn.execute(
                select(
                    api_keys.c.id,
                    api_keys.c.tenant_id,
                    api_keys.c.revoked_at,
                    api_keys.c.last_used_at,
                    api_keys.c.scopes,
                    api_keys.c.expires_at,
                ).where(api_keys.c.key_hash == key_hash)
            )
        ).first()
        if row is None:
            return None
        return ApiKeyRecord(
            key_id=row.id,
            tenant_id=TenantId(row.tenant_id),
            revoked=row.revoked_at is not None,
            last_used_at=row.last_used_at,
            scopes=frozenset(map(KeyScope, row.scopes)),
            expires_at=row.expires_at,
        )

    async def record_api_key_use(self, key_id: uuid.UUID, used_at: datetime) -> None:
        await self._conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=used_at))

    async def list_api_keys(self, tenant_id: TenantId) -> list[ApiKeyInfo]:
        """The tenant's keys, oldest first (hashes are never read)."""
        rows = await self._conn.execute(
            select(*_API_KEY_INFO_COLUMNS)
            .where(api_keys.c.tenant_id == tenant_id)
            .order_by(api_keys.c.created_at, api_keys.c.id)
        )
        return [_api_key_info(row) for row in rows]

    async def get_api_key(self, key_id: uuid.UUID, tenant_id: TenantId | None) -> ApiKeyInfo | None:
        """One key, only if it belongs to `tenant_id` (any tenant when None)."""
        query = select(*_API_KEY_INFO_COLUMNS).where(api_keys.c.id == key_id)
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        row = (await self._conn.execute(query)).first()
        return None if row is None else _api_key_info(row)

    async def revoke_api_key(self, key_id: uuid.UUID, revoked_at: datetime) -> None:
        """Marks a key revoked (the first revocation time is kept) and tells every replica that
        remembers it, when this transaction commits."""
        await self._conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=revoked_at)
        )
        await notify_invalidation(self._conn, InvalidationKind.API_KEY, str(key_id))

    async def insert_admin_key(
        self, key_id: uuid.UUID, key_hash: str, prefix: str, role: AdminRole, name: str
    ) -> None:
        await self._conn.execute(
            insert(admin_keys).values(
                id=key_id, key_hash=key_hash, key_prefix=prefix, role=role.value, name=name
            )
        )

    async def find_admin_key(self, key_hash: str) -> AdminKeyInfo | None:
        query = select(*_ADMIN_KEY_INFO_COLUMNS).where(admin_keys.c.key_hash == key_hash)
        row = (await self._conn.execute(query)).first()
        return None if row is None else _admin_key_info(row)

    async def get_admin_key(self, key_id: uuid.UUID) -> AdminKeyInfo | None:
        row = (
            await self._conn.execute(select(*_ADMIN_KEY_INFO_COLUMNS).where(admin_keys.c.id == key_id))
        ).first()
        return None if row is None else _admin_key_info(row)

    async def list_admin_keys(self) -> list[AdminKeyInfo]:
        rows = await self._conn.execute(
            select(*_ADMIN_KEY_INFO_COLUMNS).order_by(admin_keys.c.created_at, admin_keys.c.id)
        )
        return [_admin_key_info(row) for row in rows]

    async def revoke_admin_key(self, key_id: uuid.UUID, revoked_at: datetime) -> None:
        """Marks an operator key revoked and tells every replica, as `revoke_api_key` does."""
        await self._conn.execute(
            update(admin_keys)
            .where(admin_keys.c.id == key_id, admin_keys.c.revoked_at.is_(None))
            .values(revoked_at=revoked_at)
        )
        await notify_invalidation(self._conn, InvalidationKind.ADMIN_KEY, str(key_id))

    async def record_admin_key_use(self, key_id: uuid.UUID, used_at: datetime) -> None:
        await self._conn.execute(
            update(admin_keys).where(admin_keys.c.id == key_id).values(last_used_at=used_at)
        )

    # Video access audit log.

    async def insert_video_access(self, access: VideoAccess) -> int:
        """Appends one attempt; returns its id."""
        return await self._insert_returning_id(video_access_log, access)

    async def list_video_access(
        self, tenant_id: str, batch_id: str, before_id: int | None, limit: int
    ) -> list[VideoAccess]:
        """Attempts newest first, optionally of one tenant and/or batch, ids below `before_id`."""
        log = video_access_log.c
        query = select(video_access_log).order_by(log.id.desc()).limit(limit)
        if tenant_id:
            query = query.where(log.tenant_id == tenant_id)
        if batch_id:
            query = query.where(log.batch_id == batch_id)
        if before_id is not None:
            query = query.where(log.id < before_id)
        rows = await self._conn.execute(query)
        return [from_fields(VideoAccess, row, access_id=row.id) for row in rows]
