"""The check every tenant-scoped use case starts with, written once: an unknown tenant is refused
with `TenantNotFound`, whether the use case looks it up among tenants or by its available account."""

from __future__ import annotations

from services.billing.adapters.repository import LedgerTransaction
from services.billing.adapters.sql.accounts import AccountBalance
from services.billing.domain.errors import TenantNotFound
from services.billing.domain.ids import TenantId


async def require_tenant(tx: LedgerTransaction, tenant_id: TenantId) -> None:
    """Raises `TenantNotFound` unless the tenant exists."""
    if not await tx.access.tenant_exists(tenant_id):
        raise TenantNotFound(tenant_id)


async def available_account(tx: LedgerTransaction, tenant_id: TenantId) -> AccountBalance:
    """The tenant's available account, read without a lock (`TenantNotFound`: no such tenant)."""
    available = await tx.accounts.available(tenant_id)
    if available is None:
        raise TenantNotFound(tenant_id)
    return available
