"""Pure rules of batches: final status, dispatch chunks, pricing, the create response, cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from libs.errors import InvalidArgument
from services.batch.domain.batch import (
    BatchId,
    BatchItem,
    BatchRecord,
    BatchStatus,
    QuoteLine,
    RequestedLine,
    SettlementStatus,
    TaskCounts,
    TaskId,
    TaskRecord,
    TaskStatus,
    TenantId,
    accepted_result,
    common_unit_price,
    dispatch_chunks,
    final_status,
    outcome_counts,
    parse_batch_id,
    price_keys,
    quote_lines,
    required_credits,
)
from services.batch.domain.errors import BatchNotFound, InvalidCursor
from services.batch.domain.paging import MAX_PAGE_SIZE, BatchCursor, TaskCursor, page_size


@pytest.mark.parametrize(
    ("succeeded", "failed", "cancelled", "cancel_requested", "expected"),
    [
        (4, 0, 0, False, BatchStatus.COMPLETED),
        (4, 0, 0, True, BatchStatus.COMPLETED),
        (0, 4, 0, False, BatchStatus.FAILED),
        (0, 4, 0, True, BatchStatus.FAILED),
        (3, 1, 0, False, BatchStatus.PARTIAL),
        (3, 1, 0, True, BatchStatus.PARTIAL),
        (2, 0, 2, True, BatchStatus.CANCELLED),
        (0, 0, 4, True, BatchStatus.CANCELLED),
        (1, 1, 2, True, BatchStatus.CANCELLED),
        (2, 0, 2, False, BatchStatus.PARTIAL),
        (0, 2, 2, False, BatchStatus.FAILED),
    ],
)
def test_final_status_follows_the_outcomes_and_the_cancel_request(
    succeeded: int, failed: int, cancelled: int, cancel_requested: bool, expected: BatchStatus
) -> None:
    counts = TaskCounts(total=4, succeeded=succeeded, failed=failed, cancelled=cancelled)
    assert final_status(counts, cancel_requested) is expected


def test_final_status_refuses_a_batch_with_pending_tasks() -> None:
    with pytest.raises(ValueError, match="pending"):
        final_status(TaskCounts(total=3, succeeded=2), cancel_requested=False)


def test_pending_count_is_total_minus_terminal_tasks() -> None:
    counts = TaskCounts(total=10, succeeded=3, failed=2, cancelled=1)
    assert counts.pending == 4
    assert not counts.all_terminal


def test_dispatch_chunks_keep_order_and_respect_the_size() -> None:
    ids = [TaskId(uuid.uuid4()) for _ in range(120)]
    chunks = dispatch_chunks(ids, 50)
    assert [len(chunk) for chunk in chunks] == [50, 50, 20]
    assert [task_id for chunk in chunks for task_id in chunk] == ids


def test_dispatch_chunks_of_an_exact_multiple_have_no_empty_tail() -> None:
    ids = [TaskId(uuid.uuid4()) for _ in range(100)]
    assert [len(chunk) for chunk in dispatch_chunks(ids, 50)] == [50, 50]


def test_dispatch_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        dispatch_chunks([TaskId(uuid.uuid4())], 0)


def test_quote_lines_count_items_per_model_in_order_of_appearance() -> None:
    items = [BatchItem("a", "veo-3"), BatchItem("b", "sora-2"), BatchItem("c", "veo-3")]
    assert quote_lines(price_keys(items)) == [
        RequestedLine("veo-3", 2, 0),
        RequestedLine("sora-2", 1, 0),
    ]


def test_items_whose_priced_options_differ_are_quoted_on_lines_of_their_own() -> None:
    items = [BatchItem("a", "veo-3"), BatchItem("b", "veo-3"), BatchItem("c", "veo-3")]
    keys = price_keys(items, ("resolution=720p", "resolution=1080p", "resolution=720p"))
    assert quote_lines(keys) == [
        RequestedLine("veo-3", 2, 0, "resolution=720p"),
        RequestedLine("veo-3", 1, 0, "resolution=1080p"),
    ]


def test_required_credits_and_cost_per_video_of_a_single_price_batch() -> None:
    lines = [QuoteLine("sora-2", 20, 10)]
    assert required_credits(lines) == 200
    assert common_unit_price(lines) == 10


def test_cost_per_video_is_unset_for_mixed_prices() -> None:
    lines = [QuoteLine("sora-2", 2, 10), QuoteLine("veo-3", 1, 20)]
    assert required_credits(lines) == 40
    assert common_unit_price(lines) is None


def test_cost_per_video_is_kept_for_two_models_of_the_same_price() -> None:
    assert common_unit_price([QuoteLine("a", 1, 10), QuoteLine("b", 3, 10)]) == 10


def _batch(status: BatchStatus, available_snapshot: int | None = 990) -> BatchRecord:
    return BatchRecord(
        id=BatchId(uuid.uuid4()),
        tenant_id=TenantId(uuid.uuid4()),
        request_id="req-1",
        request_fingerprint="f",
        status=status,
        total_count=20,
        required_credits=200,
        cost_per_video=10,
        available_snapshot=available_snapshot,
        frozen_credits=200,
        rejected_required=None,
        rejected_available=None,
        cancel_requested=False,
        settlement_status=SettlementStatus.PENDING,
        webhook_url=None,
        created_at=datetime.now(UTC),
        queued_at=datetime.now(UTC),
        finished_at=None,
        settled_at=None,
    )


def test_accepted_result_says_queued_whatever_the_batch_became_since() -> None:
    batch = _batch(BatchStatus.PARTIAL)
    result = accepted_result(batch, replayed=True)
    assert result.status == "queued"
    assert result.available_credits == 990
    assert result.required_credits == 200
    assert result.replayed is True
    assert accepted_result(batch, replayed=True) == result


def test_a_malformed_batch_id_names_no_batch() -> None:
    with pytest.raises(BatchNotFound):
        parse_batch_id("not-a-uuid")


def test_page_size_defaults_trims_and_refuses_negatives() -> None:
    assert page_size(0) == 50
    assert page_size(7) == 7
    assert page_size(50_000) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        page_size(-1)


def test_cursors_round_trip() -> None:
    moment = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    batch_id = uuid.uuid4()
    assert BatchCursor.decode(BatchCursor(moment, batch_id).encode()) == BatchCursor(moment, batch_id)
    assert TaskCursor.decode(TaskCursor(41).encode()) == TaskCursor(41)


@pytest.mark.parametrize("garbage", ["", "!!!", "bm90IGpzb24", "eyJrIjoieCJ9", TaskCursor(3).encode()])
def test_garbage_batch_cursors_are_refused(garbage: str) -> None:
    with pytest.raises(InvalidCursor):
        BatchCursor.decode(garbage)


def test_a_batch_cursor_is_not_a_task_cursor() -> None:
    with pytest.raises(InvalidCursor):
        TaskCursor.decode(BatchCursor(datetime.now(UTC), uuid.uuid4()).encode())


def _finished_task(batch_id: BatchId, status: TaskStatus, price: int) -> TaskRecord:
    return TaskRecord(
        id=TaskId(uuid.uuid4()),
        batch_id=batch_id,
        tenant_id=TenantId(uuid.uuid4()),
        batch_index=0,
        prompt="p",
        model="sora-2",
        unit_price=price,
        status=status,
        attempts=1,
        claims=1,
        failure_type=None,
        error_message=None,
        video_url=None,
        created_at=datetime(2026, 12, 2, tzinfo=UTC),
        started_at=None,
        finished_at=None,
    )


def test_finished_tasks_add_to_their_own_batches_counters() -> None:
    first, second = BatchId(uuid.uuid4()), BatchId(uuid.uuid4())
    finished = [
        _finished_task(first, TaskStatus.SUCCEEDED, 10),
        _finished_task(first, TaskStatus.SUCCEEDED, 10),
        _finished_task(first, TaskStatus.FAILED, 10),
        _finished_task(second, TaskStatus.CANCELLED, 25),
    ]

    assert outcome_counts(finished) == {
        first: TaskCounts(0, succeeded=2, failed=1, credits_spent=20, refunded_credits=10),
        second: TaskCounts(0, cancelled=1, refunded_credits=25),
    }
    with pytest.raises(ValueError, match="not finished"):
        outcome_counts([_finished_task(first, TaskStatus.RUNNING, 10)])
