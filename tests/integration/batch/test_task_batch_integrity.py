"""A task always belongs to a batch that exists (migration 0006): the rule the foreign key gave,
now checked once per statement, for single inserts, grouped inserts and COPY alike."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

_TASK_COLUMNS = "id, batch_id, tenant_id, batch_index, prompt, model, unit_price, status"


async def _batch(sql: psycopg.AsyncConnection[Any]) -> tuple[uuid.UUID, uuid.UUID]:
    batch_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    await sql.execute(
        "INSERT INTO batch.batches (id, tenant_id, request_fingerprint, status, total_count,"
        " required_credits) VALUES (%s, %s, 'test', 'reserving', 2, 20)",
        (batch_id, tenant_id),
    )
    return batch_id, tenant_id


def _row(batch_id: uuid.UUID, tenant_id: uuid.UUID, index: int) -> tuple[Any, ...]:
    return (uuid.uuid4(), batch_id, tenant_id, index, f"shot {index}", "sora-2", 10, "queued")


async def _insert(sql: psycopg.AsyncConnection[Any], *rows: tuple[Any, ...]) -> None:
    """One INSERT statement of the task rows."""
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    await sql.execute(
        f"INSERT INTO batch.tasks ({_TASK_COLUMNS}) VALUES {values}", [v for row in rows for v in row]
    )


async def _count(sql: psycopg.AsyncConnection[Any], batch_id: uuid.UUID) -> int:
    row = await (
        await sql.execute("SELECT count(*) FROM batch.tasks WHERE batch_id = %s", (batch_id,))
    ).fetchone()
    assert row is not None
    return int(row[0])


async def test_tasks_of_an_existing_batch_are_stored_by_insert_and_by_copy(
    batch_database_url: str, sql: psycopg.AsyncConnection[Any]
) -> None:
    batch_id, tenant_id = await _batch(sql)
    await _insert(sql, _row(batch_id, tenant_id, 0))
    async with sql.cursor().copy(f"COPY batch.tasks ({_TASK_COLUMNS}) FROM STDIN") as copy:
        await copy.write_row(_row(batch_id, tenant_id, 1))
    assert await _count(sql, batch_id) == 2


async def test_a_statement_with_one_task_of_a_missing_batch_stores_none_of_its_tasks(
    batch_database_url: str, sql: psycopg.AsyncConnection[Any]
) -> None:
    batch_id, tenant_id = await _batch(sql)

    async def copy_two_tasks() -> None:
        async with sql.cursor().copy(f"COPY batch.tasks ({_TASK_COLUMNS}) FROM STDIN") as copy:
            await copy.write_row(_row(batch_id, tenant_id, 0))
            await copy.write_row(_row(uuid.uuid4(), tenant_id, 1))

    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="every task needs its batch"):
        await copy_two_tasks()
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await _insert(sql, _row(uuid.uuid4(), tenant_id, 0))
    assert await _count(sql, batch_id) == 0


async def test_a_task_cannot_move_to_another_batch_nor_a_batch_change_its_id(
    batch_database_url: str, sql: psycopg.AsyncConnection[Any]
) -> None:
    batch_id, tenant_id = await _batch(sql)
    other_id, _ = await _batch(sql)
    task = _row(batch_id, tenant_id, 0)
    await _insert(sql, task)
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="batch_id of tasks cannot change"):
        await sql.execute("UPDATE batch.tasks SET batch_id = %s WHERE id = %s", (other_id, task[0]))
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="id of batches cannot change"):
        await sql.execute("UPDATE batch.batches SET id = %s WHERE id = %s", (uuid.uuid4(), batch_id))
    # Other updates of either row are untouched by the rule.
    await sql.execute("UPDATE batch.tasks SET status = 'running' WHERE id = %s", (task[0],))
    await sql.execute("UPDATE batch.batches SET status = 'queued' WHERE id = %s", (batch_id,))
    assert await _count(sql, batch_id) == 1


async def test_deleting_a_batch_deletes_its_tasks(
    batch_database_url: str, sql: psycopg.AsyncConnection[Any]
) -> None:
    batch_id, tenant_id = await _batch(sql)
    kept_id, kept_tenant = await _batch(sql)
    await _insert(sql, _row(batch_id, tenant_id, 0), _row(kept_id, kept_tenant, 0))
    await sql.execute("DELETE FROM batch.batches WHERE id = %s", (batch_id,))
    assert (await _count(sql, batch_id), await _count(sql, kept_id)) == (0, 1)
