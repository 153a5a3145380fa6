"""Payments that go back (issue 29 item 4, ADR-134): refunds and disputes of a Stripe payment take
back the credits it bought, from the available credits first; what was already spent becomes debt.

The tenant's `debt` account is debit-normal: its balance is minus what the tenant owes, so every
tenant balance is still the sum of its entries and `available` never goes below zero. A debt blocks
new batches until a payment pays it (a payment's credits pay the debt first). A dispute won returns
what it took: to the debt first (what the tenant owes because of it), then to available. Pure rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from libs.errors import FailedPrecondition


class ReversalKind(StrEnum):
    """Why a payment's credits go back."""

    REFUND = "refund"
    DISPUTE = "dispute"


# A dispute closed with one of these statuses returns its funds (`warning_closed`: an inquiry that
# never became a chargeback); `lost` keeps them taken.
DISPUTE_RETURNED_STATUSES = frozenset({"won", "warning_closed"})
DISPUTE_OPEN_EVENTS = frozenset({"charge.dispute.created", "charge.dispute.funds_withdrawn"})
DISPUTE_CLOSED_EVENTS = frozenset({"charge.dispute.closed", "charge.dispute.funds_reinstated"})
DISPUTE_EVENTS = DISPUTE_OPEN_EVENTS | DISPUTE_CLOSED_EVENTS | {"charge.dispute.updated"}
REFUND_EVENT = "charge.refunded"


class DebtOutstanding(FailedPrecondition):
    """The tenant owes credits (a refunded or disputed payment already spent): no new batch until
    a payment pays the debt. Nothing is frozen."""

    reason = "debt_outstanding"

    def __init__(self, debt_credits: int, required_credits: int) -> None:
        super().__init__(
            f"this account owes {debt_credits} credits (a refunded or disputed payment whose credits were"
            " already spent); buy credits to pay the debt before creating batches",
            debt_credits=debt_credits,
            required_credits=required_credits,
        )


@dataclass(frozen=True)
class ReversalSplit:
    """Where the credits a reversal takes back come from."""

    from_available: int
    to_debt: int

    @property
    def credits(self) -> int:
        return self.from_available + self.to_debt


def split_reversal(credits: int, available: int) -> ReversalSplit:
    """Takes `credits` back from `available` first; the rest (already spent) becomes debt."""
    taken = min(credits, max(available, 0))
    return ReversalSplit(from_available=taken, to_debt=credits - taken)


@dataclass(frozen=True)
class ReinstatementSplit:
    """Where the credits of a reversal go when it is undone (a dispute won)."""

    to_debt: int
    to_available: int


def split_reinstatement(credits: int, owed: int) -> ReinstatementSplit:
    """Pays the tenant's debt first (up to what it owes), the rest back to available."""
    to_debt = min(credits, max(owed, 0))
    return ReinstatementSplit(to_debt=to_debt, to_available=credits - to_debt)


def debt_paydown(credits: int, owed: int) -> int:
    """How much of an incoming payment's `credits` pays the debt (all of it, up to what is owed)."""
    return min(credits, max(owed, 0))


def credits_for_cents(credits: int, amount_cents: int, cents: int) -> int:
    """The credits a part (`cents`) of a payment of `amount_cents` bought, rounded down (the whole
    payment: all of them)."""
    if amount_cents <= 0 or cents >= amount_cents:
        return credits
    return credits * max(cents, 0) // amount_cents


def refund_reversal_credits(
    credits: int, amount_cents: int, refunded_before_cents: int, refunded_now_cents: int, remaining: int
) -> int:
    """What a refund level (Stripe's cumulative `amount_refunded`) takes back beyond the level seen
    before, never more than the payment still holds (`remaining`: not yet taken back)."""
    if refunded_now_cents <= refunded_before_cents:
        return 0
    more = credits_for_cents(credits, amount_cents, refunded_now_cents) - credits_for_cents(
        credits, amount_cents, refunded_before_cents
    )
    return max(0, min(more, remaining))


@dataclass(frozen=True)
class ChargeRefunded:
    """A `charge.refunded` event's Charge: `amount_refunded` is cumulative over its refunds."""

    charge_id: str
    payment_intent: str
    amount: int
    amount_refunded: int
    currency: str


@dataclass(frozen=True)
class DisputeChange:
    """A `charge.dispute.*` event's Dispute."""

    event_type: str
    dispute_id: str
    charge_id: str
    payment_intent: str
    amount: int
    status: str
    reason: str

    @property
    def opens(self) -> bool:
        """Funds were (or will be) withdrawn: take the credits back."""
        return self.event_type in DISPUTE_OPEN_EVENTS

    @property
    def returns(self) -> bool:
        """The dispute closed in the merchant's favour: return what it took."""
        if self.event_type == "charge.dispute.funds_reinstated":
            return True
        return self.event_type == "charge.dispute.closed" and self.status in DISPUTE_RETURNED_STATUSES


def _text(document: Mapping[str, object], key: str) -> str:
    value = document.get(key)
    if isinstance(value, Mapping):  # an expanded object: its id
        value = value.get("id")
    return value if isinstance(value, str) else ""


def _int(document: Mapping[str, object], key: str) -> int:
    value = document.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def parse_charge_refunded(charge: Mapping[str, object]) -> ChargeRefunded:
    """The fields of a refunded Charge billing acts on."""
    return ChargeRefunded(
        charge_id=_text(charge, "id"),
        payment_intent=_text(charge, "payment_intent"),
        amount=_int(charge, "amount"),
        amount_refunded=_int(charge, "amount_refunded"),
        currency=_text(charge, "currency").lower(),
    )


def parse_dispute(event_type: str, dispute: Mapping[str, object]) -> DisputeChange:
    """The fields of a Dispute billing acts on."""
    return DisputeChange(
        event_type=event_type,
        dispute_id=_text(dispute, "id"),
        charge_id=_text(dispute, "charge"),
        payment_intent=_text(dispute, "payment_intent"),
        amount=_int(dispute, "amount"),
        status=_text(dispute, "status"),
        reason=_text(dispute, "reason"),
    )
