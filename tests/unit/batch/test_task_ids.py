"""Task ids (ADR-163): a UUIDv7 head per batch and the task's index, so ids grow with time and
index and every insert lands on the right edge of the primary key; identifiers, never secrets."""

from __future__ import annotations

import time
import uuid

from services.batch.adapters.sql.intake import _MAX_TASK_INDEX, _task_id_head


def _task_id(head: str, index: int) -> uuid.UUID:
    """As both insert paths write it (`_copy_tasks`; the grouped insert's `id_head || lpad(...)`)."""
    return uuid.UUID(f"{head}{index:06x}")


def test_every_task_id_is_a_valid_uuidv7_of_the_rfc_variant() -> None:
    head = _task_id_head()
    for index in (0, 1, 9_999, _MAX_TASK_INDEX):
        task_id = _task_id(head, index)
        assert (task_id.version, task_id.variant) == (7, uuid.RFC_4122)
        assert str(task_id) == f"{head}{index:06x}"


def test_ids_carry_the_time_they_were_made_and_grow_with_it() -> None:
    before = time.time_ns() // 1_000_000
    heads = []
    for _ in range(3):
        made = time.time_ns() // 1_000_000
        heads.append(_task_id_head())
        while time.time_ns() // 1_000_000 <= made + 1:  # the next head's millisecond is a later one
            pass
    after = time.time_ns() // 1_000_000
    ids = [_task_id(head, index) for head in heads for index in (0, 5_000)]
    assert ids == sorted(ids)
    assert all(before <= task_id.int >> 80 <= after for task_id in ids)


def test_a_batch_ids_grow_with_the_index_and_batches_never_share_one() -> None:
    heads = {_task_id_head() for _ in range(10_000)}
    assert len(heads) == 10_000  # 50 random bits per head
    head = heads.pop()
    ids = [_task_id(head, index) for index in range(1_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
