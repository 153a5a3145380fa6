"""Access use cases: tenants, customer API keys, operator keys, and the video access audit log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from libs.errors import InvalidArgument
from services.billing.domain import api_keys
from services.billing.domain.errors import ApiKeyAlreadyExists, ApiKeyNotFound, InvalidApiKey
from services.billing.domain.ids import TenantId
from services.billing.domain.ledger import page_size, parse_cursor
from services.billing.domain.video_access import VideoAccess, optional_uuid, validated_access
from services.billing.use_cases.dependencies import Dependencies
from services.billing.use_cases.tenants import require_tenant


@dataclass(frozen=True)
class IssuedApiKey:
    """A key in clear, returned once."""

    api_key: str
    key_id: uuid.UUID


@dataclass(frozen=True)
class AuthenticatedKey:
    """The tenant and key a valid customer API key stands for."""

    tenant_id: TenantId
    key_id: uuid.UUID
    scopes: frozenset[api_keys.KeyScope] = api_keys.ALL_SCOPES
    expires_at: datetime | None = None


async def create_tenant(deps: Dependencies, name: str) -> TenantId:
    """Creates a tenant with an empty available account."""
    name = name.strip()
    if not name:
        raise InvalidArgument("name is required", field="name")
    tenant_id = TenantId(uuid.uuid4())
    async with deps.repository.transaction() as tx:
        await tx.access.insert_tenant(tenant_id, name)
    return tenant_id


async def create_api_key(
    deps: Dependencies,
    tenant_id: TenantId,
    api_key: str = "",
    scopes: Sequence[str] = (),
    expires_at: datetime | None = None,
) -> IssuedApiKey:
    """Issues a random key, or registers `api_key` exactly (demo tenants); duplicates are refused.

    No scopes: every scope (today's full access). An expiry must be in the future.
    """
    granted = api_keys.parse_scopes(scopes)
    api_keys.ensure_future_expiry(expires_at, deps.clock())
    if api_key:
        api_keys.ensure_registrable(api_key)
    else:
        api_key = api_keys.generate_api_key()
    key_id = uuid.uuid4()
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, tenant_id)
        stored = await tx.access.insert_api_key(
            key_id,
            tenant_id,
            api_keys.hash_api_key(api_key),
            api_keys.key_prefix(api_key),
            granted,
            expires_at,
        )
    if not stored:
        raise ApiKeyAlreadyExists()
    return IssuedApiKey(api_key=api_key, key_id=key_id)


async def authenticate_api_key(deps: Dependencies, api_key: str) -> AuthenticatedKey:
    """The tenant of a valid key; InvalidApiKey when unknown or revoked."""
    if not api_key:
        raise InvalidApiKey()
    async with deps.repository.transaction() as tx:
        record = await tx.access.find_api_key(api_keys.hash_api_key(api_key))
        now = deps.clock()
        if record is None or record.revoked or api_keys.is_expired(record.expires_at, now):
            raise InvalidApiKey()
        if api_keys.should_record_use(record.last_used_at, now):
            await tx.access.record_api_key_use(record.key_id, now)
    return AuthenticatedKey(
        tenant_id=record.tenant_id, key_id=record.key_id, scopes=record.scopes, expires_at=record.expires_at
    )


async def list_api_keys(deps: Dependencies, tenant_id: TenantId) -> list[api_keys.ApiKeyInfo]:
    """The tenant's keys (prefix and history only), oldest first."""
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, tenant_id)
        return await tx.access.list_api_keys(tenant_id)


async def get_api_key(deps: Dependencies, tenant_id: TenantId, key_id: uuid.UUID) -> api_keys.ApiKeyInfo:
    """One of the tenant's keys; ApiKeyNotFound for another tenant's."""
    async with deps.repository.transaction() as tx:
        info = await tx.access.get_api_key(key_id, tenant_id)
    if info is None:
        raise ApiKeyNotFound(key_id)
    return info


async def revoke_api_key(
    deps: Dependencies, tenant_id: TenantId | None, key_id: uuid.UUID
) -> api_keys.ApiKeyInfo:
    """Revokes a key of `tenant_id` (any tenant's when None: operators); idempotent."""
    async with deps.repository.transaction() as tx:
        if await tx.access.get_api_key(key_id, tenant_id) is None:
            raise ApiKeyNotFound(key_id)
        await tx.access.revoke_api_key(key_id, deps.clock())
        revoked = await tx.access.get_api_key(key_id, tenant_id)
    assert revoked is not None  # the row exists: it was just read in this transaction
    return revoked


async def create_admin_key(
    deps: Dependencies, role: str, name: str
) -> tuple[IssuedApiKey, api_keys.AdminRole]:
    """Issues an operator key with a role; the clear key is returned only here."""
    parsed_role = api_keys.parse_admin_role(role)
    name = name.strip()
    if len(name) > 200:
        raise InvalidArgument("name must be at most 200 characters", field="name")
    api_key = api_keys.generate_admin_key()
    key_id = uuid.uuid4()
    async with deps.repository.transaction() as tx:
        await tx.access.insert_admin_key(
            key_id, api_keys.hash_api_key(api_key), api_keys.key_prefix(api_key), parsed_role, name
        )
    return IssuedApiKey(api_key=api_key, key_id=key_id), parsed_role


async def authenticate_admin_key(deps: Dependencies, api_key: str) -> api_keys.AdminKeyInfo:
    """The role of a valid operator key; InvalidApiKey when unknown or revoked."""
    if not api_key:
        raise InvalidApiKey()
    async with deps.repository.transaction() as tx:
        info = await tx.access.find_admin_key(api_keys.hash_api_key(api_key))
        if info is None or info.revoked_at is not None:
            raise InvalidApiKey()
        now = deps.clock()
        if api_keys.should_record_use(info.last_used_at, now):
            await tx.access.record_admin_key_use(info.key_id, now)
    return info


async def revoke_admin_key(deps: Dependencies, key_id: uuid.UUID) -> api_keys.AdminKeyInfo:
    """Revokes an operator key; idempotent."""
    async with deps.repository.transaction() as tx:
        if await tx.access.get_admin_key(key_id) is None:
            raise ApiKeyNotFound(key_id)
        await tx.access.revoke_admin_key(key_id, deps.clock())
        revoked = await tx.access.get_admin_key(key_id)
    assert revoked is not None  # the row exists: it was just read in this transaction
    return revoked


async def list_admin_keys(deps: Dependencies) -> list[api_keys.AdminKeyInfo]:
    """Every operator key, oldest first."""
    async with deps.repository.transaction() as tx:
        return await tx.access.list_admin_keys()


async def record_video_access(deps: Dependencies, access: VideoAccess) -> int:
    """Appends one access attempt to the audit log; returns its id."""
    async with deps.repository.transaction() as tx:
        return await tx.access.insert_video_access(validated_access(access))


async def list_video_access(
    deps: Dependencies, tenant_id: str, batch_id: str, cursor: str, limit: int
) -> tuple[list[VideoAccess], str]:
    """Attempts newest first, with the cursor of the next page ("" on the last)."""
    size = page_size(limit)
    before = parse_cursor(cursor)
    tenant_filter = optional_uuid(tenant_id, "tenant_id")
    batch_filter = optional_uuid(batch_id, "batch_id")
    async with deps.repository.transaction() as tx:
        found = await tx.access.list_video_access(
            str(tenant_filter or ""), str(batch_filter or ""), before, size + 1
        )
    page = found[:size]
    next_cursor = str(page[-1].access_id) if len(found) > size else ""
    return page, next_cursor
