"""Payments that go back (issue 29 item 4, ADR-134): a refunded or disputed Stripe payment, arriving
as a verified webhook (`payments.handle_stripe_event`), takes back the credits it bought; a dispute
won returns them.

Each runs inside the event's transaction: the payment row locked first, then the tenant's available
and debt accounts. The credits come from the available balance first; what was already spent is
recorded on the tenant's debt account (debit-normal), which refuses new batches until a payment
pays it. Every transfer is keyed by the payment and the refund level or dispute (`libs.ledger_keys`),
and every reversal is one row per source: a repeated or reordered delivery changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from libs.ledger_keys import reinstatement_key, reversal_key
from services.billing import metrics as billing_metrics
from services.billing.adapters.events import spend_alert_event
from services.billing.adapters.repository import LedgerTransaction
from services.billing.adapters.sql.ledger import Wallet
from services.billing.adapters.sql.reversals import LockedPayment
from services.billing.domain.alerts import crossings
from services.billing.domain.budgets import period_of
from services.billing.domain.errors import LedgerInvariantViolated
from services.billing.domain.ledger import AccountKind, RefType, Transfer, post_transfers
from services.billing.domain.payments import PaymentProvider
from services.billing.domain.reversals import (
    ChargeRefunded,
    DisputeChange,
    ReversalKind,
    ReversalSplit,
    credits_for_cents,
    refund_reversal_credits,
    split_reinstatement,
    split_reversal,
)

STRIPE = PaymentProvider.STRIPE.value


@dataclass(frozen=True)
class ReversalOutcome:
    """What one refund or dispute event did to its payment's credits (all 0: nothing, a repeat)."""

    payment: LockedPayment | None
    applied: bool
    from_available: int = 0
    to_debt: int = 0
    reinstated: int = 0


async def apply_refund(tx: LedgerTransaction, refund: ChargeRefunded, now: datetime) -> ReversalOutcome:
    """Takes back what a refund level adds (Stripe's cumulative `amount_refunded` beyond the level
    already applied); an older or repeated level changes nothing."""
    payment = await tx.reversals.lock_payment(STRIPE, refund.payment_intent)
    if payment is None or refund.amount_refunded <= payment.refunded_usd_cents:
        return ReversalOutcome(payment, applied=False)
    credits = refund_reversal_credits(
        payment.credits,
        payment.amount_usd_cents,
        payment.refunded_usd_cents,
        refund.amount_refunded,
        payment.remaining,
    )
    split = await _reverse(
        tx, payment, ReversalKind.REFUND, f"refunded:{refund.amount_refunded}", credits, now
    )
    await tx.reversals.set_payment_reversed(
        payment.payment_id, refund.amount_refunded, payment.reversed_credits + split.credits
    )
    return ReversalOutcome(payment, True, split.from_available, split.to_debt)


async def apply_dispute(tx: LedgerTransaction, dispute: DisputeChange, now: datetime) -> ReversalOutcome:
    """A dispute opened takes the disputed credits back (once per dispute); closed in our favour it
    returns them (to the debt first); lost, it keeps them. Other updates change nothing."""
    payment = await tx.reversals.lock_payment(STRIPE, dispute.payment_intent)
    if payment is None:
        return ReversalOutcome(None, applied=False)
    if dispute.opens:
        if await tx.reversals.lock_reversal(payment.payment_id, ReversalKind.DISPUTE, dispute.dispute_id):
            return ReversalOutcome(payment, applied=False)
        credits = min(
            credits_for_cents(payment.credits, payment.amount_usd_cents, dispute.amount), payment.remaining
        )
        split = await _reverse(tx, payment, ReversalKind.DISPUTE, dispute.dispute_id, credits, now)
        await tx.reversals.set_payment_reversed(
            payment.payment_id, payment.refunded_usd_cents, payment.reversed_credits + split.credits
        )
        return ReversalOutcome(payment, True, split.from_available, split.to_debt)
    if dispute.returns:
        return await _reinstate(tx, payment, dispute.dispute_id)
    return ReversalOutcome(payment, applied=False)


async def _locked_wallet(tx: LedgerTransaction, payment: LockedPayment) -> Wallet:
    await tx.ledger.ensure_debt_account(payment.tenant_id)
    wallet = await tx.ledger.lock_wallet(payment.tenant_id)
    if wallet is None or wallet.debt is None:
        raise LedgerInvariantViolated(f"tenant {payment.tenant_id} has no wallet for its payment")
    return wallet


