"""Payment use cases: the pack catalog, offline (invoice) payments, Stripe webhooks (paid checkout
sessions, automatic top-ups' PaymentIntents, refunds and disputes), the Checkout Sessions that start
a purchase, and the receipts of payments received.

Every payment moves its credits `payments -> available` once: unique keys on recorded events, on
payments and on the purchase transfer make each delivery and each payment count once. A payment's
credits pay the tenant's debt first (ADR-134). Refunds and disputes are `use_cases.reversals`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from libs.errors import InvalidArgument
from libs.ledger_keys import debt_payment_key
from services.billing.adapters.repository import LedgerTransaction
from services.billing.adapters.sql.payments import PaymentEventRecord
from services.billing.adapters.stripe_checkout import OpenedCheckout
from services.billing.domain.errors import (
    LedgerInvariantViolated,
    PaymentNotFound,
    PaymentsNotConfigured,
    TenantNotFound,
)
from services.billing.domain.ids import TenantId
from services.billing.domain.ledger import (
    BIGINT_MAX,
    AccountKind,
    RefType,
    Transfer,
    ensure_room_for_credit,
    page_size,
    parse_cursor,
    post_transfers,
)
from services.billing.domain.packs import CreditPack, find_pack, packs_by_price
from services.billing.domain.payments import (
    CheckoutSession,
    EventOutcome,
    InvalidSignature,
    Payment,
    PaymentProvider,
    PaymentRefused,
    StripeEvent,
    checkout_payment,
    parse_stripe_event,
)
from services.billing.domain.receipts import PaymentReceipt
from services.billing.domain.reversals import debt_paydown
from services.billing.use_cases import auto_top_up, reversals
from services.billing.use_cases.dependencies import Dependencies
from services.billing.use_cases.tenants import require_tenant


@dataclass(frozen=True)
class PaymentResult:
    """The balance after a payment was credited (or found credited: `replayed`), and how much of
    it paid the tenant's debt."""

    balance: int
    credits: int
    replayed: bool
    debt_paid: int = 0


@dataclass(frozen=True)
class PaymentEventResult:
    """What one payment-provider delivery did: credits added, or taken back (from the available
    credits, and recorded as debt), or returned by a dispute won."""

    event_id: str
    event_type: str
    outcome: EventOutcome
    tenant_id: TenantId | None = None
    credits: int = 0
    reversed_credits: int = 0
    debt_credits: int = 0
    reinstated_credits: int = 0


def list_packs(deps: Dependencies) -> list[CreditPack]:
    """The pack catalog, cheapest first."""
    return packs_by_price(deps.packs)


async def record_invoice_payment(
    deps: Dependencies, tenant_id: TenantId, reference: str, pack_id: str, credits: int, amount_usd_cents: int
) -> PaymentResult:
    """Credits an offline payment once per invoice reference (a pack, or custom credits and amount).

    A replayed reference returns the first payment's credits, whatever the replay asked for.
    """
    if pack_id:
        if credits or amount_usd_cents:
            raise InvalidArgument(
                "give a pack_id, or credits and amount_usd_cents, not both", field="pack_id"
            )
        pack = find_pack(deps.packs, pack_id)
        credits, amount_usd_cents = pack.credits, pack.price_usd_cents
    payment = Payment(
        tenant_id=tenant_id,
        provider=PaymentProvider.INVOICE,
        reference=reference.strip(),
        credits=credits,
        amount_usd_cents=amount_usd_cents,
        pack_id=pack_id or None,
    )
    async with deps.repository.transaction() as tx:
        return await _credit_payment(tx, payment)


