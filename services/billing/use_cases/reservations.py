"""Reservation use cases: the price list, quotes, and freezing a batch's price in its hold.

Reservations are group-committed: those that arrive while one reservation transaction runs share
the next (`Reservations`, which owns the group committer), each still refused or replayed on its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from libs.errors import ServiceError
from libs.group_commit import GroupCommitter
from libs.messaging.contract import Envelope
from services.billing import metrics as billing_metrics
from services.billing.adapters.events import spend_alert_event
from services.billing.adapters.sql.accounts import AccountBalance
from services.billing.adapters.sql.reservations import PlannedPurchase, PlannedReservation, TenantState
from services.billing.domain.alerts import AlertThresholds, crossings
from services.billing.domain.auto_top_up import crossing_key, crossing_step, should_buy
from services.billing.domain.budgets import (
    UNATTRIBUTED,
    Attribution,
    BudgetKey,
    BudgetLedger,
    Period,
    period_of,
)
from services.billing.domain.errors import (
    BatchReservedByAnotherTenant,
    LedgerInvariantViolated,
    TenantNotFound,
)
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import RefType, Transfer, post_transfers, upfront_key
from services.billing.domain.pricing import (
    ModelPrice,
    Quote,
    QuoteLine,
    ensure_affordable,
    ensure_quote_is_current,
    quote,
)
from services.billing.domain.quotes import StoredQuote, redeem
from services.billing.domain.reversals import DebtOutstanding
from services.billing.domain.settlement import BatchHold
from services.billing.use_cases.dependencies import Dependencies
from services.billing.use_cases.tenants import available_account

# At most this many reservations share one transaction: bounds its arrays and the time the
# wallets stay locked.
DEFAULT_RESERVATION_GROUP_SIZE = 64


@dataclass(frozen=True)
class PricedQuote:
    """A quote, with the tenant's available credits when a tenant was given (else 0)."""

    quote: Quote
    available_credits: int


@dataclass(frozen=True)
class Reservation:
    """The freeze of a batch as first recorded (replays return it unchanged)."""

    frozen_credits: int
    available_before: int
    available_after: int
    replayed: bool


@dataclass(frozen=True)
class ReservationRequest:
    """One Reserve call waiting for its group (see `Reservations.reserve`)."""

    tenant_id: TenantId
    batch_id: BatchId
    lines: tuple[QuoteLine, ...]
    # Whose budgets the freeze counts against (the tenant's always).
    attribution: Attribution = UNATTRIBUTED
    # A stored quote the create cited (ADR-123), with the create body's fingerprint.
    quote_id: uuid.UUID | None = None
    fingerprint: str = ""


def price_list(deps: Dependencies) -> list[ModelPrice]:
    """Every model's price, by model name."""
    return [deps.prices[model] for model in sorted(deps.prices)]


async def quote_lines(
    deps: Dependencies, tenant_id: TenantId | None, lines: Sequence[QuoteLine]
) -> PricedQuote:
    """Prices lines without moving money; the tenant's balance is included when given."""
    priced = quote(lines, deps.prices)
    available_credits = 0
    if tenant_id is not None:
        # One autocommit read, no transaction: a quote is on every create's path.
        available = await deps.repository.available_balance(tenant_id)
        if available is None:
            raise TenantNotFound(tenant_id)
        available_credits = available
    return PricedQuote(quote=priced, available_credits=available_credits)


