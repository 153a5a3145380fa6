"""Wallet use cases: credits granted by an operator, and the tenant's balances."""

from __future__ import annotations

from dataclasses import dataclass

from libs.errors import InvalidArgument
from services.billing.domain.errors import TenantNotFound
from services.billing.domain.ids import TenantId
from services.billing.domain.ledger import (
    AccountKind,
    RefType,
    Transfer,
    ensure_room_for_credit,
    post_transfers,
    topup_key,
)
from services.billing.use_cases.dependencies import Dependencies
from services.billing.use_cases.tenants import available_account


@dataclass(frozen=True)
class TopUpResult:
    """The available balance after a top-up (or as found, when the reference was `replayed`)."""

    balance: int
    replayed: bool


@dataclass(frozen=True)
class Balance:
    """What the tenant can spend, what its batches' holds still hold, and what it owes (a refunded
    or disputed payment already spent, ADR-134: no new batch until paid)."""

    available_credits: int
    held_credits: int
    debt_credits: int = 0


async def top_up(deps: Dependencies, tenant_id: TenantId, credits: int, reference: str) -> TopUpResult:
    """Grants credits once per reference; a replay returns the current balance."""
    if credits <= 0:
        raise InvalidArgument("credits must be positive", field="credits")
    if not reference:
        raise InvalidArgument("reference is required", field="reference")
    async with deps.repository.transaction() as tx:
        available = await tx.ledger.lock_available(tenant_id)
        if available is None:
            raise TenantNotFound(tenant_id)
        transfer = Transfer(
            key=topup_key(tenant_id, reference),
            ref_type=RefType.TOPUP,
            ref_id=reference,
            tenant_id=tenant_id,
            batch_id=None,
            debit_account_id=await tx.accounts.system_account_id(AccountKind.GRANTS),
            credit_account_id=available.id,
            amount=credits,
        )
        inserted = await tx.ledger.insert_transfers([transfer])
        if transfer.key not in inserted:
            return TopUpResult(balance=available.balance, replayed=True)
        ensure_room_for_credit(available.balance, await tx.accounts.held_total(tenant_id), credits)
        posting = post_transfers([(inserted[transfer.key], transfer)], {available.id: available.balance})
        await tx.ledger.write_posting(posting)
    return TopUpResult(balance=posting.balances[available.id], replayed=False)


async def get_balance(deps: Dependencies, tenant_id: TenantId) -> Balance:
    """The tenant's available and held credits."""
    async with deps.repository.transaction() as tx:
        available = await available_account(tx, tenant_id)
        held = await tx.accounts.held_total(tenant_id)
        debt = await tx.reversals.debt(tenant_id)
    return Balance(available_credits=available.balance, held_credits=held, debt_credits=debt)