async def handle_stripe_event(
    deps: Dependencies, payload: bytes, signature_header: str
) -> PaymentEventResult:
    """Verifies and applies one Stripe webhook delivery; every delivery is recorded.

    Idempotent per event id (a unique key on recorded events) and per payment (a unique key on
    payments, and the purchase transfer's key). An unverified delivery raises InvalidSignature.
    """
    if deps.stripe_verifier is None:
        raise InvalidSignature("Stripe webhooks are not configured")
    try:
        event = parse_stripe_event(deps.stripe_verifier.verify(payload, signature_header))
    except InvalidArgument as refusal:
        rejected = PaymentEventRecord(
            PaymentProvider.STRIPE, None, "", EventOutcome.REJECTED, refusal.message
        )
        async with deps.repository.transaction() as tx:
            await tx.payments.insert_payment_event(rejected)
        raise
    record = PaymentEventRecord(
        PaymentProvider.STRIPE, event.event_id, event.event_type, EventOutcome.IGNORED
    )
    async with deps.repository.transaction() as tx:
        if not await tx.payments.insert_payment_event(record):
            repeat = replace(
                record, event_id=None, outcome=EventOutcome.DUPLICATE_EVENT, detail=event.event_id
            )
            await tx.payments.insert_payment_event(repeat)
            return PaymentEventResult(event.event_id, event.event_type, EventOutcome.DUPLICATE_EVENT)
        if event.refund is not None or event.dispute is not None:
            return await _apply_reversal(deps, tx, record, event)
        if event.intent is not None:
            record, credited = await auto_top_up.apply_intent_event(
                deps, tx, record, event.intent, _credit_payment
            )
        elif event.checkout is not None:
            record, credited = await _apply_checkout(deps, tx, record, event.checkout)
        else:
            return PaymentEventResult(event.event_id, event.event_type, EventOutcome.IGNORED)
        await tx.payments.set_payment_event_outcome(record)
    return PaymentEventResult(event.event_id, event.event_type, record.outcome, record.tenant_id, credited)


async def _apply_reversal(
    deps: Dependencies, tx: LedgerTransaction, record: PaymentEventRecord, event: StripeEvent
) -> PaymentEventResult:
    """A refund or dispute event, applied in the event's transaction (ADR-134)."""
    now = deps.clock()
    if event.refund is not None:
        done = await reversals.apply_refund(tx, event.refund, now)
        intent = event.refund.payment_intent
    else:
        assert event.dispute is not None
        done = await reversals.apply_dispute(tx, event.dispute, now)
        intent = event.dispute.payment_intent
    if done.payment is None:
        record = replace(
            record, outcome=EventOutcome.REFUSED, detail=f"no payment of ours has payment intent {intent!r}"
        )
    elif not done.applied:
        record = replace(
            record,
            outcome=EventOutcome.IGNORED,
            detail="already applied, or nothing to take back or return",
            tenant_id=done.payment.tenant_id,
            payment_reference=done.payment.reference,
        )
    else:
        record = replace(
            record,
            outcome=EventOutcome.REINSTATED if done.reinstated else EventOutcome.REVERSED,
            tenant_id=done.payment.tenant_id,
            payment_reference=done.payment.reference,
        )
    await tx.payments.set_payment_event_outcome(record)
    return PaymentEventResult(
        event.event_id,
        event.event_type,
        record.outcome,
        record.tenant_id,
        reversed_credits=done.from_available + done.to_debt,
        debt_credits=done.to_debt,
        reinstated_credits=done.reinstated,
    )


async def _apply_checkout(
    deps: Dependencies, tx: LedgerTransaction, record: PaymentEventRecord, session: CheckoutSession
) -> tuple[PaymentEventRecord, int]:
    """What a checkout session event did, and the credits it added (0 unless freshly credited)."""
    if session.payment_status != "paid":
        return replace(record, outcome=EventOutcome.NOT_PAID, payment_reference=session.session_id), 0
    try:
        payment = checkout_payment(session, deps.packs.get(session.metadata.get("pack_id", "")))
        if not await tx.access.tenant_exists(payment.tenant_id):
            raise PaymentRefused(f"checkout session {session.session_id} names an unknown tenant")
    except PaymentRefused as refusal:
        refused = replace(
            record,
            outcome=EventOutcome.REFUSED,
            detail=str(refusal),
            payment_reference=session.session_id,
        )
        return refused, 0
    credited = await _credit_payment(tx, payment)
    applied = replace(
        record,
        outcome=EventOutcome.DUPLICATE_PAYMENT if credited.replayed else EventOutcome.CREDITED,
        tenant_id=payment.tenant_id,
        payment_reference=payment.reference,
    )
    return applied, credited.credits


