"""Stateful property: any interleaving of top-ups, reservations, task outcomes and settlements,
replays included, run through the real billing handlers on PostgreSQL, keeps every balance equal
to a plain model of the money, and the ledger invariants after every step.

Hypothesis drives a rule-based state machine: each rule calls the handlers and updates the model
the way the product promises (a reference tops up once, a reservation freezes price x items or is
refused and writes nothing, the first outcome of a task counts and a refund returns its price at
once, a batch settles only when every task has its outcome, a batch over the tenant's monthly
budget is refused and writes nothing, a stored quote freezes its own price once; payments that go
back take their credits from available first and record the rest as debt, which refuses batches
until a payment pays it; a freeze crossing the auto top-up line buys one pack, credited by its
webhook; `stateful_payments.py`). After every step the balances, debts, holds and budget use are
read back and compared, and I1-I3, I7, I8, I10 and I11 are checked from the tables. The example-based flows
in test_billing_ledger_flows.py pin single behaviours; this explores their orders.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text

from libs.db import Database
from libs.price_list import DEFAULT_PRICING
from services.billing.adapters.repository import BillingRepository
from services.billing.adapters.stripe_webhooks import StripeWebhookVerifier
from services.billing.bootstrap import price_list
from services.billing.domain.budgets import BudgetExceeded
from services.billing.domain.errors import InsufficientCredits, OutcomesMissing
from services.billing.domain.ids import BatchId, TaskId, TenantId
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.quotes import QuoteUsed, StoredQuote
from services.billing.domain.reversals import DebtOutstanding
from services.billing.domain.settlement import SettlementStatus
from services.billing.use_cases.handlers import BillingHandlers

from .billing_testkit import assert_ledger_invariants, funded_tenant, new_batch_id
from .stateful_payments import MINI, SECRET, PaymentRules, StubCharges

T = TypeVar("T")

# Per-video models of the default price list, with their price in credits.
PRICES = {model: DEFAULT_PRICING[model].credits_per_video for model in ("sora-2", "veo-3")}
REFERENCES = ("pay-1", "pay-2", "pay-3")  # few, so that replays are frequent
TENANTS = 2
# What the providers billed for a task, as its outcome reported it; None: no report (ADR-144).
SPEND = st.none() | st.integers(0, 50_000)

# Small chunks: a list of outcomes spans several transactions.
CHUNK_SIZE = 3


@dataclass
class ModelTask:
    task_id: TaskId
    model: str
    outcome: OutcomeKind | None = None

    @property
    def price(self) -> int:
        return PRICES[self.model]


@dataclass
class ModelBatch:
    tenant: TenantId
    lines: list[QuoteLine]
    tasks: list[ModelTask]
    settled: bool = False
    frozen: int = field(init=False)

    def __post_init__(self) -> None:
        self.frozen = sum(task.price for task in self.tasks)

    def total(self, kind: OutcomeKind) -> int:
        return sum(task.price for task in self.tasks if task.outcome is kind)

    @property
    def settlement_status(self) -> SettlementStatus:
        """Once settled: `refunded` when any credits went back to the wallet, else `settled`."""
        return SettlementStatus.REFUNDED if self.total(OutcomeKind.REFUND) else SettlementStatus.SETTLED

    @property
    def held(self) -> int:
        """What the hold account still holds: frozen minus every applied outcome."""
        return self.frozen - self.total(OutcomeKind.CAPTURE) - self.total(OutcomeKind.REFUND)

    @property
    def spent(self) -> int:
        """What the batch counts against its month's budget: refunds and the settlement's release
        give budget back, so captured plus what is still held."""
        return self.total(OutcomeKind.CAPTURE) + (0 if self.settled else self.held)


class BillingMoney(PaymentRules, RuleBasedStateMachine):
    """The billing handlers on a real database, next to a model of what the money must be."""

    database_url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        # The handlers' pools and group commits live on one loop for the whole example.
        self.loop = asyncio.new_event_loop()
        self.database = Database(self.database_url, pool_size=4)
        self.stub = StubCharges()
        self.handlers = BillingHandlers(
            BillingRepository(self.database),
            price_list(dict(DEFAULT_PRICING)),
            outcome_source=None,
            chunk_size=CHUNK_SIZE,
            packs={MINI.pack_id: MINI},
            stripe_verifier=StripeWebhookVerifier(SECRET, tolerance_seconds=300),
            stripe_payments=self.stub,
        )
        self.tenants = [self.run(funded_tenant(self.handlers, 0)) for _ in range(TENANTS)]
        self.available = dict.fromkeys(self.tenants, 0)
        self.references: set[tuple[TenantId, str]] = set()
        self.batches: dict[BatchId, ModelBatch] = {}
        # Each tenant's monthly cap (None: no budget) and its stored quotes, used or not.
        self.caps: dict[TenantId, int | None] = dict.fromkeys(self.tenants)
        self.quotes: list[tuple[StoredQuote, BatchId | None]] = []
        self.init_payments()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def teardown(self) -> None:
        self.settle_the_purchases()
        self.run(self.database.close())
        self.loop.close()

    # In the order the batches were reserved: their ids are random, and Hypothesis replays a
    # failing example by the positions it drew.
    def _open_batches(self) -> list[BatchId]:
        return [batch_id for batch_id, batch in self.batches.items() if not batch.settled]

    def _settled_batches(self) -> list[BatchId]:
        return [batch_id for batch_id, batch in self.batches.items() if batch.settled]

    # ------------------------------------------------------------------------------------- rules

    @rule(
        tenant=st.integers(0, TENANTS - 1), credits=st.integers(1, 120), reference=st.sampled_from(REFERENCES)
    )
    def top_up(self, tenant: int, credits: int, reference: str) -> None:
        tenant_id = self.tenants[tenant]
        result = self.run(self.handlers.top_up(tenant_id, credits, reference))
        replay = (tenant_id, reference) in self.references
        assert result.replayed is replay
        if not replay:
            self.references.add((tenant_id, reference))
            self.available[tenant_id] += credits
        assert result.balance == self.available[tenant_id]

    @rule(
        tenant=st.integers(0, TENANTS - 1),
        lines=st.lists(
            st.tuples(st.sampled_from(sorted(PRICES)), st.integers(1, 4)),
            min_size=1,
            max_size=2,
            unique_by=lambda line: line[0],
        ),
    )
    def reserve_a_new_batch(self, tenant: int, lines: list[tuple[str, int]]) -> None:
        tenant_id = self.tenants[tenant]
        self._reserve(tenant_id, [QuoteLine(model, count) for model, count in lines])

    def _used(self, tenant_id: TenantId) -> int:
        return sum(batch.spent for batch in self.batches.values() if batch.tenant == tenant_id)

    def _reserve(self, tenant_id: TenantId, quote: list[QuoteLine], cited: StoredQuote | None = None) -> None:
        """Reserves a new batch of `quote` (citing `cited`) and checks the answer against the model:
        refused for credits first, then for the budget, else frozen at the model's price."""
        batch_id = new_batch_id()
        tasks = [
            ModelTask(TaskId(f"{batch_id}-{line.model}-{n}"), line.model)
            for line in quote
            for n in range(line.count)
        ]
        batch = ModelBatch(tenant_id, quote, tasks)
        cap = self.caps[tenant_id]
        reserve = self.handlers.reserve
        terms: dict[str, Any] = (
            {"quote_id": cited.quote_id, "fingerprint": cited.fingerprint} if cited else {}
        )
        if self.debt_outstanding(tenant_id):
            with pytest.raises(DebtOutstanding):
                self.run(reserve(tenant_id, batch_id, quote, **terms))
            return
        if batch.frozen > self.available[tenant_id]:
            with pytest.raises(InsufficientCredits):
                self.run(reserve(tenant_id, batch_id, quote, **terms))
            return
        if cap is not None and self._used(tenant_id) + batch.frozen > cap:
            with pytest.raises(BudgetExceeded):
                self.run(reserve(tenant_id, batch_id, quote, **terms))
            return
        reservation = self.run(reserve(tenant_id, batch_id, quote, **terms))
        if cited is not None:
            self.quotes = [(q, batch_id if q is cited else used) for q, used in self.quotes]
        assert (reservation.frozen_credits, reservation.replayed) == (batch.frozen, False)
        assert reservation.available_before == self.available[tenant_id]
        self.available[tenant_id] -= batch.frozen
        assert reservation.available_after == self.available[tenant_id]
        self.batches[batch_id] = batch
        self.after_freeze(tenant_id, reservation.available_before, reservation.available_after)

    @rule(tenant=st.integers(0, TENANTS - 1), room=st.none() | st.integers(0, 150))
    def set_the_monthly_budget(self, tenant: int, room: int | None) -> None:
        """A cap this month's use fits under (`room` above it), or none: a cap lowered below the use
        already made would be a breach of I7 that no freeze caused."""
        tenant_id = self.tenants[tenant]
        cap = None if room is None else self._used(tenant_id) + room
        status = self.run(self.handlers.set_budget(tenant_id, "tenant", "", cap))
        self.caps[tenant_id] = cap
        assert (status.monthly_credits, status.used_credits) == (cap, self._used(tenant_id))

    @rule(tenant=st.integers(0, TENANTS - 1), model=st.sampled_from(sorted(PRICES)), count=st.integers(1, 4))
    def quote_a_batch(self, tenant: int, model: str, count: int) -> None:
        stored = self.run(self.handlers.create_quote(self.tenants[tenant], [QuoteLine(model, count)], "body"))
        assert stored.total == PRICES[model] * count
        self.quotes.append((stored, None))

    @precondition(lambda self: self.quotes)
    @rule(data=st.data())
    def reserve_a_quoted_batch(self, data: st.DataObject) -> None:
        """A quote is honoured at its price once; cited again it is refused, nothing frozen."""
        stored, used_by = data.draw(st.sampled_from(self.quotes))
        if used_by is not None:
            with pytest.raises(QuoteUsed):
                self.run(
                    self.handlers.reserve(
                        stored.tenant_id,
                        new_batch_id(),
                        list(stored.lines),
                        quote_id=stored.quote_id,
                        fingerprint="body",
                    )
                )
            return
        self._reserve(stored.tenant_id, list(stored.lines), stored)

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def replay_a_reservation(self, data: st.DataObject) -> None:
        batch_id = data.draw(st.sampled_from(list(self.batches)))
        batch = self.batches[batch_id]
        reservation = self.run(self.handlers.reserve(batch.tenant, batch_id, batch.lines))
        assert (reservation.frozen_credits, reservation.replayed) == (batch.frozen, True)

    @precondition(lambda self: self._open_batches())
    @rule(data=st.data())
    def apply_outcomes(self, data: st.DataObject) -> None:
        """Outcomes of one or two open batches in one call, repeats and second opinions included."""
        chosen = data.draw(
            st.lists(st.sampled_from(self._open_batches()), min_size=1, max_size=2, unique=True)
        )
        candidates = [(batch_id, task) for batch_id in chosen for task in self.batches[batch_id].tasks]
        picks = data.draw(
            st.lists(
                st.tuples(st.sampled_from(candidates), st.sampled_from(list(OutcomeKind)), SPEND),
                min_size=1,
                max_size=8,
            )
        )
        outcomes = [
            TaskOutcome(
                batch_id, task.task_id, task.model, kind, provider_cost_usd_micros=spend, provider_jobs=1
            )
            for (batch_id, task), kind, spend in picks
        ]
        applied = self.run(self.handlers.apply_task_outcomes(outcomes))
        expected: dict[str, int] = {}
        for (batch_id, task), kind, _ in picks:
            key = TaskOutcome(batch_id, task.task_id, task.model, kind).key
            if task.outcome is not None or key in expected:
                continue  # a task's first outcome is its only one
            task.outcome = kind
            expected[key] = task.price
            if kind is OutcomeKind.REFUND:
                self.available[self.batches[batch_id].tenant] += task.price
        assert applied == expected

    @precondition(lambda self: self._open_batches())
    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        batch_id = data.draw(st.sampled_from(self._open_batches()))
        batch = self.batches[batch_id]
        if any(task.outcome is None for task in batch.tasks):
            with pytest.raises(OutcomesMissing):
                self.run(self.handlers.settle(batch_id))
            return
        hold = self.run(self.handlers.settle(batch_id))
        assert hold.settlement_status is batch.settlement_status
        assert (hold.captured, hold.refunded) == (
            batch.total(OutcomeKind.CAPTURE),
            batch.total(OutcomeKind.REFUND),
        )
        batch.settled = True

    @precondition(lambda self: self._settled_batches())
    @rule(data=st.data())
    def replay_after_settlement(self, data: st.DataObject) -> None:
        """A settled batch settles again as it did, and an outcome sent again changes nothing."""
        batch_id = data.draw(st.sampled_from(self._settled_batches()))
        batch = self.batches[batch_id]
        task = data.draw(st.sampled_from(batch.tasks))
        kind = data.draw(st.sampled_from(list(OutcomeKind)))
        # A late event may report the provider spend of an outcome applied without one.
        spend = data.draw(SPEND)
        again = TaskOutcome(
            batch_id, task.task_id, task.model, kind, provider_cost_usd_micros=spend, provider_jobs=1
        )
        assert self.run(self.handlers.apply_task_outcomes([again])) == {}
        hold = self.run(self.handlers.settle(batch_id))
        assert (hold.settlement_status, hold.captured) == (
            batch.settlement_status,
            batch.total(OutcomeKind.CAPTURE),
        )

    # -------------------------------------------------------------------------------- invariants

    @invariant()
    def balances_are_the_models(self) -> None:
        for tenant_id in self.tenants:
            balance = self.run(self.handlers.get_balance(tenant_id))
            held = sum(batch.held for batch in self.batches.values() if batch.tenant == tenant_id)
            assert (balance.available_credits, balance.held_credits) == (self.available[tenant_id], held)
            assert balance.available_credits >= 0
            assert balance.debt_credits == self.debt[tenant_id]

    @invariant()
    def budget_use_is_the_models(self) -> None:
        for tenant_id in self.tenants:
            [status] = self.run(self.handlers.get_budgets(tenant_id, "tenant"))
            assert (status.monthly_credits, status.used_credits) == (
                self.caps[tenant_id],
                self._used(tenant_id),
            )

    @invariant()
    def the_ledger_balances(self) -> None:
        self.run(assert_ledger_invariants(self.database))

    @invariant()
    def the_money_path_changes_nothing_it_wrote(self) -> None:
        # Every movement writes an account's entries before its balance: the triggers of billing
        # 0017 record nothing (ADR-159), so incremental reconciliation re-reads nothing in full.
        self.run(self._assert_no_amendments())

    async def _assert_no_amendments(self) -> None:
        async with self.database.connection() as conn:
            amended = (await conn.execute(text("SELECT count(*) FROM billing.ledger_amendments"))).scalar()
        assert amended == 0

    @rule()
    def reconcile(self) -> None:
        assert self.run(self.handlers.reconcile()).discrepancies == []


def test_any_order_of_money_movements_keeps_the_balances_and_the_ledger(own_database_url: str) -> None:
    BillingMoney.database_url = own_database_url
    run_state_machine_as_test(
        BillingMoney,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
