"""What the customer console shows of a tenant's money: balances by source, usage with its value in
dollars, ledger lines with their reasons and receipts (statements and packs are the API's views,
`schemas/pricing.py`).

Plain frozen dataclasses: they feed templates and CSV exports only, never the JSON API. Dollar
values are integer US dollar micros; credits are integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from reelbatch.proto.billing.v1 import billing_pb2

from libs.field_mapping import from_fields
from libs.vocabulary import fault_of
from services.gateway.schemas.fields import none_if_empty

MICROS_PER_CENT = 10_000


def _utc(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True)
class Balances:
    """What the tenant can spend now, split by source (granted credits are spent first)."""

    available: int
    held: int
    paid: int
    granted: int


@dataclass(frozen=True)
class MonthMoney:
    """This month's movements of the available balance."""

    month: str
    spent: int
    refunded: int

    @property
    def net(self) -> int:
        """What the month's batches cost after what came back."""
        return self.spent - self.refunded


@dataclass(frozen=True)
class FailureReason:
    """Why a task failed, and whose fault that was (provider, customer_input, us, cancelled)."""

    failure_type: str
    fault: str
    message: str

    @classmethod
    def of(cls, failure_type: str, message: str) -> FailureReason:
        """The reason of a failure type (an unknown one is ours to explain)."""
        return cls(failure_type, fault_of(failure_type).value, message)


@dataclass(frozen=True)
class RecentFailure:
    """A failed or cancelled task, for the overview's list of the last failures."""

    batch_id: str
    task_id: str
    batch_index: int
    model: str
    reason: FailureReason
    finished_at: datetime | None


@dataclass(frozen=True)
class UsageRow:
    """One UTC day and model: credits frozen and given back, and their value at the average price."""

    day: date
    model: str
    spent: int
    refunded: int
    price_micros: int

    @property
    def net(self) -> int:
        return self.spent - self.refunded

    @property
    def spent_micros(self) -> int:
        return self.spent * self.price_micros

    @property
    def refunded_micros(self) -> int:
        return self.refunded * self.price_micros

    @property
    def net_micros(self) -> int:
        return self.net * self.price_micros


@dataclass(frozen=True)
class UsageReport:
    """Usage over whole UTC days [start, end), priced at the tenant's average paid price per credit."""

    start: date
    end: date
    rows: tuple[UsageRow, ...]
    price_micros: int
    paid_usd_cents: int
    purchased_credits: int
    granted_credits: int

    @classmethod
    def from_proto(cls, usage: billing_pb2.Usage, start: date, end: date) -> UsageReport:
        """The report of billing's usage answer."""
        price = usage.average_price_usd_micros
        return cls(
            start=start,
            end=end,
            rows=tuple(
                UsageRow(date.fromisoformat(day.day), day.model, day.spent, day.refunded, price)
                for day in usage.days
            ),
            price_micros=price,
            paid_usd_cents=usage.paid_usd_cents,
            purchased_credits=usage.purchased_credits,
            granted_credits=usage.granted_credits,
        )

    @property
    def spent(self) -> int:
        return sum(row.spent for row in self.rows)

    @property
    def refunded(self) -> int:
        return sum(row.refunded for row in self.rows)

    @property
    def models(self) -> tuple[str, ...]:
        """The models of the period, by name (the settlement releases' empty model last)."""
        return tuple(sorted({row.model for row in self.rows}, key=lambda model: (model == "", model)))


@dataclass(frozen=True)
class LedgerLine:
    """One change of the available balance, with its batch, task and reason where it has them."""

    entry_id: str
    ref_type: str
    ref_id: str
    batch_id: str | None
    task_id: str | None
    model: str | None
    credits_delta: int
    balance_after: int
    created_at: datetime
    reason: FailureReason | None = None
    # The transfer's public id: a refund's equals its task's `ledger_transfer_id` (webhook, files).
    ledger_transfer_id: str = ""

    @classmethod
    def from_proto(cls, entry: billing_pb2.LedgerEntry, reason: FailureReason | None) -> LedgerLine:
        """A line of billing's entry; a refund's ref_id is its task."""
        refund = entry.ref_type == "batch_refund"
        return cls(
            entry_id=entry.entry_id,
            ref_type=entry.ref_type,
            ref_id=entry.ref_id,
            batch_id=none_if_empty(entry.batch_id),
            task_id=entry.ref_id if refund else None,
            model=none_if_empty(entry.model),
            credits_delta=entry.credits_delta,
            balance_after=entry.balance_after,
            created_at=_utc(entry.created_at),
            reason=reason,
            ledger_transfer_id=entry.ledger_transfer_id,
        )


@dataclass(frozen=True)
class LedgerLines:
    """A page of ledger lines, newest first."""

    lines: tuple[LedgerLine, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class Receipt:
    """A payment received."""

    payment_id: str
    provider: str
    reference: str
    pack_id: str | None
    credits: int
    amount_usd_cents: int
    payment_intent: str | None
    created_at: datetime

    @classmethod
    def from_proto(cls, payment: billing_pb2.PaymentRecord) -> Receipt:
        """The receipt of billing's payment record."""
        return from_fields(
            cls,
            payment,
            pack_id=none_if_empty(payment.pack_id),
            payment_intent=none_if_empty(payment.payment_intent),
            created_at=_utc(payment.created_at),
        )

    @property
    def amount_micros(self) -> int:
        return self.amount_usd_cents * MICROS_PER_CENT
