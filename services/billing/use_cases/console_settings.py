"""Console settings use cases: what a tenant's console owner decides for its members."""

from __future__ import annotations

from services.billing.domain.console_settings import ConsoleSettings
from services.billing.domain.ids import TenantId
from services.billing.use_cases.dependencies import Dependencies
from services.billing.use_cases.tenants import require_tenant


async def get_console_settings(deps: Dependencies, tenant_id: TenantId) -> ConsoleSettings:
    """The tenant's console settings (the defaults until changed)."""
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, tenant_id)
        return await tx.console_settings.get(tenant_id)


async def update_console_settings(deps: Dependencies, settings: ConsoleSettings) -> ConsoleSettings:
    """Replaces the tenant's console settings and answers them as stored."""
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, settings.tenant_id)
        await tx.console_settings.put(settings)
        return await tx.console_settings.get(settings.tenant_id)
