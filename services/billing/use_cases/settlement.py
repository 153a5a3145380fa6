"""Settlement use cases: task outcomes captured or refunded per task, then each batch's hold released.

Outcomes are applied `chunk_size` per transaction, each still keyed and idempotent; a batch is
settled only once billing has applied an outcome for every one of its tasks (never guessed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from libs.errors import ServiceError
from services.billing import metrics as billing_metrics
from services.billing.adapters.events import batch_settled_event
from services.billing.adapters.repository import LedgerTransaction
from services.billing.domain.errors import (
    HoldNotFound,
    LedgerInvariantViolated,
    OutcomeConflict,
    OutcomesMissing,
    SettlementNotFound,
)
from services.billing.domain.ids import BatchId
from services.billing.domain.ledger import (
    AccountKind,
    TaskOutcome,
    Transfer,
    post_transfers,
    tracked_accounts,
)
from services.billing.domain.settlement import (
    BatchHold,
    OutcomeTally,
    outcome_transfer,
    release_transfer,
    settle,
    tally_outcomes,
)
from services.billing.use_cases.dependencies import Dependencies


@dataclass(frozen=True)
class TaskCharge:
    """What one task's outcome moved (as first applied, when `replayed`)."""

    credits: int
    replayed: bool


async def charge_task(deps: Dependencies, outcome: TaskOutcome) -> TaskCharge:
    """Captures or refunds one task (a chunk of one); a repeat returns the first effect."""
    applied = await apply_task_outcomes(deps, [outcome])
    if outcome.key in applied:
        return TaskCharge(credits=applied[outcome.key], replayed=False)
    async with deps.repository.transaction() as tx:
        existing = await tx.ledger.find_transfer(outcome.key)
    if existing is None:
        raise LedgerInvariantViolated(f"task outcome {outcome.key} neither applied nor stored")
    if existing.ref_type is not outcome.kind.ref_type:
        raise OutcomeConflict(outcome.task_id, existing.ref_type.value)
    return TaskCharge(credits=existing.amount, replayed=True)


async def apply_task_outcomes(deps: Dependencies, outcomes: Sequence[TaskOutcome]) -> dict[str, int]:
    """Applies task outcomes, `chunk_size` per transaction; returns {key: credits} of fresh ones.

    Outcomes already applied (earlier, or repeated within `outcomes`) are skipped by their key.
    """
    first_by_key: dict[str, TaskOutcome] = {}
    for outcome in outcomes:
        first_by_key.setdefault(outcome.key, outcome)
    unique = list(first_by_key.values())
    applied: dict[str, int] = {}
    for start in range(0, len(unique), deps.chunk_size):
        applied |= await _apply_chunk(deps, unique[start : start + deps.chunk_size])
    return applied


async def _apply_chunk(deps: Dependencies, outcomes: Sequence[TaskOutcome]) -> dict[str, int]:
    """One transaction: the chunk's holds locked, its fresh transfers posted, the holds' counters added."""
    async with deps.repository.transaction() as tx:
        holds = await tx.ledger.lock_holds(outcome.batch_id for outcome in outcomes)
        for outcome in outcomes:
            if outcome.batch_id not in holds:
                raise HoldNotFound(outcome.batch_id)
        revenue = await tx.accounts.system_account_id(AccountKind.REVENUE)
        available = await tx.ledger.available_account_ids({hold.tenant_id for hold in holds.values()})
        transfers = [
            outcome_transfer(
                outcome,
                holds[outcome.batch_id],
                revenue_account_id=revenue,
                available_account_id=available[holds[outcome.batch_id].tenant_id],
            )
            for outcome in outcomes
        ]
        inserted = await tx.ledger.insert_transfers(transfers)
        # Every outcome's reported provider spend, fresh or not: an outcome applied first from
        # the batch service's task list (no spend in it) gets its spend from the late event.
        await tx.provider_spend.record(outcomes)
        if not inserted:
            return {}
        fresh_by_batch: dict[BatchId, list[TaskOutcome]] = defaultdict(list)
        for outcome in outcomes:
            if outcome.key in inserted:
                fresh_by_batch[outcome.batch_id].append(outcome)
        tallies: dict[BatchId, OutcomeTally] = {
            batch_id: tally_outcomes(holds[batch_id], fresh) for batch_id, fresh in fresh_by_batch.items()
        }
        fresh_transfers = [(inserted[t.key], t) for t in transfers if t.key in inserted]
        await _post(tx, fresh_transfers, revenue)
        await tx.ledger.add_outcome_tallies(tallies)
    billing_metrics.record_transfers(transfer for _, transfer in fresh_transfers)
    return {transfer.key: transfer.amount for _, transfer in fresh_transfers}


