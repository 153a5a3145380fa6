"""Automatic top-up use cases (issue 29 item 5, ADR-135): the tenant's settings, the loop that charges
the purchases crossings asked for, and what the PaymentIntent webhooks of those purchases do.

The crossing itself is detected by the freeze (`use_cases.reservations`), which writes the purchase
row in its transaction. The loop leases pending rows and creates one off-session PaymentIntent per
row with the row's crossing key as Stripe's Idempotency-Key: a crash, a retry or a second replica
gets the same PaymentIntent back, never a second charge. Credits arrive only through the verified
`payment_intent.succeeded` webhook, the same crediting path as every pack. A declined payment
turns the tenant's auto top-up off and alerts its owner (a signed `auto_top_up.failed` webhook, the
console banner, a metric).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from libs.errors import InvalidArgument
from services.billing import metrics as billing_metrics
from services.billing.adapters.events import auto_top_up_failed_event
from services.billing.adapters.repository import LedgerTransaction
from services.billing.adapters.sql.auto_top_up import PurchaseLine
from services.billing.adapters.sql.payments import PaymentEventRecord
from services.billing.adapters.stripe_payments import OffSessionCharge
from services.billing.domain.auto_top_up import (
    PURPOSE,
    AutoTopUpSettings,
    NoSavedPaymentMethod,
    PurchaseStatus,
    validated_settings,
)
from services.billing.domain.budgets import period_of
from services.billing.domain.errors import CheckoutUnavailable, PaymentsNotConfigured
from services.billing.domain.ids import TenantId
from services.billing.domain.payments import (
    EventOutcome,
    IntentOutcome,
    Payment,
    stripe_pack_payment,
)
from services.billing.use_cases.dependencies import Dependencies
from services.billing.use_cases.tenants import require_tenant

# Purchases listed with the settings (the console shows the latest few).
RECENT_PURCHASES = 10
OPEN = (PurchaseStatus.PENDING, PurchaseStatus.SUBMITTED)


@dataclass(frozen=True)
class AutoTopUpStatus:
    """A tenant's settings, its purchases this month and the latest ones."""

    settings: AutoTopUpSettings
    bought_this_month: int
    recent: tuple[PurchaseLine, ...]


async def get_auto_top_up(deps: Dependencies, tenant_id: TenantId) -> AutoTopUpStatus:
    """The tenant's automatic top-up settings and purchases."""
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, tenant_id)
        settings = await tx.auto_top_up.settings(tenant_id)
        bought = await tx.auto_top_up.bought_in(tenant_id, period_of(deps.clock()).start)
        recent = await tx.auto_top_up.purchases(tenant_id, RECENT_PURCHASES)
    return AutoTopUpStatus(settings, bought, tuple(recent))


async def set_auto_top_up(
    deps: Dependencies,
    tenant_id: TenantId,
    enabled: bool,
    threshold_credits: int,
    pack_id: str,
    max_per_month: int,
) -> AutoTopUpStatus:
    """Replaces the tenant's settings (the caller was authorised: an owner or the `billing` scope).

    Turning it on needs Stripe (PaymentsNotConfigured) and a card saved on the tenant's Stripe
    Customer (NoSavedPaymentMethod): the latest saved card is the one charged. Turning it on again
    clears the reason it turned itself off.
    """
    threshold, pack, per_month = validated_settings(
        enabled, threshold_credits, pack_id, max_per_month, deps.packs.keys()
    )
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, tenant_id)
        current = await tx.auto_top_up.settings(tenant_id)
    chosen = replace(
        current, enabled=enabled, threshold_credits=threshold, pack_id=pack, max_per_month=per_month
    )
    if enabled:
        if deps.stripe_payments is None:
            raise PaymentsNotConfigured
        customer = await deps.stripe_payments.ensure_customer(tenant_id, current.stripe_customer_id)
        card = await deps.stripe_payments.saved_card(customer)
        if card is None:
            async with deps.repository.transaction() as tx:
                await tx.auto_top_up.store_settings(tenant_id, replace(current, stripe_customer_id=customer))
            raise NoSavedPaymentMethod
        chosen = replace(
            chosen,
            stripe_customer_id=customer,
            payment_method_id=card.payment_method_id,
            payment_method_label=card.label,
            disabled_reason="",
            disabled_at=None,
        )
    async with deps.repository.transaction() as tx:
        await tx.auto_top_up.store_settings(tenant_id, chosen)
    return await get_auto_top_up(deps, tenant_id)


async def customer_for_checkout(deps: Dependencies, tenant_id: TenantId) -> str:
    """The tenant's Stripe Customer for a Checkout Session (created and kept on first use), so the
    card paid with is saved for automatic top-ups; "" without Stripe payments."""
    if deps.stripe_payments is None:
        return ""
    async with deps.repository.transaction() as tx:
        current = await tx.auto_top_up.settings(tenant_id)
    customer = await deps.stripe_payments.ensure_customer(tenant_id, current.stripe_customer_id)
    if customer != current.stripe_customer_id:
        async with deps.repository.transaction() as tx:
            latest = await tx.auto_top_up.settings(tenant_id)
            await tx.auto_top_up.store_settings(tenant_id, replace(latest, stripe_customer_id=customer))
    return customer


