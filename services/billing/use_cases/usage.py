"""Usage use cases of the customer console: spend and refunds per day and model, what credits cost.

Read-only: nothing here moves credits.
"""

from __future__ import annotations

from datetime import datetime

from services.billing.domain.ids import TenantId
from services.billing.domain.usage import Usage, merge_usage, usage_period
from services.billing.use_cases.dependencies import Dependencies
from services.billing.use_cases.tenants import available_account


async def tenant_usage(
    deps: Dependencies, tenant_id: TenantId, created_from: datetime | None, created_to: datetime | None
) -> Usage:
    """The tenant's spend and refunds per UTC day and model in the period, and its paid credits."""
    period = usage_period(created_from, created_to)
    async with deps.repository.transaction() as tx:
        await available_account(tx, tenant_id)
        spent = await tx.usage.spent_by_day(tenant_id, period.start, period.end)
        refunded = await tx.usage.refunded_by_day(tenant_id, period.start, period.end)
        paid = await tx.usage.paid_credits(tenant_id)
    return Usage(days=merge_usage(spent, refunded), paid=paid)
