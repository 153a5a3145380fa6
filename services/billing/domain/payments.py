"""Payments: a paid purchase of credits (Stripe Checkout or an offline invoice), credited once.

A payment is identified by (provider, reference): the Checkout Session id for Stripe, the invoice
number for offline payments. Its ledger transfer (`payments -> available`, ref_type `purchase`) is
keyed by the same pair, and its `ref_id` reads `<pack id>:<reference>` so the customer's ledger
shows which pack was bought with which payment.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from libs.errors import InvalidArgument
from services.billing.domain.ids import TenantId
from services.billing.domain.packs import CreditPack
from services.billing.domain.reversals import (
    DISPUTE_EVENTS,
    REFUND_EVENT,
    ChargeRefunded,
    DisputeChange,
    parse_charge_refunded,
    parse_dispute,
)

# Stripe event types that mean "this Checkout Session is paid" (card payments complete at once;
# delayed methods such as bank debits complete later with the async event).
PAYMENT_EVENT_TYPES = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
# A PaymentIntent billing created itself (an automatic top-up) succeeded or failed (ADR-135).
INTENT_EVENT_TYPES = frozenset({"payment_intent.succeeded", "payment_intent.payment_failed"})
# The ref_id of a payment without a pack (an invoice for a custom amount).
CUSTOM_PURCHASE = "custom"


class PaymentProvider(StrEnum):
    """Where the money came from."""

    STRIPE = "stripe"
    INVOICE = "invoice"


class EventOutcome(StrEnum):
    """What billing did with one payment-provider event (recorded for every delivery)."""

    CREDITED = "credited"
    # This event id was handled before (Stripe delivers at least once).
    DUPLICATE_EVENT = "duplicate_event"
    # Another event already credited this payment (e.g. completed, then async_payment_succeeded).
    DUPLICATE_PAYMENT = "duplicate_payment"
    # A type we do not act on: acknowledged so Stripe stops sending it.
    IGNORED = "ignored"
    # Checkout completed but not paid yet (delayed payment methods).
    NOT_PAID = "not_paid"
    # Signed, but not something we can credit (unknown tenant or pack, wrong amount or currency).
    REFUSED = "refused"
    # Unsigned, tampered, too old or unreadable: never acted on.
    REJECTED = "rejected"
    # A refund or a dispute took credits back (ADR-134); `reinstated`: a dispute won returned them.
    REVERSED = "reversed"
    REINSTATED = "reinstated"
    # An automatic top-up's PaymentIntent failed (ADR-135): auto top-up turned itself off.
    PAYMENT_FAILED = "payment_failed"


class PaymentRefused(Exception):
    """A signed event that cannot be credited; recorded and acknowledged (Stripe must not retry)."""


class InvalidSignature(InvalidArgument):
    """A webhook delivery whose signature does not verify (recorded, never acted on)."""

    reason = "invalid_signature"

    def __init__(self, detail: str) -> None:
        super().__init__(f"webhook signature verification failed: {detail}")


@dataclass(frozen=True)
class Payment:
    """Money received for `credits`; `pack_id` None for a custom invoice."""

    tenant_id: TenantId
    provider: PaymentProvider
    reference: str
    credits: int
    amount_usd_cents: int
    pack_id: str | None = None
    payment_intent: str | None = None

    def __post_init__(self) -> None:
        if self.credits <= 0:
            raise InvalidArgument("credits must be positive", field="credits")
        if self.amount_usd_cents < 0:
            raise InvalidArgument("amount_usd_cents must not be negative", field="amount_usd_cents")
        if not self.reference.strip():
            raise InvalidArgument("reference is required", field="reference")

    @property
    def key(self) -> str:
        """One purchase transfer per (provider, payment reference)."""
        return f"purchase:{self.provider.value}:{self.reference}"

    @property
    def ref_id(self) -> str:
        """The ledger's reference: the pack bought and the payment that paid for it."""
        return f"{self.pack_id or CUSTOM_PURCHASE}:{self.reference}"


@dataclass(frozen=True)
class CheckoutSession:
    """The fields of a Stripe Checkout Session that decide a credit."""

    session_id: str
    payment_intent: str | None
    payment_status: str
    amount_total: int
    currency: str
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class IntentOutcome:
    """A PaymentIntent event's fields: an automatic top-up paid or refused."""

    intent_id: str
    status: str
    amount: int
    currency: str
    metadata: Mapping[str, str]
    failure_code: str = ""
    failure_message: str = ""


