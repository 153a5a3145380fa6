"""Provider slots with a fair share, dispatch windows, deadlines and cancel messages (pure rules)."""

from __future__ import annotations

import uuid

import pytest

from services.batch.domain.batch import BatchId, BatchItem, TenantId
from services.batch.domain.fingerprint import request_fingerprint
from services.batch.domain.scheduling import (
    CancelReason,
    WindowState,
    allot_slots,
    cancelled_task_message,
    claimable_slots,
    plan_dispatch,
)


def test_a_lone_tenant_may_take_every_free_slot() -> None:
    assert claimable_slots(limit=10, running=4, running_mine=4, competing_tenants=1) == 6


def test_no_slot_is_claimable_when_the_model_is_at_its_limit() -> None:
    assert claimable_slots(limit=10, running=10, running_mine=0, competing_tenants=2) == 0
    assert claimable_slots(limit=10, running=12, running_mine=12, competing_tenants=1) == 0


def test_with_competition_a_tenant_is_held_to_its_share_of_the_limit() -> None:
    # Two tenants on a limit of 10: five each, however many slots are free.
    assert claimable_slots(limit=10, running=5, running_mine=5, competing_tenants=2) == 0
    assert claimable_slots(limit=10, running=5, running_mine=0, competing_tenants=2) == 5
    assert claimable_slots(limit=3, running=2, running_mine=2, competing_tenants=2) == 0
    assert claimable_slots(limit=3, running=2, running_mine=0, competing_tenants=2) == 1


def test_claims_made_together_get_their_slots_in_turn_as_if_made_one_after_the_other() -> None:
    mine, theirs = TenantId(uuid.uuid4()), TenantId(uuid.uuid4())
    # Alone on a limit of 10 with 4 running: 6 free, the first message takes 5, the second 1.
    alone = allot_slots(limit=10, running={mine: 4}, waiting=set(), wanted=[(mine, 5), (mine, 5)])
    assert alone == [5, 1]
    # Another tenant waits: each may hold 5; they run 3 and 0.
    granted = allot_slots(
        limit=10, running={mine: 3}, waiting={theirs}, wanted=[(mine, 5), (theirs, 5), (theirs, 5)]
    )
    assert granted == [2, 5, 0]
    assert allot_slots(limit=3, running={}, waiting=set(), wanted=[]) == []


def _batch(outstanding: int, undispatched: int) -> WindowState:
    return WindowState(BatchId(uuid.uuid4()), outstanding, undispatched)


def test_a_new_batch_gets_its_whole_window_in_chunks() -> None:
    batch = _batch(0, 10_000)
    plan = plan_dispatch([batch], chunk_size=50, batch_window_chunks=4, tenant_window_chunks=16)
    assert plan == {batch.batch_id: 200}


def test_a_batch_is_topped_up_only_by_whole_chunks_except_its_last() -> None:
    running, ending = _batch(170, 5_000), _batch(0, 7)
    plan = plan_dispatch([running, ending], chunk_size=50, batch_window_chunks=4, tenant_window_chunks=16)
    assert plan == {ending.batch_id: 7}
    freed = _batch(150, 5_000)
    assert plan_dispatch([freed], chunk_size=50, batch_window_chunks=4, tenant_window_chunks=16) == {
        freed.batch_id: 50
    }


def test_the_tenant_window_is_shared_round_robin_by_its_batches() -> None:
    old, new = _batch(0, 10_000), _batch(0, 10_000)
    plan = plan_dispatch([old, new], chunk_size=10, batch_window_chunks=4, tenant_window_chunks=3)
    assert plan == {old.batch_id: 20, new.batch_id: 10}


def test_nothing_is_dispatched_when_the_tenant_window_is_full() -> None:
    assert (
        plan_dispatch([_batch(40, 100)], chunk_size=10, batch_window_chunks=8, tenant_window_chunks=4) == {}
    )


def test_windows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        plan_dispatch([], chunk_size=0, batch_window_chunks=1, tenant_window_chunks=1)


def test_cancelled_tasks_say_why_they_stopped() -> None:
    assert cancelled_task_message(CancelReason.CUSTOMER, started=False) == "cancelled before it started"
    assert cancelled_task_message(CancelReason.CUSTOMER, started=True) == "cancelled while running"
    assert cancelled_task_message(None, started=True) == "cancelled while running"
    assert "deadline" in cancelled_task_message(CancelReason.DEADLINE, started=False)


def test_a_deadline_or_a_retried_batch_changes_the_fingerprint_but_their_absence_does_not() -> None:
    items = [BatchItem("a cat", "sora-2")]
    plain = request_fingerprint(items, "")
    assert request_fingerprint(items, "", deadline_seconds=0, retry_of="") == plain
    assert request_fingerprint(items, "", deadline_seconds=60) != plain
    assert request_fingerprint(items, "", retry_of=str(uuid.uuid4())) != plain
