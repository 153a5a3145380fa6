"""Billing use cases against a real PostgreSQL: idempotency, concurrency, refunds, settlement."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from libs.db import Database
from libs.errors import InvalidArgument, NotFound, Unauthenticated
from services.billing.domain.errors import (
    AlreadySettled,
    ApiKeyAlreadyExists,
    BatchReservedByAnotherTenant,
    HoldNotFound,
    InsufficientCredits,
    OutcomeConflict,
    OutcomesMissing,
    StaleQuote,
)
from services.billing.domain.ids import BatchId, TaskId
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.settlement import BatchHold, SettlementStatus
from services.billing.use_cases.handlers import BillingHandlers

from .billing_testkit import (
    Clock,
    HandlersFactory,
    RecordedOutcomes,
    assert_ledger_invariants,
    funded_tenant,
    new_batch_id,
)

SORA = "sora-2"


def outcome(batch_id: BatchId, task: str, kind: OutcomeKind, model: str = SORA) -> TaskOutcome:
    return TaskOutcome(batch_id=batch_id, task_id=TaskId(f"{batch_id}-{task}"), model=model, kind=kind)


async def count(database: Database, sql: str, **params: object) -> int:
    async with database.connection() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())


async def test_top_up_is_applied_once_per_reference(handlers: BillingHandlers, database: Database) -> None:
    tenant = await funded_tenant(handlers, 0)

    first = await handlers.top_up(tenant, 500, "payment-1")
    again = await handlers.top_up(tenant, 500, "payment-1")
    other = await handlers.top_up(tenant, 20, "payment-2")

    assert (first.balance, first.replayed) == (500, False)
    assert (again.balance, again.replayed) == (500, True)
    assert (other.balance, other.replayed) == (520, False)
    assert (await handlers.get_balance(tenant)).available_credits == 520
    topups = await count(database, "SELECT count(*) FROM billing.transfers WHERE tenant_id = :t", t=tenant)
    assert topups == 2
    await assert_ledger_invariants(database)


async def test_top_up_refuses_bad_input_and_unknown_tenants(handlers: BillingHandlers) -> None:
    tenant = await funded_tenant(handlers, 0)
    with pytest.raises(InvalidArgument):
        await handlers.top_up(tenant, 0, "ref")
    with pytest.raises(InvalidArgument):
        await handlers.top_up(tenant, 10, "")
    with pytest.raises(NotFound):
        await handlers.top_up(uuid.uuid4(), 10, "ref")  # type: ignore[arg-type]


async def test_reserving_more_than_the_balance_is_refused_and_writes_nothing(
    handlers: BillingHandlers, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 100)
    batch = new_batch_id()

    with pytest.raises(InsufficientCredits) as refused:
        await handlers.reserve(tenant, batch, [QuoteLine(SORA, 11)])

    assert refused.value.reason == "insufficient_credits"
    assert refused.value.details == {"required_credits": "110", "available_credits": "100"}
    assert (await handlers.get_balance(tenant)).available_credits == 100
    assert await count(database, "SELECT count(*) FROM billing.transfers WHERE batch_id = :b", b=batch) == 0
    assert await count(database, "SELECT count(*) FROM billing.batch_holds WHERE batch_id = :b", b=batch) == 0
    assert await count(database, "SELECT count(*) FROM billing.accounts WHERE batch_id = :b", b=batch) == 0


async def test_a_reserve_for_an_unknown_tenant_or_another_tenants_batch_is_refused(
    handlers: BillingHandlers, database: Database
) -> None:
    owner = await funded_tenant(handlers, 1000)
    other = await funded_tenant(handlers, 1000)
    batch = new_batch_id()
    await handlers.reserve(owner, batch, [QuoteLine(SORA, 2)])

    with pytest.raises(NotFound):
        await handlers.reserve(uuid.uuid4(), new_batch_id(), [QuoteLine(SORA, 2)])  # type: ignore[arg-type]
    with pytest.raises(BatchReservedByAnotherTenant):
        await handlers.reserve(other, batch, [QuoteLine(SORA, 2)])

    assert (await handlers.get_balance(other)).available_credits == 1000
    assert await count(database, "SELECT count(*) FROM billing.accounts WHERE batch_id = :b", b=batch) == 1
    await assert_ledger_invariants(database)


async def test_ten_concurrent_reserves_of_one_batch_freeze_the_credits_once(
    handlers: BillingHandlers, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 1000)
    batch = new_batch_id()

    results = await asyncio.gather(
        *(handlers.reserve(tenant, batch, [QuoteLine(SORA, 20)]) for _ in range(10))
    )

    assert sorted(r.replayed for r in results) == [False] + [True] * 9
    assert {(r.frozen_credits, r.available_before, r.available_after) for r in results} == {(200, 1000, 800)}
    upfronts = await count(
        database, "SELECT count(*) FROM billing.transfers WHERE key = :k", k=f"batch_upfront:{batch}"
    )
    assert upfronts == 1
    balance = await handlers.get_balance(tenant)
    assert (balance.available_credits, balance.held_credits) == (800, 200)
    await assert_ledger_invariants(database)


async def test_concurrent_reserves_share_a_transaction_and_only_the_one_the_remainder_cannot_cover_is_refused(
    handlers: BillingHandlers, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 1000)
    batches = [new_batch_id() for _ in range(5)]
    counts = [30, 30, 50, 20, 10]  # 300, 300, 500 (only 400 left: refused), 200, 100 credits

    results = await asyncio.gather(
        *(
            handlers.reserve(tenant, batch, [QuoteLine(SORA, n)])
            for batch, n in zip(batches, counts, strict=True)
        ),
        return_exceptions=True,
    )

    refused = results[2]
    assert isinstance(refused, InsufficientCredits)
    assert refused.details == {"required_credits": "500", "available_credits": "400"}
    accepted = [results[i] for i in (0, 1, 3, 4)]
    assert [(r.frozen_credits, r.available_before, r.available_after, r.replayed) for r in accepted] == [  # type: ignore[union-attr]
        (300, 1000, 700, False),
        (300, 700, 400, False),
        (200, 400, 200, False),
        (100, 200, 100, False),
    ]
    balance = await handlers.get_balance(tenant)
    assert (balance.available_credits, balance.held_credits) == (100, 900)
    refused_batch = batches[2]
    for table in ("accounts", "transfers", "batch_holds"):
        sql = f"SELECT count(*) FROM billing.{table} WHERE batch_id = :b"
        assert await count(database, sql, b=refused_batch) == 0, table
    # The wallet's entries read in id order as the running balance the responses reported.
    async with database.connection() as conn:
        chain = (
            await conn.execute(
                text(
                    "SELECT e.amount, e.balance_after FROM billing.ledger_entries AS e"
                    " JOIN billing.accounts AS a ON a.id = e.account_id"
                    " WHERE a.kind = 'available' AND a.tenant_id = :t AND e.ref_type = 'batch_upfront'"
                    " ORDER BY e.id"
                ),
                {"t": tenant},
            )
        ).all()
    assert [tuple(row) for row in chain] == [(-300, 700), (-300, 400), (-200, 200), (-100, 100)]
    await assert_ledger_invariants(database)


async def test_a_replay_and_refusals_inside_a_group_do_not_disturb_the_other_reservations(
    handlers: BillingHandlers, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 1000)
    other = await funded_tenant(handlers, 50)
    batch, second, stale, poor = (new_batch_id() for _ in range(4))

    results = await asyncio.gather(
        handlers.reserve(tenant, batch, [QuoteLine(SORA, 10)]),
        handlers.reserve(tenant, batch, [QuoteLine(SORA, 10)]),  # the same batch again, same group
        handlers.reserve(uuid.uuid4(), new_batch_id(), [QuoteLine(SORA, 1)]),  # type: ignore[arg-type]
        handlers.reserve(tenant, stale, [QuoteLine(SORA, 1, unit_price=9)]),
        handlers.reserve(other, poor, [QuoteLine(SORA, 6)]),
        handlers.reserve(tenant, second, [QuoteLine(SORA, 5)]),
        return_exceptions=True,
    )

    first, replay, unknown, stale_quote, too_poor, last = results
    assert (first.frozen_credits, first.available_after, first.replayed) == (100, 900, False)  # type: ignore[union-attr]
    assert (replay.frozen_credits, replay.available_after, replay.replayed) == (100, 900, True)  # type: ignore[union-attr]
    assert isinstance(unknown, NotFound)
    assert isinstance(stale_quote, StaleQuote)
    assert isinstance(too_poor, InsufficientCredits)
    assert (last.available_before, last.available_after) == (900, 850)  # type: ignore[union-attr]
    assert (await handlers.get_balance(other)).available_credits == 50
    for refused_batch in (stale, poor):
        assert (
            await count(
                database, "SELECT count(*) FROM billing.accounts WHERE batch_id = :b", b=refused_batch
            )
            == 0
        )
    assert await count(database, "SELECT count(*) FROM billing.transfers WHERE batch_id = :b", b=batch) == 1
    await assert_ledger_invariants(database)


async def test_a_replayed_reserve_returns_the_first_result_even_after_a_price_change(
    handlers: BillingHandlers, make_handlers: HandlersFactory
) -> None:
    tenant = await funded_tenant(handlers, 1000)
    batch = new_batch_id()
    await handlers.reserve(tenant, batch, [QuoteLine(SORA, 3, unit_price=10)])

    replay = await make_handlers().reserve(tenant, batch, [QuoteLine(SORA, 3, unit_price=10)])
    assert (replay.frozen_credits, replay.available_after, replay.replayed) == (30, 970, True)

    with pytest.raises(StaleQuote):
        await handlers.reserve(tenant, new_batch_id(), [QuoteLine(SORA, 3, unit_price=9)])


async def test_task_outcomes_are_applied_once_even_when_duplicated_inside_and_across_chunks(
    handlers: BillingHandlers, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 1000)
    batch = new_batch_id()
    await handlers.reserve(tenant, batch, [QuoteLine(SORA, 5)])
    chunk = [
        outcome(batch, "t1", OutcomeKind.CAPTURE),
        outcome(batch, "t2", OutcomeKind.REFUND),
        outcome(batch, "t1", OutcomeKind.CAPTURE),
        outcome(batch, "t3", OutcomeKind.CAPTURE),
        outcome(batch, "t2", OutcomeKind.REFUND),
    ]

    first = await handlers.apply_task_outcomes(chunk)
    second = await handlers.apply_task_outcomes(chunk)

    assert len(first) == 3
    assert second == {}
    hold = await handlers.get_batch_settlement(batch)
    assert (hold.captured, hold.refunded, hold.outcomes_applied, hold.held) == (20, 10, 3, 20)
    outcome_transfers = await count(
        database,
        "SELECT count(*) FROM billing.transfers"
        " WHERE batch_id = :b AND ref_type IN ('batch_capture', 'batch_refund')",
        b=batch,
    )
    assert outcome_transfers == 3
    await assert_ledger_invariants(database)


async def test_a_chunk_applies_outcomes_of_several_batches_and_tenants_together(
    handlers: BillingHandlers, database: Database
) -> None:
    first_tenant = await funded_tenant(handlers, 100)
    second_tenant = await funded_tenant(handlers, 100)
    first_batch, second_batch = new_batch_id(), new_batch_id()
    await handlers.reserve(first_tenant, first_batch, [QuoteLine(SORA, 2)])
    await handlers.reserve(second_tenant, second_batch, [QuoteLine("veo-3", 2)])

    await handlers.apply_task_outcomes(
        [
            outcome(first_batch, "a", OutcomeKind.REFUND),
            outcome(second_batch, "a", OutcomeKind.REFUND, model="veo-3"),
            outcome(first_batch, "b", OutcomeKind.REFUND),
            outcome(second_batch, "b", OutcomeKind.CAPTURE, model="veo-3"),
        ]
    )

    assert (await handlers.get_balance(first_tenant)).available_credits == 100
    assert (await handlers.get_balance(second_tenant)).available_credits == 80
    await assert_ledger_invariants(database)


async def test_a_refund_returns_credits_to_available_before_the_batch_finishes(
    handlers: BillingHandlers,
) -> None:
    tenant = await funded_tenant(handlers, 100)
    batch = new_batch_id()
    await handlers.reserve(tenant, batch, [QuoteLine(SORA, 10)])

    charge = await handlers.charge_task(outcome(batch, "failed", OutcomeKind.REFUND))

    assert (charge.credits, charge.replayed) == (10, False)
    balance = await handlers.get_balance(tenant)
    assert (balance.available_credits, balance.held_credits) == (10, 90)
    assert (await handlers.get_batch_settlement(batch)).settlement_status is SettlementStatus.PENDING


async def test_a_task_cannot_be_captured_after_it_was_refunded(handlers: BillingHandlers) -> None:
    tenant = await funded_tenant(handlers, 100)
    batch = new_batch_id()
    await handlers.reserve(tenant, batch, [QuoteLine(SORA, 2)])
    await handlers.charge_task(outcome(batch, "t", OutcomeKind.REFUND))

    replay = await handlers.charge_task(outcome(batch, "t", OutcomeKind.REFUND))
    assert (replay.credits, replay.replayed) == (10, True)
    with pytest.raises(OutcomeConflict):
        await handlers.charge_task(outcome(batch, "t", OutcomeKind.CAPTURE))
    assert (await handlers.get_batch_settlement(batch)).captured == 0


async def test_an_outcome_for_a_batch_without_a_hold_is_refused(handlers: BillingHandlers) -> None:
    with pytest.raises(HoldNotFound):
        await handlers.apply_task_outcomes([outcome(new_batch_id(), "x", OutcomeKind.CAPTURE)])


async def test_settlement_is_refused_while_outcomes_are_missing_and_succeeds_once_they_arrive(
    handlers: BillingHandlers, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 100)
    batch = new_batch_id()
    await handlers.reserve(tenant, batch, [QuoteLine(SORA, 3)])
    await handlers.apply_task_outcomes([outcome(batch, "1", OutcomeKind.CAPTURE)])

    with pytest.raises(OutcomesMissing) as refused:
        await handlers.settle(batch)
    assert refused.value.details["outcomes_applied"] == "1"
    assert (await handlers.get_batch_settlement(batch)).settlement_status is SettlementStatus.PENDING

    await handlers.apply_task_outcomes(
        [outcome(batch, "2", OutcomeKind.CAPTURE), outcome(batch, "3", OutcomeKind.CAPTURE)]
    )
    settled = await handlers.settle(batch)
    again = await handlers.settle(batch)

    assert (settled.settlement_status, settled.captured, settled.released) == (
        SettlementStatus.SETTLED,
        30,
        0,
    )
    assert again == settled
    events = await count(
        database,
        "SELECT count(*) FROM billing.outbox WHERE routing_key = 'batch.settled' AND body LIKE :b",
        b=f"%{batch}%".encode(),
    )
    assert events == 1
    await assert_ledger_invariants(database)


async def test_settlement_pulls_missing_outcomes_and_refuses_new_ones_afterwards(
    handlers: BillingHandlers, outcomes: RecordedOutcomes, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 100)
    batch = new_batch_id()
    await handlers.reserve(tenant, batch, [QuoteLine(SORA, 4)])
    await handlers.apply_task_outcomes([outcome(batch, "1", OutcomeKind.CAPTURE)])
    outcomes.by_batch[batch] = [
        outcome(batch, "1", OutcomeKind.CAPTURE),
        outcome(batch, "2", OutcomeKind.REFUND),
        outcome(batch, "3", OutcomeKind.CAPTURE),
        outcome(batch, "4", OutcomeKind.REFUND),
    ]

    settled = await handlers.settle(batch)

    assert outcomes.calls == 1
    assert (settled.captured, settled.refunded, settled.released) == (20, 20, 0)
    assert settled.settlement_status is SettlementStatus.REFUNDED
    assert (await handlers.get_balance(tenant)).available_credits == 80
    # A late duplicate event is harmless; a never-seen task after settlement is refused.
    assert await handlers.apply_task_outcomes([outcome(batch, "2", OutcomeKind.REFUND)]) == {}
    with pytest.raises(AlreadySettled):
        await handlers.apply_task_outcomes([outcome(batch, "5", OutcomeKind.REFUND)])
    await assert_ledger_invariants(database)


async def test_batches_settled_together_are_each_settled_or_refused_on_their_own(
    handlers: BillingHandlers, outcomes: RecordedOutcomes, database: Database
) -> None:
    tenant, other = await funded_tenant(handlers, 100), await funded_tenant(handlers, 100)
    captured, refunded, pulled, missing = (new_batch_id() for _ in range(4))
    for owner, batch in ((tenant, captured), (tenant, refunded), (other, pulled), (other, missing)):
        await handlers.reserve(owner, batch, [QuoteLine(SORA, 2)])
    await handlers.apply_task_outcomes(
        [
            outcome(captured, "1", OutcomeKind.CAPTURE),
            outcome(captured, "2", OutcomeKind.CAPTURE),
            outcome(refunded, "1", OutcomeKind.CAPTURE),
            outcome(refunded, "2", OutcomeKind.REFUND),
            outcome(missing, "1", OutcomeKind.CAPTURE),
        ]
    )
    outcomes.by_batch[pulled] = [
        outcome(pulled, "1", OutcomeKind.REFUND),
        outcome(pulled, "2", OutcomeKind.REFUND),
    ]
    unknown = new_batch_id()

    results = await handlers.settle_batches([captured, refunded, pulled, missing, unknown])

    first, second, third, fourth, fifth = results
    assert isinstance(first, BatchHold) and first.settlement_status is SettlementStatus.SETTLED
    assert isinstance(second, BatchHold) and (second.settlement_status, second.refunded) == (
        SettlementStatus.REFUNDED,
        10,
    )
    assert isinstance(third, BatchHold) and (third.refunded, third.settlement_status) == (
        20,
        SettlementStatus.REFUNDED,
    )
    assert isinstance(fourth, OutcomesMissing)
    assert isinstance(fifth, HoldNotFound)
    assert (await handlers.get_balance(tenant)).available_credits == 70
    balance = await handlers.get_balance(other)
    assert (balance.available_credits, balance.held_credits) == (80, 10)  # 20 refunded; 10 not settled
    events = await count(database, "SELECT count(*) FROM billing.outbox WHERE routing_key = 'batch.settled'")
    again = await handlers.settle_batches([captured, refunded, pulled])
    assert again == results[:3]
    assert (
        await count(database, "SELECT count(*) FROM billing.outbox WHERE routing_key = 'batch.settled'")
        == events
    )
    await assert_ledger_invariants(database)


async def test_settling_releases_what_the_hold_still_holds(
    make_handlers: HandlersFactory, database: Database
) -> None:
    handlers = make_handlers(outcome_source=None)
    tenant = await funded_tenant(handlers, 100)
    batch = new_batch_id()
    # Two models reserved at different prices; one line's outcomes are all refunded.
    await handlers.reserve(tenant, batch, [QuoteLine(SORA, 2), QuoteLine("sora-2-pro", 1)])
    await handlers.apply_task_outcomes(
        [
            outcome(batch, "a", OutcomeKind.CAPTURE),
            outcome(batch, "b", OutcomeKind.CAPTURE),
            outcome(batch, "c", OutcomeKind.REFUND, model="sora-2-pro"),
        ]
    )

    settled = await handlers.settle(batch)

    assert (settled.frozen, settled.captured, settled.refunded, settled.released) == (50, 20, 30, 0)
    assert (await handlers.get_balance(tenant)).available_credits == 80
    await assert_ledger_invariants(database)


async def test_ledger_lists_available_changes_newest_first_in_pages(handlers: BillingHandlers) -> None:
    tenant = await funded_tenant(handlers, 0)
    for n in range(5):
        await handlers.top_up(tenant, n + 1, f"ref-{n}")

    first = await handlers.list_ledger_entries(tenant, None, "", 2)
    second = await handlers.list_ledger_entries(tenant, None, first.next_cursor, 2)
    last = await handlers.list_ledger_entries(tenant, None, second.next_cursor, 2)

    assert [line.credits_delta for line in first.lines + second.lines + last.lines] == [5, 4, 3, 2, 1]
    assert [line.balance_after for line in first.lines] == [15, 10]
    assert last.next_cursor == ""
    with pytest.raises(InvalidArgument):
        await handlers.list_ledger_entries(tenant, None, "not-a-cursor", 2)
    with pytest.raises(InvalidArgument):
        await handlers.list_ledger_entries(tenant, None, "", 1001)


async def test_api_keys_authenticate_their_tenant_and_record_use_at_most_once_a_minute(
    handlers: BillingHandlers, database: Database, clock: Clock
) -> None:
    tenant = await funded_tenant(handlers, 0)
    issued = await handlers.create_api_key(tenant)
    chosen = f"demo-key-{uuid.uuid4().hex[:6]}"
    await handlers.create_api_key(tenant, chosen)

    assert issued.api_key.startswith("rb_live_")
    assert (await handlers.authenticate_api_key(issued.api_key)).tenant_id == tenant
    assert (await handlers.authenticate_api_key(chosen)).tenant_id == tenant
    with pytest.raises(ApiKeyAlreadyExists):
        await handlers.create_api_key(tenant, chosen)
    with pytest.raises(Unauthenticated):
        await handlers.authenticate_api_key("rb_live_unknown")

    async def last_used() -> object:
        async with database.connection() as conn:
            return (
                await conn.execute(
                    text("SELECT last_used_at FROM billing.api_keys WHERE id = :id"), {"id": issued.key_id}
                )
            ).scalar_one()

    first_use = await last_used()
    clock.now += timedelta(seconds=30)
    await handlers.authenticate_api_key(issued.api_key)
    assert await last_used() == first_use
    clock.now += timedelta(seconds=31)
    await handlers.authenticate_api_key(issued.api_key)
    assert await last_used() == clock.now


async def test_overlapping_chunks_applied_concurrently_charge_each_task_once_without_deadlock(
    handlers: BillingHandlers, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 1000)
    batches = [new_batch_id(), new_batch_id()]
    for batch in batches:
        await handlers.reserve(tenant, batch, [QuoteLine(SORA, 20)])
    every = [
        outcome(batch, str(n), OutcomeKind.CAPTURE if n % 3 else OutcomeKind.REFUND)
        for n in range(20)
        for batch in batches
    ]
    # Each chunk covers a different, overlapping slice, in a different order.
    chunks = [
        every[start : start + 25][::step] for start, step in ((0, 1), (10, -1), (15, 1), (0, -1), (20, 1))
    ]

    results = await asyncio.gather(*(handlers.apply_task_outcomes(chunk) for chunk in chunks))
    settled = await asyncio.gather(*(handlers.settle(batch) for batch in batches))

    applied_keys = [key for result in results for key in result]
    assert sorted(applied_keys) == sorted(o.key for o in every), "every task applied exactly once"
    assert [(s.captured, s.refunded, s.outcomes_applied) for s in settled] == [(130, 70, 20)] * 2
    assert (await handlers.get_balance(tenant)).available_credits == 1000 - 2 * 130
    await assert_ledger_invariants(database)
