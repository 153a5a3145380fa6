"""Stripe Checkout Sessions, opened with the official `stripe` library (Stripe's API or a local fake
that follows it, at `api_base`).

The session names the tenant and the pack in its metadata; the webhook that reports it paid
(`checkout.session.completed`, verified in `stripe_webhooks`) is what credits the tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.billing.adapters.stripe_client import LazyStripeClient
from services.billing.domain.errors import CheckoutUnavailable
from services.billing.domain.ids import TenantId
from services.billing.domain.packs import CreditPack

if TYPE_CHECKING:
    import stripe
    from stripe.params.checkout import SessionCreateParams

# Stripe answers a Checkout Session create in well under a second; a stuck one must not hold a page.
CHECKOUT_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class OpenedCheckout:
    """A Checkout Session Stripe opened, and its hosted payment page."""

    session_id: str
    url: str


class StripeCheckout:
    """Opens one Checkout Session per purchase (mode `payment`, one line: the pack at its price)."""

    def __init__(self, secret_key: str, api_base: str | None = None) -> None:
        self._client = LazyStripeClient(
            secret_key, api_base, timeout_seconds=CHECKOUT_TIMEOUT_SECONDS, network_retries=1
        )

    def _stripe(self) -> stripe.StripeClient:
        return self._client.get()

    async def open(
        self, tenant_id: TenantId, pack: CreditPack, success_url: str, cancel_url: str, customer_id: str = ""
    ) -> OpenedCheckout:
        """A new Checkout Session for `pack`; CheckoutUnavailable when Stripe does not open one.

        With the tenant's Stripe Customer, the card paid with is saved to it for off-session use
        (`setup_future_usage`): what automatic top-ups charge (ADR-135).
        """
        import stripe

        params: SessionCreateParams = {
            "mode": "payment",
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": str(tenant_id),
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": pack.price_usd_cents,
                        "product_data": {"name": f"{pack.name}: {pack.credits:,} credits"},
                    },
                }
            ],
            "metadata": {"tenant_id": str(tenant_id), "pack_id": pack.pack_id},
        }
        if customer_id:
            params["customer"] = customer_id
            params["payment_intent_data"] = {"setup_future_usage": "off_session"}
        try:
            session = await self._stripe().v1.checkout.sessions.create_async(params)
        except stripe.StripeError as error:
            raise CheckoutUnavailable(str(error.user_message or type(error).__name__)) from None
        if not session.url:
            raise CheckoutUnavailable(f"session {session.id} has no payment page")
        return OpenedCheckout(session_id=session.id, url=session.url)
