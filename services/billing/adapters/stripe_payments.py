"""Off-session payments with Stripe (ADR-135), through the official `stripe` library (Stripe's API or
a local fake that follows it, at `api_base`): the tenant's Customer, its saved card, and the
PaymentIntent an automatic top-up creates (`confirm=true`, `off_session=true`, with an
Idempotency-Key, so a retried call is answered with the first PaymentIntent, never a second charge).

Nothing here credits anything: the verified `payment_intent.succeeded` webhook does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.billing.adapters.stripe_client import LazyStripeClient
from services.billing.domain.auto_top_up import PURPOSE, card_label
from services.billing.domain.errors import CheckoutUnavailable
from services.billing.domain.ids import TenantId

if TYPE_CHECKING:
    import stripe

# A stuck Stripe call must not hold the top-up loop (it retries later, with the same key).
PAYMENTS_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class SavedCard:
    """A payment method saved on the tenant's Stripe Customer."""

    payment_method_id: str
    label: str


@dataclass(frozen=True)
class ChargeAttempt:
    """What Stripe answered an off-session PaymentIntent: `succeeded` or `processing` (the webhook
    will tell), or declined (`declined` True, with Stripe's decline or error code)."""

    intent_id: str
    status: str
    declined: bool = False
    code: str = ""
    message: str = ""


@dataclass(frozen=True)
class OffSessionCharge:
    """One automatic top-up to charge."""

    tenant_id: TenantId
    purchase_id: str
    pack_id: str
    amount_usd_cents: int
    customer_id: str
    payment_method_id: str
    idempotency_key: str


class StripePayments:
    """Customers, saved cards and off-session PaymentIntents; CheckoutUnavailable when Stripe cannot
    be reached (a caller retries later)."""

    def __init__(self, secret_key: str, api_base: str | None = None) -> None:
        self._client = LazyStripeClient(
            secret_key, api_base, timeout_seconds=PAYMENTS_TIMEOUT_SECONDS, network_retries=2
        )

    def _stripe(self) -> stripe.StripeClient:
        return self._client.get()

    async def ensure_customer(self, tenant_id: TenantId, customer_id: str) -> str:
        """The tenant's Stripe Customer: `customer_id` when known, else a new one (idempotent per tenant)."""
        if customer_id:
            return customer_id
        import stripe

        try:
            customer = await self._stripe().v1.customers.create_async(
                {"metadata": {"tenant_id": str(tenant_id)}, "description": f"Reelbatch tenant {tenant_id}"},
                {"idempotency_key": f"reelbatch-customer-{tenant_id}"},
            )
        except stripe.StripeError as error:
            raise CheckoutUnavailable(str(error.user_message or type(error).__name__)) from None
        return str(customer.id)

    async def saved_card(self, customer_id: str) -> SavedCard | None:
        """The customer's most recently saved card, or None."""
        import stripe

        try:
            found = await self._stripe().v1.customers.payment_methods.list_async(
                customer_id, {"type": "card", "limit": 1}
            )
        except stripe.StripeError as error:
            raise CheckoutUnavailable(str(error.user_message or type(error).__name__)) from None
        if not found.data:
            return None
        method = found.data[0]
        card = method.card
        return SavedCard(
            payment_method_id=method.id,
            label=card_label(card.brand, card.last4) if card is not None else card_label("", ""),
        )

    async def charge(self, charge: OffSessionCharge) -> ChargeAttempt:
        """Creates and confirms the off-session PaymentIntent of one top-up, once per idempotency key.

        A card error (declined, authentication required) is an answer, not a failure; a network or
        server error raises CheckoutUnavailable and the caller retries with the same key.
        """
        import stripe

        try:
            intent = await self._stripe().v1.payment_intents.create_async(
                {
                    "amount": charge.amount_usd_cents,
                    "currency": "usd",
                    "customer": charge.customer_id,
                    "payment_method": charge.payment_method_id,
                    "off_session": True,
                    "confirm": True,
                    "description": f"Reelbatch automatic top-up ({charge.pack_id})",
                    "metadata": {
                        "tenant_id": str(charge.tenant_id),
                        "pack_id": charge.pack_id,
                        "auto_top_up_id": charge.purchase_id,
                        "purpose": PURPOSE,
                    },
                },
                {"idempotency_key": charge.idempotency_key},
            )
        except stripe.CardError as error:
            details = error.error
            intent_id = ""
            if details is not None and details.payment_intent is not None:
                intent_id = str(details.payment_intent.id)
            code = error.code or (details.decline_code if details is not None else None) or "card_declined"
            return ChargeAttempt(
                intent_id, "requires_payment_method", True, str(code), str(error.user_message or "")
            )
        except stripe.StripeError as error:
            raise CheckoutUnavailable(str(error.user_message or type(error).__name__)) from None
        return ChargeAttempt(str(intent.id), str(intent.status))
