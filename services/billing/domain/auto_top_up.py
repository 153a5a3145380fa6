"""Automatic top-up (issue 29 item 5, ADR-135): when a movement takes a tenant's available credits
below its threshold, buy the chosen pack once with the saved payment method, at most N times per
UTC calendar month. Pure rules: the settings, the crossing and the decision; no I/O.

The crossing is found, like a spend alert (ADR-125), in the transaction that moves the credits
down, with the wallet locked: concurrent freezes see one crossing. The purchase is written as a row
keyed by the crossing (`crossing_key`, also Stripe's Idempotency-Key), and one purchase at most is
open per tenant, so concurrent crossings buy one pack. Credits arrive only through the verified
`payment_intent.succeeded` webhook, like every other payment.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from libs.errors import FailedPrecondition, InvalidArgument

MAX_PER_MONTH_LIMIT = 100
MAX_THRESHOLD_CREDITS = 10**15
# Stripe's metadata on the PaymentIntents the loop creates: what the webhook credits.
PURPOSE = "auto_top_up"
# The webhook event type (and SpendAlert type) of a top-up the payment method refused.
AUTO_TOP_UP_FAILED = "auto_top_up.failed"


class PurchaseStatus(StrEnum):
    """Where a top-up purchase is: waiting for the loop, sent to Stripe (waiting for the webhook),
    credited, or failed (declined: auto top-up turned itself off)."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class NoSavedPaymentMethod(FailedPrecondition):
    """Auto top-up needs a card saved with Stripe (buy a pack once in the console: its card is saved)."""

    reason = "no_saved_payment_method"

    def __init__(self) -> None:
        super().__init__(
            "no saved payment method: buy a pack once (its card is saved for automatic top-ups), then"
            " turn automatic top-up on"
        )


@dataclass(frozen=True)
class AutoTopUpSettings:
    """A tenant's settings (off by default) and the Stripe customer and card they charge."""

    enabled: bool = False
    threshold_credits: int = 0
    pack_id: str = ""
    max_per_month: int = 1
    stripe_customer_id: str = ""
    payment_method_id: str = ""
    payment_method_label: str = ""
    disabled_reason: str = ""
    disabled_at: datetime | None = None


AUTO_TOP_UP_OFF = AutoTopUpSettings()


def validated_settings(
    enabled: bool, threshold_credits: int, pack_id: str, max_per_month: int, packs: Iterable[str]
) -> tuple[int, str, int]:
    """(threshold, pack, max per month) as stored; InvalidArgument naming the bad field otherwise.
    Turned off, the values are kept as given when valid (the console shows them again)."""
    if not 1 <= threshold_credits <= MAX_THRESHOLD_CREDITS:
        raise InvalidArgument(
            f"threshold_credits must be between 1 and {MAX_THRESHOLD_CREDITS}", field="threshold_credits"
        )
    if pack_id not in set(packs):
        raise InvalidArgument(f"unknown pack {pack_id!r}", field="pack_id", pack_id=pack_id)
    if not 1 <= max_per_month <= MAX_PER_MONTH_LIMIT:
        raise InvalidArgument(
            f"max_per_month must be between 1 and {MAX_PER_MONTH_LIMIT}", field="max_per_month"
        )
    return threshold_credits, pack_id, max_per_month


@dataclass(frozen=True)
class TopUpTrigger:
    """What a movement group knows of a tenant's auto top-up when it locks the wallet."""

    threshold_credits: int
    pack_id: str
    max_per_month: int
    bought_this_month: int


def crossing_step(threshold: int, opening: int, steps: Iterable[tuple[str, int]]) -> str | None:
    """The key of the step (a transfer key, in posting order, with its signed change of the available
    credits) that takes the balance from at or above `threshold` to below it, or None."""
    balance = opening
    for key, delta in steps:
        after = balance + delta
        if balance >= threshold > after:
            return key
        balance = after
    return None


def should_buy(trigger: TopUpTrigger, crossed: bool) -> bool:
    """A crossing buys a pack while the month's purchases (not failed) are under the limit."""
    return crossed and trigger.bought_this_month < trigger.max_per_month


def crossing_key(tenant_id: uuid.UUID | str, step_key: str) -> str:
    """The purchase's unique key, derived from the crossing (the transfer that crossed): Stripe's
    Idempotency-Key for its PaymentIntent, so a retried or concurrent loop buys one pack."""
    return f"auto_top_up:{tenant_id}:{step_key}"


def card_label(brand: str, last4: str) -> str:
    """How a saved card is shown ("visa •••• 4242")."""
    return f"{brand or 'card'} •••• {last4}" if last4 else brand or "card"