async def _post(tx: LedgerTransaction, wallet: Wallet, parts: list[Transfer | None]) -> dict[int, int]:
    """Posts the non-empty parts on the wallet (debt debit-normal); the closing balances."""
    transfers = [part for part in parts if part is not None]
    if not transfers:
        return {}
    inserted = await tx.ledger.insert_transfers(transfers)
    if len(inserted) != len(transfers):
        raise LedgerInvariantViolated(f"a payment reversal was posted twice: {[t.key for t in transfers]}")
    assert wallet.debt is not None
    posting = post_transfers(
        [(inserted[transfer.key], transfer) for transfer in transfers],
        {wallet.available.id: wallet.available.balance, wallet.debt.id: wallet.debt.balance},
        debit_normal={wallet.debt.id},
    )
    await tx.ledger.write_posting(posting)
    return posting.balances


def _transfer(
    payment: LockedPayment, key: str, ref_id: str, debit: int, credit: int, amount: int
) -> Transfer | None:
    """One part of a reversal or reinstatement; None for a part of zero credits (nothing to post)."""
    if amount <= 0:
        return None
    reinstating = key.startswith("payment_reinstated")
    return Transfer(
        key=key,
        ref_type=RefType.PAYMENT_REINSTATED if reinstating else RefType.PAYMENT_REVERSAL,
        ref_id=ref_id,
        tenant_id=payment.tenant_id,
        batch_id=None,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
    )


async def _reverse(
    tx: LedgerTransaction,
    payment: LockedPayment,
    kind: ReversalKind,
    source_id: str,
    credits: int,
    now: datetime,
) -> ReversalSplit:
    wallet = await _locked_wallet(tx, payment)
    assert wallet.debt is not None
    split = split_reversal(credits, wallet.available.balance)
    if not await tx.reversals.insert_reversal(payment, kind, source_id, split):
        raise LedgerInvariantViolated(f"payment {payment.reference} was reversed twice for {source_id}")
    payments_account = await tx.accounts.system_account_id(AccountKind.PAYMENTS)
    key = reversal_key(STRIPE, payment.reference, source_id)
    ref_id = f"{kind.value}:{source_id}:{payment.reference}"
    parts = [
        _transfer(payment, key, ref_id, wallet.available.id, payments_account, split.from_available),
        _transfer(payment, f"{key}:debt", ref_id, wallet.debt.id, payments_account, split.to_debt),
    ]
    await _post(tx, wallet, parts)
    await _announce_low_balance(
        tx, payment, wallet.available.balance, wallet.available.balance - split.from_available, now
    )
    billing_metrics.record_reversal(split.from_available, split.to_debt)
    return split


async def _reinstate(tx: LedgerTransaction, payment: LockedPayment, dispute_id: str) -> ReversalOutcome:
    reversal = await tx.reversals.lock_reversal(payment.payment_id, ReversalKind.DISPUTE, dispute_id)
    if reversal is None or reversal.status != "reversed":
        return ReversalOutcome(payment, applied=False)
    wallet = await _locked_wallet(tx, payment)
    assert wallet.debt is not None
    split = split_reinstatement(reversal.credits, wallet.owed)
    payments_account = await tx.accounts.system_account_id(AccountKind.PAYMENTS)
    key = reinstatement_key(STRIPE, payment.reference, dispute_id)
    ref_id = f"dispute:{dispute_id}:{payment.reference}"
    parts = [
        _transfer(payment, f"{key}:debt", ref_id, payments_account, wallet.debt.id, split.to_debt),
        _transfer(payment, key, ref_id, payments_account, wallet.available.id, split.to_available),
    ]
    await _post(tx, wallet, parts)
    await tx.reversals.mark_reinstated(reversal.reversal_id, split.to_debt, split.to_available)
    await tx.reversals.set_payment_reversed(
        payment.payment_id, payment.refunded_usd_cents, payment.reversed_credits - reversal.credits
    )
    return ReversalOutcome(payment, True, reinstated=reversal.credits)


async def _announce_low_balance(
    tx: LedgerTransaction, payment: LockedPayment, before: int, after: int, now: datetime
) -> None:
    """A reversal moves the available credits down like a freeze: a crossing of the low-balance
    line is announced the same way (ADR-125)."""
    if after >= before:
        return
    thresholds = await tx.spend_control.alert_thresholds(payment.tenant_id)
    found = crossings(thresholds, before, after, {}, {}, {})
    if found:
        await tx.add_events(
            [spend_alert_event(str(uuid.uuid4()), payment.tenant_id, c, period_of(now), now) for c in found]
        )
        billing_metrics.record_alerts(c.kind.value for c in found)