async def charge_due_top_ups(deps: Dependencies, limit: int, lease_seconds: float) -> int:
    """One round of the top-up loop: leases up to `limit` pending purchases and charges each once
    (per its crossing key); answers how many it leased. Stripe unreachable: the lease runs out and
    a later round retries with the same key."""
    if deps.stripe_payments is None:
        return 0
    async with deps.repository.transaction() as tx:
        claimed = await tx.auto_top_up.claim_pending(limit, lease_seconds)
    for purchase in claimed:
        async with deps.repository.transaction() as tx:
            settings = await tx.auto_top_up.settings(purchase.tenant_id)
            if not settings.enabled or not settings.payment_method_id:
                # Turned off between the crossing and the charge: nothing is bought.
                await tx.auto_top_up.set_status(
                    purchase.purchase_id,
                    PurchaseStatus.FAILED,
                    (PurchaseStatus.PENDING,),
                    failure_code="auto_top_up_off",
                    failure_message="automatic top-up was turned off before the charge",
                )
                continue
        try:
            attempt = await deps.stripe_payments.charge(
                OffSessionCharge(
                    tenant_id=purchase.tenant_id,
                    purchase_id=str(purchase.purchase_id),
                    pack_id=purchase.pack_id,
                    amount_usd_cents=purchase.amount_usd_cents,
                    customer_id=settings.stripe_customer_id,
                    payment_method_id=settings.payment_method_id,
                    idempotency_key=purchase.crossing_key,
                )
            )
        except CheckoutUnavailable:
            continue
        async with deps.repository.transaction() as tx:
            if attempt.declined:
                await record_decline(
                    deps, tx, purchase.purchase_id, attempt.code, attempt.message, attempt.intent_id
                )
            elif await tx.auto_top_up.set_status(
                purchase.purchase_id,
                PurchaseStatus.SUBMITTED,
                (PurchaseStatus.PENDING,),
                payment_intent=attempt.intent_id,
            ):
                billing_metrics.record_auto_top_ups("submitted")
    return len(claimed)


async def record_decline(
    deps: Dependencies,
    tx: LedgerTransaction,
    purchase_id: uuid.UUID,
    code: str,
    message: str,
    payment_intent: str,
) -> bool:
    """Marks an open purchase failed, turns the tenant's auto top-up off and writes the
    `auto_top_up.failed` alert to the outbox, once (the loop's answer and the webhook may both
    report it); False when the purchase was no longer open."""
    tenant_id = await tx.auto_top_up.set_status(
        purchase_id,
        PurchaseStatus.FAILED,
        OPEN,
        payment_intent=payment_intent or None,
        failure_code=code or "card_declined",
        failure_message=message,
    )
    if tenant_id is None:
        return False
    settings = await tx.auto_top_up.settings(tenant_id)
    await tx.auto_top_up.disable(tenant_id, f"payment declined ({code or 'card_declined'})")
    now = deps.clock()
    await tx.add_events(
        [
            auto_top_up_failed_event(
                str(purchase_id), tenant_id, settings, code or "card_declined", message, now
            )
        ]
    )
    billing_metrics.record_auto_top_ups("declined")
    billing_metrics.record_alerts(["auto_top_up.failed"])
    return True


class CreditedPayment(Protocol):
    """What crediting a payment answers (`payments.PaymentResult`)."""

    @property
    def credits(self) -> int: ...

    @property
    def replayed(self) -> bool: ...


async def apply_intent_event(
    deps: Dependencies,
    tx: LedgerTransaction,
    record: PaymentEventRecord,
    intent: IntentOutcome,
    credit: Callable[[LedgerTransaction, Payment], Awaitable[CreditedPayment]],
) -> tuple[PaymentEventRecord, int]:
    """What a `payment_intent.succeeded` / `payment_failed` event does: only PaymentIntents the
    top-up loop created (metadata `purpose`) are acted on; a checkout's is credited by its session."""
    metadata = intent.metadata
    if metadata.get("purpose") != PURPOSE:
        return replace(record, detail="not an automatic top-up (checkout payments credit by session)"), 0
    try:
        tenant_id = TenantId(uuid.UUID(metadata.get("tenant_id", "")))
        purchase_id = uuid.UUID(metadata.get("auto_top_up_id", ""))
    except ValueError:
        return replace(record, outcome=EventOutcome.REFUSED, detail="top-up metadata is not ours"), 0
    stated = replace(record, tenant_id=tenant_id, payment_reference=intent.intent_id)
    if intent.status != "succeeded":
        await record_decline(
            deps, tx, purchase_id, intent.failure_code, intent.failure_message, intent.intent_id
        )
        return replace(stated, outcome=EventOutcome.PAYMENT_FAILED, detail=intent.failure_code), 0
    pack = deps.packs.get(metadata.get("pack_id", ""))
    if pack is None or intent.currency != "usd" or intent.amount != pack.price_usd_cents:
        detail = (
            f"payment intent {intent.intent_id} paid {intent.amount} {intent.currency}, not its pack's price"
        )
        return replace(stated, outcome=EventOutcome.REFUSED, detail=detail), 0
    if not await tx.access.tenant_exists(tenant_id):
        return replace(stated, outcome=EventOutcome.REFUSED, detail="unknown tenant"), 0
    try:
        payment = stripe_pack_payment(tenant_id, pack, intent.intent_id, intent.intent_id)
    except InvalidArgument as refusal:
        return replace(stated, outcome=EventOutcome.REFUSED, detail=refusal.message), 0
    credited = await credit(tx, payment)
    if await tx.auto_top_up.set_status(
        purchase_id, PurchaseStatus.SUCCEEDED, OPEN, payment_intent=intent.intent_id
    ):
        billing_metrics.record_auto_top_ups("succeeded")
    outcome = EventOutcome.DUPLICATE_PAYMENT if credited.replayed else EventOutcome.CREDITED
    return replace(stated, outcome=outcome), credited.credits