async def _credit_payment(tx: LedgerTransaction, payment: Payment) -> PaymentResult:
    """Moves a payment's credits `payments -> available` once, then pays the tenant's debt from them
    first (`available -> debt`, ADR-134); a repeat returns the balance as is."""
    wallet = await tx.ledger.lock_wallet(payment.tenant_id)
    if wallet is None:
        raise TenantNotFound(payment.tenant_id)
    available = wallet.available
    payment_id = await tx.payments.insert_payment(payment)
    if payment_id is None:
        return PaymentResult(balance=available.balance, credits=0, replayed=True)
    transfer = Transfer(
        key=payment.key,
        ref_type=RefType.PURCHASE,
        ref_id=payment.ref_id,
        tenant_id=payment.tenant_id,
        batch_id=None,
        debit_account_id=await tx.accounts.system_account_id(AccountKind.PAYMENTS),
        credit_account_id=available.id,
        amount=payment.credits,
    )
    transfers = [transfer]
    paid = debt_paydown(payment.credits, wallet.owed)
    if paid and wallet.debt is not None:
        transfers.append(
            Transfer(
                key=debt_payment_key(payment.provider.value, payment.reference),
                ref_type=RefType.DEBT_PAYMENT,
                ref_id=payment.ref_id,
                tenant_id=payment.tenant_id,
                batch_id=None,
                debit_account_id=available.id,
                credit_account_id=wallet.debt.id,
                amount=paid,
            )
        )
    inserted = await tx.ledger.insert_transfers(transfers)
    if len(inserted) != len(transfers):
        raise LedgerInvariantViolated(f"payment {payment.key} was credited without a payment record")
    ensure_room_for_credit(
        available.balance, await tx.accounts.held_total(payment.tenant_id), payment.credits
    )
    opening = {available.id: available.balance}
    if wallet.debt is not None:
        opening[wallet.debt.id] = wallet.debt.balance
    posting = post_transfers(
        [(inserted[t.key], t) for t in transfers],
        opening,
        debit_normal={wallet.debt.id} if wallet.debt is not None else (),
    )
    await tx.ledger.write_posting(posting)
    await tx.payments.link_payment_transfer(payment_id, inserted[transfer.key])
    return PaymentResult(
        balance=posting.balances[available.id], credits=payment.credits, replayed=False, debt_paid=paid
    )


async def list_receipts(
    deps: Dependencies, tenant_id: TenantId, cursor: str, limit: int
) -> tuple[list[PaymentReceipt], str]:
    """The tenant's payments, newest first, and the next cursor ("" on the last page)."""
    size = page_size(limit)
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, tenant_id)
        found = await tx.usage.receipts(tenant_id, parse_cursor(cursor), size + 1)
    if len(found) <= size:
        return found, ""
    return found[:size], str(found[size - 1].payment_id)


async def get_receipt(deps: Dependencies, tenant_id: TenantId, payment_id: str) -> PaymentReceipt:
    """One payment of the tenant; PaymentNotFound for an unknown one or another tenant's."""
    if not payment_id.isascii() or not payment_id.isdigit() or not 0 < int(payment_id) <= BIGINT_MAX:
        raise PaymentNotFound(payment_id)
    async with deps.repository.transaction() as tx:
        found = await tx.usage.receipt(tenant_id, int(payment_id))
    if found is None:
        raise PaymentNotFound(payment_id)
    return found


async def open_checkout(
    deps: Dependencies, tenant_id: TenantId, pack_id: str, success_url: str, cancel_url: str
) -> OpenedCheckout:
    """A Stripe Checkout Session for one pack; the paid-session webhook credits it (once)."""
    if deps.checkout is None:
        raise PaymentsNotConfigured
    pack = find_pack(deps.packs, pack_id)
    for field, url in (("success_url", success_url), ("cancel_url", cancel_url)):
        if not url.startswith(("https://", "http://")):
            raise InvalidArgument(f"{field} must be an absolute http(s) URL", field=field)
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, tenant_id)
    customer = await auto_top_up.customer_for_checkout(deps, tenant_id)
    return await deps.checkout.open(tenant_id, pack, success_url, cancel_url, customer)