@dataclass(frozen=True)
class StripeEvent:
    """A verified Stripe event; at most one of its objects is set, by event type."""

    event_id: str
    event_type: str
    checkout: CheckoutSession | None
    refund: ChargeRefunded | None = None
    dispute: DisputeChange | None = None
    intent: IntentOutcome | None = None


def parse_stripe_event(document: Mapping[str, object]) -> StripeEvent:
    """The parts of a verified Stripe event document billing acts on; InvalidArgument if malformed."""
    event_id = document.get("id")
    event_type = document.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise InvalidArgument("a Stripe event needs an id and a type")
    data = document.get("data")
    session = data.get("object") if isinstance(data, Mapping) else None
    if event_type in INTENT_EVENT_TYPES | DISPUTE_EVENTS | {REFUND_EVENT}:
        if not isinstance(session, Mapping) or not isinstance(session.get("id"), str):
            raise InvalidArgument(f"event {event_id} carries no {event_type.split('.')[0]} object")
        if event_type == REFUND_EVENT:
            return StripeEvent(event_id, event_type, None, refund=parse_charge_refunded(session))
        if event_type in DISPUTE_EVENTS:
            return StripeEvent(event_id, event_type, None, dispute=parse_dispute(event_type, session))
        return StripeEvent(event_id, event_type, None, intent=_intent(session))
    if event_type not in PAYMENT_EVENT_TYPES:
        return StripeEvent(event_id=event_id, event_type=event_type, checkout=None)
    if not isinstance(session, Mapping) or not isinstance(session.get("id"), str):
        raise InvalidArgument(f"event {event_id} carries no checkout session")
    metadata = session.get("metadata")
    intent = session.get("payment_intent")
    amount = session.get("amount_total")
    return StripeEvent(
        event_id=event_id,
        event_type=event_type,
        checkout=CheckoutSession(
            session_id=str(session["id"]),
            payment_intent=intent if isinstance(intent, str) and intent else None,
            payment_status=str(session.get("payment_status") or ""),
            amount_total=amount if isinstance(amount, int) else -1,
            currency=str(session.get("currency") or "").lower(),
            metadata=({str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, Mapping) else {}),
        ),
    )


def _metadata(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _intent(intent: Mapping[str, object]) -> IntentOutcome:
    error = intent.get("last_payment_error")
    error = error if isinstance(error, Mapping) else {}
    amount = intent.get("amount")
    return IntentOutcome(
        intent_id=str(intent["id"]),
        status=str(intent.get("status") or ""),
        amount=amount if isinstance(amount, int) else -1,
        currency=str(intent.get("currency") or "").lower(),
        metadata=_metadata(intent.get("metadata")),
        failure_code=str(error.get("code") or error.get("decline_code") or ""),
        failure_message=str(error.get("message") or ""),
    )


def checkout_tenant(session: CheckoutSession) -> TenantId:
    """The tenant the session was opened for (metadata `tenant_id`); PaymentRefused if unusable."""
    try:
        return TenantId(uuid.UUID(session.metadata.get("tenant_id", "")))
    except ValueError:
        raise PaymentRefused(
            f"checkout session {session.session_id} has no valid tenant_id metadata"
        ) from None


def checkout_payment(session: CheckoutSession, pack: CreditPack | None) -> Payment:
    """The payment a paid session stands for; PaymentRefused unless it paid exactly the pack's price."""
    if pack is None:
        raise PaymentRefused(f"checkout session {session.session_id} names no known pack")
    if session.currency != "usd" or session.amount_total != pack.price_usd_cents:
        raise PaymentRefused(
            f"checkout session {session.session_id} paid {session.amount_total} {session.currency or '?'},"
            f" pack {pack.pack_id} costs {pack.price_usd_cents} usd"
        )
    return stripe_pack_payment(checkout_tenant(session), pack, session.session_id, session.payment_intent)


def stripe_pack_payment(
    tenant_id: TenantId, pack: CreditPack, reference: str, payment_intent: str | None
) -> Payment:
    """A pack paid through Stripe: its credits for its price, under the paying object's id (a
    Checkout Session's, or an automatic top-up's PaymentIntent's)."""
    return Payment(
        tenant_id=tenant_id,
        provider=PaymentProvider.STRIPE,
        reference=reference,
        credits=pack.credits,
        amount_usd_cents=pack.price_usd_cents,
        pack_id=pack.pack_id,
        payment_intent=payment_intent,
    )