class Reservations:
    """Reserves batches through one group committer (its state is why this is a class)."""

    def __init__(self, deps: Dependencies, *, group_size: int = DEFAULT_RESERVATION_GROUP_SIZE) -> None:
        self._deps = deps
        self._committer: GroupCommitter[ReservationRequest, Reservation] = GroupCommitter(
            self._reserve_group, max_group_size=group_size, name="billing-reservations"
        )

    async def reserve(
        self,
        tenant_id: TenantId,
        batch_id: BatchId,
        lines: Sequence[QuoteLine],
        attribution: Attribution = UNATTRIBUTED,
        *,
        quote_id: uuid.UUID | None = None,
        fingerprint: str = "",
    ) -> Reservation:
        """Freezes price x items of a batch in its own hold account, once per batch.

        A replay is answered from the stored hold before re-pricing, so a price change after the
        first reservation never fails the batch service's recovery of that batch.

        Reservations are group-committed (`_reserve_group`): those that arrive while one
        reservation transaction runs share the next, each still refused or replayed on its own.
        """
        return await self._committer.submit(
            ReservationRequest(tenant_id, batch_id, tuple(lines), attribution, quote_id, fingerprint)
        )

    async def reserve_many(self, requests: Sequence[ReservationRequest]) -> list[Reservation | ServiceError]:
        """`reserve` of several batches, answered in order: each its reservation or its own refusal.

        They join the reservation group together. A failure that is not a refusal (the database
        is down) fails the whole call, as it would fail each Reserve.
        """
        outcomes: list[Reservation | ServiceError] = []
        for outcome in await self._committer.submit_many(requests):
            if isinstance(outcome, BaseException) and not isinstance(outcome, ServiceError):
                raise outcome
            outcomes.append(outcome)
        return outcomes

    async def _reserve_group(
        self, requests: Sequence[ReservationRequest]
    ) -> list[Reservation | BaseException]:
        """One transaction for a group of reservations, in request order (the group commit).

        Three statements on a raw connection whatever the group's size (more only for what a
        tenant has set: an auto top-up, budgets, quotes, or for refusals and alerts): the hold
        accounts of the group's batches are created first (a concurrent Reserve of one of them
        elsewhere waits on its unique index, then replays), then the wallets are locked with what
        the freezes must know of their tenants (debt, thresholds, auto top-up, ADR-165), then each
        request is priced and checked against what the requests before it left in its wallet, so
        each is refused (402) exactly when the remainder cannot cover it, and the accepted ones are
        posted by one statement. A refused request's hold account is deleted again before the commit.
        """
        deps = self._deps
        outcomes: list[Reservation | BaseException | None] = [None] * len(requests)
        first_of_batch: dict[BatchId, int] = {}
        for index, request in enumerate(requests):
            first_of_batch.setdefault(request.batch_id, index)
        planned: list[PlannedReservation] = []
        async with deps.repository.reservation() as tx:
            created = await tx.create_hold_accounts(
                {batch_id: requests[index].tenant_id for batch_id, index in first_of_batch.items()}
            )
            # The month of the freeze: spend counts there, whenever it is refunded (ADR-122).
            now = deps.clock()
            period = period_of(now)
            locked = (
                await tx.lock_wallets(
                    (requests[first_of_batch[batch_id]].tenant_id for batch_id in created), period
                )
                if created
                else {}
            )
            wallets = {tenant_id: wallet.account for tenant_id, wallet in locked.items()}
            states = {tenant_id: wallet.state for tenant_id, wallet in locked.items()}
            balances = {tenant_id: wallet.balance for tenant_id, wallet in wallets.items()}
            thresholds = {
                tenant_id: state.thresholds
                for tenant_id, state in states.items()
                if state.thresholds is not None
            }
            budgets = await tx.budget_ledgers(
                [tenant_id for tenant_id, wallet in locked.items() if wallet.has_budgets], period
            )
            used_before = {tenant_id: dict(ledger.used) for tenant_id, ledger in budgets.items()}
            citing = (requests[first_of_batch[batch_id]] for batch_id in created)
            cited = await tx.lock_quotes([r.quote_id for r in citing if r.quote_id is not None])
            honoured: dict[uuid.UUID, BatchId] = {}
            refused_accounts: list[int] = []
            for batch_id, hold_account_id in sorted(
                created.items(), key=lambda pair: first_of_batch[pair[0]]
            ):
                index = first_of_batch[batch_id]
                request = requests[index]
                wallet = wallets.get(request.tenant_id)
                try:
                    if wallet is None:
                        raise TenantNotFound(request.tenant_id)
                    priced = _price(deps, request, cited, honoured, now)
                    state = states.get(request.tenant_id)
                    if state is not None and state.debt > 0:
                        # A refunded or disputed payment already spent: pay it first (ADR-134).
                        raise DebtOutstanding(state.debt, priced.total)
                    item = _plan_reservation(
                        deps, request, priced, hold_account_id, wallet.id, balances[request.tenant_id], period
                    )
                    ledger = budgets.get(request.tenant_id)
                    if ledger is not None:
                        # Checked against what the group's earlier freezes left, like the balance.
                        ledger.admit(request.attribution, item.hold.frozen)
                except ServiceError as refused:
                    outcomes[index] = refused
                    refused_accounts.append(hold_account_id)
                    continue
                balances[request.tenant_id] = item.hold.available_after
                planned.append(item)
                if request.quote_id is not None:
                    honoured[request.quote_id] = request.batch_id
            await tx.delete_accounts(refused_accounts)
            alerts = _alerts(thresholds, wallets, balances, budgets, used_before, now)
            await tx.add_events([event for _, event in alerts])
            purchases = _top_up_purchases(deps, states, wallets, planned, period)
            await tx.add_purchases(purchases)
            if await tx.use_quotes(honoured, now) != len(honoured):
                raise LedgerInvariantViolated("a quote was honoured twice")
            opening = {wallet.id: wallet.balance for wallet in wallets.values()}
            opening |= {item.hold.hold_account_id: 0 for item in planned}
            posting = post_transfers(enumerate(item.transfer for item in planned), opening)
            if await tx.post_reservations(planned, posting) != len(planned):
                raise LedgerInvariantViolated("a batch was frozen without a batch hold")
        billing_metrics.record_transfers([item.transfer for item in planned])
        billing_metrics.record_alerts(alert_type for alert_type, _ in alerts)
        billing_metrics.record_auto_top_ups("requested", len(purchases))
        for item in planned:
            outcomes[first_of_batch[item.hold.batch_id]] = Reservation(
                frozen_credits=item.hold.frozen,
                available_before=item.hold.available_before,
                available_after=item.hold.available_after,
                replayed=False,
            )
        # The rest are replays: the batch's hold account existed (so did its hold: both are written
        # by one transaction, which has committed, since the insert above waited for it), or it was
        # asked twice in this group, or there is no such tenant.
        for index, request in enumerate(requests):
            if outcomes[index] is None:
                try:
                    outcomes[index] = await _replay_reservation(deps, request.tenant_id, request.batch_id)
                except ServiceError as refused:
                    outcomes[index] = refused
        assert all(outcome is not None for outcome in outcomes), "every request has its outcome"
        return [outcome for outcome in outcomes if outcome is not None]


