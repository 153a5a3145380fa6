"""Property: any sequence of top-ups, reserves, task outcomes and settlements, with duplicates and
in any order, keeps the ledger invariants when applied through the domain rules.

`InMemoryBook` plays the repository's part with dicts: it does exactly what the handlers do
(post a transfer only when its key is new, refuse what the rules refuse, nothing half-written).
"""

from __future__ import annotations

import random
import uuid
from contextlib import suppress
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from libs.errors import ServiceError
from services.billing.domain.ids import BatchId, TaskId, TenantId
from services.billing.domain.ledger import (
    LedgerEntry,
    OutcomeKind,
    RefType,
    TaskOutcome,
    Transfer,
    post_transfers,
    topup_key,
    tracked_accounts,
    upfront_key,
)
from services.billing.domain.pricing import ModelPrice, QuoteLine, ensure_affordable, quote
from services.billing.domain.settlement import (
    BatchHold,
    outcome_transfer,
    release_transfer,
    settle,
    tally_outcomes,
)

TENANT = TenantId(uuid.UUID(int=1))
REVENUE, GRANTS, AVAILABLE = 1, 2, 3
PRICES = {"sora-2": ModelPrice("sora-2", "simulated", 10), "veo-3": ModelPrice("veo-3", "simulated", 20)}


class InMemoryBook:
    """The billing money flows over dicts, driven by the domain rules."""

    def __init__(self) -> None:
        self.balances: dict[int, int] = {AVAILABLE: 0}
        self.transfers: dict[str, Transfer] = {}
        self.entries: list[LedgerEntry] = []
        self.holds: dict[BatchId, BatchHold] = {}
        self.topped_up = 0

    def _post(self, transfer: Transfer) -> bool:
        if transfer.key in self.transfers:
            return False
        opening = {a: self.balances[a] for a in tracked_accounts([transfer], [REVENUE, GRANTS])}
        posting = post_transfers([(len(self.transfers) + 1, transfer)], opening)
        self.transfers[transfer.key] = transfer
        self.entries.extend(posting.entries)
        self.balances.update(posting.balances)
        return True

    def top_up(self, reference: str, credits: int) -> None:
        transfer = Transfer(
            topup_key(TENANT, reference), RefType.TOPUP, reference, TENANT, None, GRANTS, AVAILABLE, credits
        )
        if self._post(transfer):
            self.topped_up += credits

    def reserve(self, batch_id: BatchId, model: str, count: int) -> None:
        if batch_id in self.holds:
            return
        priced = quote([QuoteLine(model, count)], PRICES)
        ensure_affordable(priced.total, self.balances[AVAILABLE])
        hold_account = 100 + len(self.holds)
        self.balances[hold_account] = 0
        self._post(
            Transfer(
                upfront_key(batch_id), RefType.BATCH_UPFRONT, str(batch_id), TENANT, batch_id,
                AVAILABLE, hold_account, priced.total,
            )
        )  # fmt: skip
        self.holds[batch_id] = BatchHold(
            batch_id=batch_id,
            tenant_id=TENANT,
            hold_account_id=hold_account,
            item_count=count,
            frozen=priced.total,
            available_before=self.balances[AVAILABLE] + priced.total,
            available_after=self.balances[AVAILABLE],
            unit_prices={model: priced.lines[0].unit_price},
        )

    def apply(self, outcome: TaskOutcome) -> None:
        hold = self.holds.get(outcome.batch_id)
        if hold is None or outcome.key in self.transfers:
            return
        tally = tally_outcomes(hold, [outcome])
        model = next(iter(hold.unit_prices))
        transfer = outcome_transfer(
            replace(outcome, model=model), hold, revenue_account_id=REVENUE, available_account_id=AVAILABLE
        )
        self._post(transfer)
        self.holds[hold.batch_id] = replace(
            hold,
            captured=hold.captured + tally.captured,
            refunded=hold.refunded + tally.refunded,
            outcomes_applied=hold.outcomes_applied + tally.outcomes,
        )

    def settle(self, batch_id: BatchId) -> None:
        hold = self.holds.get(batch_id)
        if hold is None or hold.is_settled:
            return
        settlement = settle(hold, self.balances[hold.hold_account_id])
        if settlement.remainder:
            self._post(release_transfer(hold, settlement.remainder, available_account_id=AVAILABLE))
        self.holds[batch_id] = replace(
            hold, released=settlement.remainder, settlement_status=settlement.status
        )

    def assert_invariants(self) -> None:
        assert sum(entry.amount for entry in self.entries) == 0, "entries sum to zero"
        assert len(self.entries) == 2 * len(self.transfers), "each key posted once, as two entries"
        assert all(balance >= 0 for balance in self.balances.values()), "no tenant account is negative"
        for account, balance in self.balances.items():
            assert balance == sum(e.amount for e in self.entries if e.account_id == account)
        revenue = sum(e.amount for e in self.entries if e.account_id == REVENUE)
        assert self.topped_up == self.balances[AVAILABLE] + revenue + sum(
            self.balances[h.hold_account_id] for h in self.holds.values()
        ), "credits are conserved"
        for hold in self.holds.values():
            assert (
                hold.frozen
                == hold.captured + hold.refunded + hold.released + self.balances[hold.hold_account_id]
            )
            assert hold.held == self.balances[hold.hold_account_id]
            if hold.is_settled:
                assert hold.held == 0
                assert hold.captured == sum(
                    t.amount for t in self.transfers.values()
                    if t.batch_id == hold.batch_id and t.ref_type is RefType.BATCH_CAPTURE
                )  # fmt: skip


