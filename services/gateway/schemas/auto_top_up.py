"""Automatic top-up (issue 29 item 5, billing's ADR-135): the tenant's settings and its purchases."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from reelbatch.proto.billing.v1 import billing_pb2

from services.gateway.schemas.proto_views import MessageView, ProtoView

# Billing's bounds (`domain.auto_top_up`).
MAX_THRESHOLD_CREDITS = 10**15
MAX_PER_MONTH = 100

_THRESHOLD = (
    "Buy the pack when a batch's freeze takes the available credits below this many (detected in the "
    "freeze's own transaction, so concurrent batches buy one pack)."
)
_MAX_PER_MONTH = "At most this many automatic purchases per UTC calendar month."


class AutoTopUpUpdate(BaseModel):
    """The tenant's automatic top-up settings, replacing the current ones."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        strict=True,
        description=(
            "Turn it on (needs a card saved with Stripe: buy a pack once in the console) or off. A "
            "declined payment turns it off by itself."
        ),
    )
    threshold_credits: int = Field(strict=True, ge=1, le=MAX_THRESHOLD_CREDITS, description=_THRESHOLD)
    pack_id: str = Field(
        min_length=1, max_length=64, description="The pack to buy (`GET /api/enterprise/packs`)."
    )
    max_per_month: int = Field(default=1, strict=True, ge=1, le=MAX_PER_MONTH, description=_MAX_PER_MONTH)


class AutoTopUpPurchaseView(MessageView[billing_pb2.AutoTopUpPurchase]):
    """One automatic purchase a crossing asked for."""

    purchase_id: str
    status: str = Field(description="pending, submitted (charged, waiting for Stripe), succeeded or failed.")
    pack_id: str
    credits: int
    amount_usd_cents: int
    payment_intent: str | None = Field(description="The Stripe PaymentIntent, once created.")
    failure_code: str | None = Field(description="Stripe's code when it failed (card_declined, ...).")
    created_at: AwareDatetime


class AutoTopUpView(ProtoView):
    """The tenant's automatic top-up (off until turned on) and its latest purchases."""

    proto_names: ClassVar[dict[str, str]] = {
        "payment_method": "payment_method_label",
        "purchases_this_month": "bought_this_month",
    }

    enabled: bool
    threshold_credits: int = Field(description=_THRESHOLD)
    pack_id: str
    max_per_month: int = Field(description=_MAX_PER_MONTH)
    payment_method: str | None = Field(description="The saved card charged, e.g. `visa •••• 4242`.")
    disabled_reason: str | None = Field(
        description="Why it turned itself off (a declined payment); null otherwise."
    )
    disabled_at: AwareDatetime | None
    purchases_this_month: int = Field(description="Purchases this month that did not fail.")
    recent_purchases: list[AutoTopUpPurchaseView] = Field(description="The latest purchases, newest first.")

    @classmethod
    def from_proto(cls, answer: billing_pb2.AutoTopUp) -> Self:
        """The view of billing's AutoTopUp."""
        return cls.by_name(
            answer, recent_purchases=[AutoTopUpPurchaseView.from_proto(bought) for bought in answer.recent]
        )


def update_request(tenant_id: str, body: AutoTopUpUpdate) -> billing_pb2.SetAutoTopUpRequest:
    """Billing's request for a REST update."""
    return billing_pb2.SetAutoTopUpRequest(
        tenant_id=tenant_id,
        enabled=body.enabled,
        threshold_credits=body.threshold_credits,
        pack_id=body.pack_id,
        max_per_month=body.max_per_month,
    )