def _alerts(
    thresholds: Mapping[TenantId, AlertThresholds],
    wallets: Mapping[TenantId, AccountBalance],
    balances: Mapping[TenantId, int],
    budgets: Mapping[TenantId, BudgetLedger],
    used_before: Mapping[TenantId, Mapping[BudgetKey, int]],
    now: datetime,
) -> list[tuple[str, Envelope]]:
    """The `billing.alert` events (with their types) of the thresholds this group's freezes crossed (ADR-125).

    The group is one transaction under the wallets' locks: comparing each tenant's balance and
    budget use before the group with after it sees every crossing once, whatever runs concurrently.
    """
    events: list[tuple[str, Envelope]] = []
    for tenant_id, tenant_thresholds in thresholds.items():
        ledger = budgets.get(tenant_id)
        for crossing in crossings(
            tenant_thresholds,
            wallets[tenant_id].balance,
            balances[tenant_id],
            ledger.caps if ledger is not None else {},
            used_before.get(tenant_id, {}),
            ledger.used if ledger is not None else {},
        ):
            event = spend_alert_event(str(uuid.uuid4()), tenant_id, crossing, period_of(now), now)
            events.append((crossing.kind.value, event))
    return events


def _top_up_purchases(
    deps: Dependencies,
    states: Mapping[TenantId, TenantState],
    wallets: Mapping[TenantId, AccountBalance],
    planned: Sequence[PlannedReservation],
    period: Period,
) -> list[PlannedPurchase]:
    """The auto top-up purchases this group's freezes ask for (ADR-135): one per tenant whose
    available credits the group took from at or above its threshold to below it, keyed by the freeze
    that crossed, while the month's purchases are under the tenant's limit; no I/O."""
    purchases: list[PlannedPurchase] = []
    for tenant_id, state in states.items():
        trigger = state.top_up
        pack = deps.packs.get(trigger.pack_id) if trigger is not None else None
        if trigger is None or pack is None:
            continue
        steps = [
            (item.transfer.key, -item.hold.frozen) for item in planned if item.hold.tenant_id == tenant_id
        ]
        crossed = crossing_step(trigger.threshold_credits, wallets[tenant_id].balance, steps)
        if crossed is not None and should_buy(trigger, crossed=True):
            purchases.append(
                PlannedPurchase(uuid.uuid4(), tenant_id, crossing_key(tenant_id, crossed), pack, period)
            )
    return purchases