async def _post(tx: LedgerTransaction, transfers: list[tuple[int, Transfer]], revenue: int) -> None:
    """Locks the tenant accounts the transfers touch (ascending id) and posts the transfers."""
    grants = await tx.accounts.system_account_id(AccountKind.GRANTS)
    balances = await tx.ledger.lock_balances(tracked_accounts((t for _, t in transfers), [revenue, grants]))
    await tx.ledger.write_posting(post_transfers(transfers, balances))


async def settle_batch(deps: Dependencies, batch_id: BatchId) -> BatchHold:
    """Releases the remainder of a batch hold once every task outcome is applied.

    Missing outcomes (`batch.finished` overtook them) are pulled from the batch service and
    applied (keyed as usual), then the settlement is tried once more; if some tasks are still
    not terminal it is refused (OutcomesMissing), never guessed.
    """
    outcome = (await settle_batches(deps, [batch_id]))[0]
    if isinstance(outcome, ServiceError):
        raise outcome
    return outcome


async def settle_batches(deps: Dependencies, batch_ids: Sequence[BatchId]) -> list[BatchHold | ServiceError]:
    """`settle_batch` of several batches: those whose outcomes are all applied in one transaction,
    each refused on its own (HoldNotFound, OutcomesMissing...). Answers in the order asked."""
    ordered = list(dict.fromkeys(batch_ids))
    outcomes = await _settle_applied(deps, ordered)
    if deps.outcome_source is not None:
        for batch_id in ordered:
            if isinstance(outcomes[batch_id], OutcomesMissing):
                await apply_task_outcomes(deps, await deps.outcome_source.terminal_outcomes(batch_id))
                outcomes |= await _settle_applied(deps, [batch_id])
    return [outcomes[batch_id] for batch_id in batch_ids]


async def _settle_applied(
    deps: Dependencies, batch_ids: Sequence[BatchId]
) -> dict[BatchId, BatchHold | ServiceError]:
    """Settles those of `batch_ids` whose outcomes are all applied; the others get their refusal."""
    # One transaction for all of them, the holds locked first: the usual case (every outcome
    # applied) needs no read beforehand, and a refusal writes nothing for its batch.
    outcomes: dict[BatchId, BatchHold | ServiceError] = {}
    async with deps.repository.transaction() as tx:
        holds = await tx.ledger.lock_holds(batch_ids)
        ready: list[BatchHold] = []
        for batch_id in batch_ids:
            hold = holds.get(batch_id)
            if hold is None:
                outcomes[batch_id] = HoldNotFound(batch_id)
            elif hold.is_settled:
                outcomes[batch_id] = hold
            elif hold.outcomes_applied < hold.item_count:
                outcomes[batch_id] = OutcomesMissing(batch_id, hold.outcomes_applied, hold.item_count)
            else:
                ready.append(hold)
        if not ready:
            return outcomes
        available_ids = await tx.ledger.available_account_ids({hold.tenant_id for hold in ready})
        balances = await tx.ledger.lock_balances(
            [hold.hold_account_id for hold in ready] + list(available_ids.values())
        )
        transfers: list[Transfer] = []
        settled: list[BatchHold] = []
        for hold in ready:
            try:
                settlement = settle(hold, balances[hold.hold_account_id])
            except ServiceError as refused:
                outcomes[hold.batch_id] = refused
                continue
            if settlement.remainder > 0:
                transfers.append(
                    release_transfer(
                        hold, settlement.remainder, available_account_id=available_ids[hold.tenant_id]
                    )
                )
            settled.append(
                replace(
                    hold,
                    released=settlement.remainder,
                    settlement_status=settlement.status,
                    settled_at=deps.clock(),
                )
            )
        if transfers:
            inserted = await tx.ledger.insert_transfers(transfers)
            if len(inserted) != len(transfers):
                raise LedgerInvariantViolated("a batch was released but is not settled")
            await tx.ledger.write_posting(
                post_transfers([(inserted[transfer.key], transfer) for transfer in transfers], balances)
            )
        await tx.ledger.record_settlements(settled)
        await tx.add_events([batch_settled_event(hold) for hold in settled])
    billing_metrics.record_transfers(transfers)
    outcomes |= {hold.batch_id: hold for hold in settled}
    return outcomes


async def get_batch_settlement(deps: Dependencies, batch_id: BatchId) -> BatchHold:
    """A batch's hold with its counters and settlement; SettlementNotFound when never reserved."""
    async with deps.repository.transaction() as tx:
        hold = await tx.ledger.find_hold(batch_id)
    if hold is None:
        raise SettlementNotFound(batch_id)
    return hold