BATCHES = [BatchId(uuid.UUID(int=1000 + n)) for n in range(3)]

operations = st.one_of(
    st.tuples(st.just("top_up"), st.integers(0, 2), st.integers(1, 80)),
    st.tuples(st.just("reserve"), st.integers(0, 2), st.sampled_from(sorted(PRICES)), st.integers(1, 4)),
    st.tuples(st.just("outcome"), st.integers(0, 2), st.integers(0, 4), st.sampled_from(list(OutcomeKind))),
    st.tuples(st.just("settle"), st.integers(0, 2)),
)


def run(book: InMemoryBook, op: tuple[object, ...]) -> None:
    match op:
        case ("top_up", int(ref), int(credits)):
            book.top_up(f"ref-{ref}", credits)
        case ("reserve", int(batch), str(model), int(count)):
            book.reserve(BATCHES[batch], model, count)
        case ("outcome", int(batch), int(task), OutcomeKind() as kind):
            book.apply(TaskOutcome(BATCHES[batch], TaskId(f"{batch}-{task}"), "", kind))
        case ("settle", int(batch)):
            book.settle(BATCHES[batch])


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=60))
def test_any_sequence_of_money_flows_keeps_the_ledger_invariants(ops: list[tuple[object, ...]]) -> None:
    book = InMemoryBook()
    for op in ops:
        # Refusals (insufficient credits, outcomes missing, already settled...) must change nothing.
        with suppress(ServiceError):
            run(book, op)
        book.assert_invariants()


@settings(max_examples=100, deadline=None)
@given(st.lists(operations, max_size=40), st.randoms(use_true_random=False))
def test_replaying_every_operation_again_in_another_order_changes_nothing_already_keyed(
    ops: list[tuple[object, ...]], shuffler: random.Random
) -> None:
    book = InMemoryBook()
    for op in ops:
        with suppress(ServiceError):
            run(book, op)
    keys_before = dict(book.transfers)
    replayed = list(ops)
    shuffler.shuffle(replayed)
    for op in replayed:
        with suppress(ServiceError):
            run(book, op)
        book.assert_invariants()
    assert all(book.transfers[key] == transfer for key, transfer in keys_before.items())
