"""Spend control use cases: budgets and their use, stored quotes (issue 29).

Enforcement is not here: the freeze checks budgets and honours quotes in its own transaction
(`use_cases.reservations`). These are the reads and writes around it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from libs.errors import InvalidArgument
from services.billing.adapters.repository import LedgerTransaction
from services.billing.domain.alerts import AlertStatus, alert_status, validated_thresholds
from services.billing.domain.budgets import (
    TENANT_BUDGET,
    BudgetKey,
    BudgetScope,
    BudgetStatus,
    Period,
    period_of,
    validated_cap,
    validated_key,
)
from services.billing.domain.errors import ApiKeyNotFound
from services.billing.domain.ids import TenantId
from services.billing.domain.pricing import QuoteLine, quote
from services.billing.domain.quotes import QuoteNotFound, StoredQuote, new_quote
from services.billing.use_cases.dependencies import Dependencies
from services.billing.use_cases.tenants import available_account, require_tenant

# A fingerprint is a hash the batch service computes; bounded so a bad caller cannot store a novel.
MAX_FINGERPRINT_CHARS = 200


def parse_uuid(value: str, field: str) -> uuid.UUID:
    """A UUID argument; InvalidArgument naming `field` otherwise."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{field} must be a UUID", field=field) from None


async def month_budgets(deps: Dependencies, tenant_id: TenantId, month_start: datetime) -> list[BudgetStatus]:
    """The tenant's budgets (today's caps) with their use in the month starting at `month_start`
    (the monthly statement's)."""
    return await get_budgets(deps, tenant_id, period=period_of(month_start))


async def get_budgets(
    deps: Dependencies,
    tenant_id: TenantId,
    scope: str = "",
    scope_id: str = "",
    *,
    period: Period | None = None,
) -> list[BudgetStatus]:
    """The tenant's budgets with their use this month (or in `period`): the tenant's first, then
    keys', projects'. With a scope, only that budget, answered with its use even without a cap.
    """
    asked = validated_key(scope, _canonical(scope, scope_id)) if scope else None
    period = period or period_of(deps.clock())
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, tenant_id)
        if asked is not None and asked.scope is BudgetScope.API_KEY:
            await _ensure_own_key(tx, tenant_id, asked.scope_id)
        caps = await tx.spend_control.caps(tenant_id)
        used = await tx.spend_control.use(tenant_id, period.start)
    keys: Sequence[BudgetKey] = (
        [asked]
        if asked is not None
        else sorted(caps.keys() | {TENANT_BUDGET}, key=lambda key: key.listing_order)
    )
    return [BudgetStatus(key, caps.get(key), used.get(key, 0), period) for key in keys]


async def set_budget(
    deps: Dependencies, tenant_id: TenantId, scope: str, scope_id: str, monthly_credits: int | None
) -> BudgetStatus:
    """Sets (or, with None, removes) one budget; answers it with its use this month.

    Whoever calls has been authorised (a console owner, a key with the `billing` scope): the
    gateway checks that. A key budget must name one of the tenant's keys.
    """
    key = validated_key(scope, _canonical(scope, scope_id))
    cap = validated_cap(monthly_credits) if monthly_credits is not None else None
    period = period_of(deps.clock())
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, tenant_id)
        if key.scope is BudgetScope.API_KEY:
            await _ensure_own_key(tx, tenant_id, key.scope_id)
        await tx.spend_control.set_cap(tenant_id, key, cap)
        used = await tx.spend_control.use(tenant_id, period.start)
    return BudgetStatus(key, cap, used.get(key, 0), period)


async def get_alert_thresholds(deps: Dependencies, tenant_id: TenantId) -> AlertStatus:
    """The tenant's spend alert thresholds (ADR-125) and which side of them it is on now."""
    async with deps.repository.transaction() as tx:
        available = await available_account(tx, tenant_id)
        thresholds = await tx.spend_control.alert_thresholds(tenant_id)
        caps = await tx.spend_control.caps(tenant_id) if thresholds.budget_percent is not None else {}
        used = await tx.spend_control.use(tenant_id, period_of(deps.clock()).start) if caps else {}
    return alert_status(thresholds, available.balance, caps, used)


async def set_alert_thresholds(
    deps: Dependencies, tenant_id: TenantId, low_balance_credits: int | None, budget_percent: int | None
) -> AlertStatus:
    """Replaces the tenant's thresholds (None turns an alert off); the caller was authorised as for
    a budget. The next freeze that crosses one announces it: a line set below where the balance
    already is fires at the next freeze that goes under it, not now."""
    thresholds = validated_thresholds(low_balance_credits, budget_percent)
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, tenant_id)
        await tx.spend_control.set_alert_thresholds(tenant_id, thresholds)
    return await get_alert_thresholds(deps, tenant_id)


def _canonical(scope: str, scope_id: str) -> str:
    """A key id in its canonical form (holds store it so); a project as given."""
    if scope == BudgetScope.API_KEY.value and scope_id:
        return str(parse_uuid(scope_id, "scope_id"))
    return scope_id


async def _ensure_own_key(tx: LedgerTransaction, tenant_id: TenantId, key_id: str) -> None:
    if await tx.access.get_api_key(uuid.UUID(key_id), tenant_id) is None:
        raise ApiKeyNotFound(key_id)


async def create_quote(
    deps: Dependencies,
    tenant_id: TenantId,
    lines: Sequence[QuoteLine],
    fingerprint: str,
    api_key_id: str = "",
) -> StoredQuote:
    """Prices the lines at today's prices and stores the quote (nothing is frozen)."""
    if not fingerprint or len(fingerprint) > MAX_FINGERPRINT_CHARS:
        raise InvalidArgument(
            f"fingerprint must have 1 to {MAX_FINGERPRINT_CHARS} characters", field="fingerprint"
        )
    key_id = parse_uuid(api_key_id, "api_key_id") if api_key_id else None
    stored = new_quote(tenant_id, quote(lines, deps.prices), fingerprint, deps.clock())
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, tenant_id)
        await tx.spend_control.insert_quote(stored, key_id)
    return stored


async def get_quote(deps: Dependencies, tenant_id: TenantId, quote_id: str) -> StoredQuote:
    """One of the tenant's quotes; QuoteNotFound for an unknown or another tenant's."""
    try:
        parsed = uuid.UUID(quote_id)
    except ValueError:
        raise QuoteNotFound(quote_id) from None
    async with deps.repository.transaction() as tx:
        stored = await tx.spend_control.find_quote(parsed)
    if stored is None or stored.tenant_id != tenant_id:
        raise QuoteNotFound(quote_id)
    return stored
