"""What a tenant's console owner decides for the tenant's other console members."""

from __future__ import annotations

from dataclasses import dataclass

from services.billing.domain.ids import TenantId


@dataclass(frozen=True)
class ConsoleSettings:
    """A tenant's console settings; the defaults are the safe choices (finance may not buy)."""

    tenant_id: TenantId
    finance_may_buy_credits: bool = False
