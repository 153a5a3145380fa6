"""Migration 0018 (ADR-163): a batch's COPY appends its tasks instead of filling the small holes
older pages of `batch.tasks` have left.

The history is rows long enough that each full page keeps a few hundred bytes, room for a short
task; the free space map records them (VACUUM). Before 0018 a new batch's rows go into those old
pages, one or a few per page; after it, only to pages of the table's new end."""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from libs.db import Database, libpq_url
from libs.migrations import upgrade_to
from services.batch.adapters.sql.intake import BatchIntake
from services.batch.bootstrap import MIGRATIONS
from services.batch.domain.batch import BatchId, BatchItem, NewBatch, QuoteLine, TenantId
from tests.isolation import database_at

# Rows of ~1,900 bytes (under the TOAST threshold, incompressible): four fill a page and leave it
# ~500 bytes, room for three short tasks.
HISTORY_PROMPT_CHARS = 1_750
HISTORY_ROWS = 800
BATCH_ITEMS = 300  # over SMALL_BATCH_MAX_ITEMS: the COPY path


@pytest.fixture
def database_at_0017() -> Iterator[str]:
    with database_at(MIGRATIONS, "0017") as url:
        yield url


def _store_history(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    batch_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    conn.execute(
        "INSERT INTO batch.batches (id, tenant_id, request_fingerprint, status, total_count,"
        " required_credits, finished_at) VALUES (%s, %s, 'fp', 'completed', %s, 0, now())",
        (batch_id, tenant_id, HISTORY_ROWS),
    )
    rng = random.Random(163)
    with conn.cursor().copy(
        "COPY batch.tasks (id, batch_id, tenant_id, batch_index, prompt, model, unit_price, status)"
        " FROM STDIN"
    ) as copy:
        for index in range(HISTORY_ROWS):
            prompt = "".join(rng.choices(string.ascii_letters, k=HISTORY_PROMPT_CHARS))
            copy.write_row((uuid.uuid4(), batch_id, tenant_id, index, prompt, "sora-2", 10, "succeeded"))
    conn.execute("VACUUM batch.tasks")  # what autovacuum does: the pages' free space is recorded


async def _store_batch(url: str) -> BatchId:
    database = Database(url, pool_size=1)
    try:
        line = QuoteLine(model="sora-2", count=BATCH_ITEMS, unit_price=10)
        new = NewBatch(
            id=BatchId(uuid.uuid4()),
            tenant_id=TenantId(uuid.uuid4()),
            request_id=None,
            request_fingerprint="fp",
            items=tuple(BatchItem(prompt=f"shot {n}", model="sora-2") for n in range(BATCH_ITEMS)),
            prices={("sora-2", 0, ""): line},
            required_credits=10 * BATCH_ITEMS,
            cost_per_video=10,
            webhook_url=None,
        )
        batch, created = await BatchIntake(database).insert_batch(new)
        assert created
        return batch.id
    finally:
        await database.close()


def _blocks(conn: psycopg.Connection[tuple[object, ...]], batch_id: BatchId | None = None) -> list[int]:
    """The heap block of every task (of one batch)."""
    rows = conn.execute(
        "SELECT (ctid::text::point)[0]::int FROM batch.tasks WHERE %s::uuid IS NULL OR batch_id = %s",
        (batch_id, batch_id),
    ).fetchall()
    return [int(row[0]) for row in rows]  # type: ignore[call-overload]


async def test_a_batch_is_appended_after_0018_where_it_filled_old_pages_before(database_at_0017: str) -> None:
    with psycopg.connect(libpq_url(database_at_0017), autocommit=True) as conn:
        _store_history(conn)
        history_end = max(_blocks(conn))

        # Before 0018: the batch's rows are spread over the history's pages.
        before = _blocks(conn, await _store_batch(database_at_0017))
        assert sum(block <= history_end for block in before) > BATCH_ITEMS // 2

        upgrade_to(MIGRATIONS, database_at_0017, "head")
        end = max(_blocks(conn))
        after = _blocks(conn, await _store_batch(database_at_0017))
        # After it: every row on a page after the table's end; a few new pages hold them all.
        assert min(after) > end
        assert len(set(after)) <= BATCH_ITEMS // 20