def _price(
    deps: Dependencies,
    request: ReservationRequest,
    cited: Mapping[uuid.UUID, StoredQuote],
    honoured: Mapping[uuid.UUID, BatchId],
    now: datetime,
) -> Quote:
    """The price a reservation freezes: its quote's (ADR-123) or today's; no I/O.

    A quote is honoured at its own prices, once: a second citation in the same group is refused
    as if the first had committed.
    """
    if request.quote_id is None:
        priced = quote(request.lines, deps.prices)
        ensure_quote_is_current(request.lines, priced)
        return priced
    stored = cited.get(request.quote_id)
    if stored is not None and request.quote_id in honoured:
        stored = replace(stored, batch_id=honoured[request.quote_id])
    return redeem(stored, request.tenant_id, request.batch_id, request.lines, request.fingerprint, now)


def _plan_reservation(
    deps: Dependencies,
    request: ReservationRequest,
    priced: Quote,
    hold_account_id: int,
    wallet_id: int,
    available: int,
    period: Period,
) -> PlannedReservation:
    """A reservation of `priced`, checked against `available` (raises InsufficientCredits); no I/O."""
    ensure_affordable(priced.total, available)
    transfer = Transfer(
        key=upfront_key(request.batch_id),
        ref_type=RefType.BATCH_UPFRONT,
        ref_id=str(request.batch_id),
        tenant_id=request.tenant_id,
        batch_id=request.batch_id,
        debit_account_id=wallet_id,
        credit_account_id=hold_account_id,
        amount=priced.total,
    )
    per_model = priced.per_model()
    hold = BatchHold(
        batch_id=request.batch_id,
        tenant_id=request.tenant_id,
        hold_account_id=hold_account_id,
        item_count=priced.item_count,
        frozen=priced.total,
        available_before=available,
        available_after=available - priced.total,
        unit_prices={model: line.unit_price for (model, _, _), line in per_model.items()},
        line_prices=frozenset((line.model, line.unit_price) for line in per_model.values()),
    )
    return PlannedReservation(
        transfer=transfer,
        hold=hold,
        lines=tuple(per_model.values()),
        # A quoted model may have left the price list since: its cost is then unknown here.
        provider_costs={
            model: deps.prices[model].provider_cost_usd_micros if model in deps.prices else 0
            for model, _, _ in per_model
        },
        attribution=request.attribution,
        period=period,
    )


async def _replay_reservation(deps: Dependencies, tenant_id: TenantId, batch_id: BatchId) -> Reservation:
    """The reservation of a batch as first recorded; refused when another tenant reserved it."""
    async with deps.repository.transaction() as tx:
        await available_account(tx, tenant_id)
        reserved = await tx.ledger.find_hold(batch_id)
    if reserved is None:
        raise LedgerInvariantViolated(f"batch {batch_id} has a hold account but no batch hold")
    if reserved.tenant_id != tenant_id:
        raise BatchReservedByAnotherTenant(reserved.batch_id)
    return Reservation(
        frozen_credits=reserved.frozen,
        available_before=reserved.available_before,
        available_after=reserved.available_after,
        replayed=True,
    )
