"""A batch's hold: what was frozen, what its task outcomes did, and how it settles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

# The settlement statuses are the shared vocabulary's (libs/vocabulary.py).
from libs.vocabulary import SettlementStatus as SettlementStatus
from services.billing.domain.errors import (
    AlreadySettled,
    LedgerInvariantViolated,
    ModelNotReserved,
    OutcomesMissing,
    TooManyOutcomes,
)
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import OutcomeKind, RefType, TaskOutcome, Transfer, settle_key


class CreditTotals(TypedDict):
    """A hold's batch, tenant and counters under the contracts' names (see `BatchHold.credit_totals`)."""

    batch_id: str
    tenant_id: str
    frozen_credits: int
    captured_credits: int
    refunded_credits: int
    released_credits: int
    settlement_status: str


@dataclass(frozen=True)
class BatchHold:
    """The credits frozen for one batch and the running tally of its task outcomes."""

    batch_id: BatchId
    tenant_id: TenantId
    hold_account_id: int
    item_count: int
    frozen: int
    available_before: int
    available_after: int
    # Reserved price per model: captures and refunds use it, whatever the price list says later.
    # A model frozen at several prices (items of different durations) is absent here and priced
    # from `line_prices` by the task's own frozen price.
    unit_prices: Mapping[str, int]
    captured: int = 0
    refunded: int = 0
    outcomes_applied: int = 0
    released: int = 0
    settlement_status: SettlementStatus = SettlementStatus.PENDING
    settled_at: datetime | None = None
    # Every (model, unit price) line frozen for the batch.
    line_prices: frozenset[tuple[str, int]] = frozenset()

    @property
    def held(self) -> int:
        """What is still frozen (I1: frozen = captured + refunded + released + held)."""
        return self.frozen - self.captured - self.refunded - self.released

    @property
    def is_settled(self) -> bool:
        return self.settlement_status is not SettlementStatus.PENDING

    def unit_price(self, model: str, task_price: int = 0) -> int:
        """The reserved price of a task of `model` that the batch service priced at `task_price`.

        A task price is taken only when the batch froze a line of that model at that price; a model
        frozen at a single price uses it whatever the task says; an empty model is fine when the
        batch has only one line.
        """
        if task_price and (model, task_price) in self.line_prices:
            return task_price
        if not model and len(self.unit_prices) == 1 and len(self.line_prices) <= 1:
            return next(iter(self.unit_prices.values()))
        price = self.unit_prices.get(model)
        if price is None:
            raise ModelNotReserved(self.batch_id, model)
        return price

    def credit_totals(self) -> CreditTotals:
        """The batch, its tenant and its counters as the contracts name them (`BatchSettlement`
        and the `batch.settled` event share these fields): ids as text, `*_credits` counters."""
        return CreditTotals(
            batch_id=str(self.batch_id),
            tenant_id=str(self.tenant_id),
            frozen_credits=self.frozen,
            captured_credits=self.captured,
            refunded_credits=self.refunded,
            released_credits=self.released,
            settlement_status=self.settlement_status.value,
        )


@dataclass(frozen=True)
class OutcomeTally:
    """The effect of freshly applied outcomes on one batch's counters."""

    captured: int = 0
    refunded: int = 0
    outcomes: int = 0

    def plus(self, kind: OutcomeKind, amount: int) -> OutcomeTally:
        if kind is OutcomeKind.CAPTURE:
            return OutcomeTally(self.captured + amount, self.refunded, self.outcomes + 1)
        return OutcomeTally(self.captured, self.refunded + amount, self.outcomes + 1)


def outcome_transfer(
    outcome: TaskOutcome, hold: BatchHold, *, revenue_account_id: int, available_account_id: int
) -> Transfer:
    """The transfer of one task outcome: hold -> revenue (capture) or hold -> available (refund)."""
    return Transfer(
        key=outcome.key,
        ref_type=outcome.kind.ref_type,
        ref_id=outcome.task_id,
        tenant_id=hold.tenant_id,
        batch_id=hold.batch_id,
        debit_account_id=hold.hold_account_id,
        credit_account_id=(
            revenue_account_id if outcome.kind is OutcomeKind.CAPTURE else available_account_id
        ),
        amount=hold.unit_price(outcome.model, outcome.unit_price),
        model=outcome.model,
    )


def tally_outcomes(hold: BatchHold, fresh: Iterable[TaskOutcome]) -> OutcomeTally:
    """Adds up fresh outcomes of one batch, refusing what the batch cannot absorb.

    Fresh (never applied) outcomes are refused once the batch is settled, and beyond its item count.
    """
    tally = OutcomeTally()
    for outcome in fresh:
        if hold.is_settled:
            raise AlreadySettled(hold.batch_id)
        tally = tally.plus(outcome.kind, hold.unit_price(outcome.model, outcome.unit_price))
    if hold.outcomes_applied + tally.outcomes > hold.item_count:
        raise TooManyOutcomes(hold.batch_id, hold.item_count)
    return tally


@dataclass(frozen=True)
class Settlement:
    """What settling a hold does: release `remainder` and end in `status`."""

    remainder: int
    status: SettlementStatus


def settle(hold: BatchHold, hold_balance: int) -> Settlement:
    """Settles a batch whose every task outcome is applied.

    The remainder is whatever the hold account still holds; it must agree with the counters (I1).
    Status is `refunded` when anything went back to the tenant (refunds or the remainder).
    """
    if hold.outcomes_applied < hold.item_count:
        raise OutcomesMissing(hold.batch_id, hold.outcomes_applied, hold.item_count)
    if hold_balance != hold.held:
        raise LedgerInvariantViolated(
            f"hold of batch {hold.batch_id} holds {hold_balance} but its counters say {hold.held}"
        )
    return Settlement(remainder=hold_balance, status=settlement_status(hold.refunded, hold_balance))


def release_transfer(hold: BatchHold, remainder: int, *, available_account_id: int) -> Transfer:
    """The transfer that returns the remainder of a settled hold to the tenant."""
    return Transfer(
        key=settle_key(hold.batch_id),
        ref_type=RefType.BATCH_SETTLE,
        ref_id=str(hold.batch_id),
        tenant_id=hold.tenant_id,
        batch_id=hold.batch_id,
        debit_account_id=hold.hold_account_id,
        credit_account_id=available_account_id,
        amount=remainder,
    )


def settlement_status(refunded: int, released: int) -> SettlementStatus:
    """`refunded` if any credits went back to the tenant, else `settled`."""
    return SettlementStatus.REFUNDED if refunded + released > 0 else SettlementStatus.SETTLED
