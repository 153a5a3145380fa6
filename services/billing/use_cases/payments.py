"""Payment use cases: the pack catalog, offline (invoice) payments, Stripe checkout webhooks, the
Checkout Sessions that start a purchase, and the receipts of payments received.

Every payment moves its credits `payments -> available` once: unique keys on recorded events, on
payments and on the purchase transfer make each delivery and each payment count once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from libs.errors import InvalidArgument
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
    checkout_payment,
    parse_stripe_event,
)
from services.billing.domain.receipts import PaymentReceipt
from services.billing.use_cases.dependencies import Dependencies


@dataclass(frozen=True)
class PaymentResult:
    """The balance after a payment was credited (or found credited: `replayed`)."""

    balance: int
    credits: int
    replayed: bool


@dataclass(frozen=True)
class PaymentEventResult:
    """What one payment-provider delivery did."""

    event_id: str
    event_type: str
    outcome: EventOutcome
    tenant_id: TenantId | None = None
    credits: int = 0


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
        if event.checkout is None:
            return PaymentEventResult(event.event_id, event.event_type, EventOutcome.IGNORED)
        record, credited = await _apply_checkout(deps, tx, record, event.checkout)
        await tx.payments.set_payment_event_outcome(record)
    return PaymentEventResult(event.event_id, event.event_type, record.outcome, record.tenant_id, credited)


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
    """Moves a payment's credits `payments -> available` once; a repeat returns the balance as is."""
    available = await tx.ledger.lock_available(payment.tenant_id)
    if available is None:
        raise TenantNotFound(payment.tenant_id)
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
    inserted = await tx.ledger.insert_transfers([transfer])
    if transfer.key not in inserted:
        raise LedgerInvariantViolated(f"payment {payment.key} was credited without a payment record")
    ensure_room_for_credit(
        available.balance, await tx.accounts.held_total(payment.tenant_id), payment.credits
    )
    posting = post_transfers([(inserted[transfer.key], transfer)], {available.id: available.balance})
    await tx.ledger.write_posting(posting)
    await tx.payments.link_payment_transfer(payment_id, inserted[transfer.key])
    return PaymentResult(balance=posting.balances[available.id], credits=payment.credits, replayed=False)


async def list_receipts(
    deps: Dependencies, tenant_id: TenantId, cursor: str, limit: int
) -> tuple[list[PaymentReceipt], str]:
    """The tenant's payments, newest first, and the next cursor ("" on the last page)."""
    size = page_size(limit)
    async with deps.repository.transaction() as tx:
        if not await tx.access.tenant_exists(tenant_id):
            raise TenantNotFound(tenant_id)
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
        if not await tx.access.tenant_exists(tenant_id):
            raise TenantNotFound(tenant_id)
    return await deps.checkout.open(tenant_id, pack, success_url, cancel_url)
