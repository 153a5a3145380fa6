"""Batch lists (ADR-164): newest first with ties broken by id, every filter, pages that add up to
the whole list, and a page of a rare status read from an index in that order (no sort, no scan of
every batch) since migration 0018."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from libs.db import Database, libpq_url
from services.batch.adapters.sql.listings import BatchListings
from services.batch.domain.batch import BatchId, TenantId
from services.batch.domain.paging import BatchCursor
from tests.isolation import create_migrated_database, drop_database

STATUSES = ("completed", "partial", "failed", "cancelled")
SETTLEMENTS = ("settled", "refunded")
START = datetime(2026, 1, 1, tzinfo=UTC)
TENANTS = (TenantId(uuid.uuid4()), TenantId(uuid.uuid4()))


@pytest.fixture
async def listed() -> AsyncIterator[tuple[BatchListings, list[tuple[Any, ...]], str]]:
    """60 batches of two tenants, each status and settlement, every third pair sharing its time."""
    name, url = create_migrated_database()
    rows = [
        (
            uuid.uuid4(),
            TENANTS[n % 2],
            STATUSES[n % 4],
            SETTLEMENTS[n % 3 % 2],
            START + timedelta(minutes=n // 2 if n % 3 == 0 else n),
        )
        for n in range(60)
    ]
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for batch_id, tenant_id, status, settlement, created_at in rows:
            conn.execute(
                "INSERT INTO batch.batches (id, tenant_id, request_fingerprint, status, settlement_status,"
                " total_count, required_credits, created_at, finished_at)"
                " VALUES (%s, %s, 'fp', %s, %s, 1, 10, %s, %s)",
                (batch_id, tenant_id, status, settlement, created_at, created_at),
            )
    database = Database(url, pool_size=1)
    try:
        yield BatchListings(database), rows, url
    finally:
        await database.close()
        drop_database(name)


def _newest_first(rows: list[tuple[Any, ...]]) -> list[uuid.UUID]:
    return [row[0] for row in sorted(rows, key=lambda row: (row[4], row[0]), reverse=True)]


@pytest.mark.parametrize(
    ("tenant", "status", "settlement"),
    [(None, "", ""), (0, "", ""), (None, "cancelled", ""), (None, "", "refunded"), (0, "failed", "settled")],
)
async def test_pages_of_every_filter_are_newest_first_and_add_up_to_the_whole_list(
    listed: tuple[BatchListings, list[tuple[Any, ...]], str], tenant: int | None, status: str, settlement: str
) -> None:
    listings, rows, _ = listed
    tenant_id = TENANTS[tenant] if tenant is not None else None
    wanted = _newest_first(
        [
            row
            for row in rows
            if (tenant_id is None or row[1] == tenant_id)
            and (not status or row[2] == status)
            and (not settlement or row[3] == settlement)
        ]
    )
    seen: list[uuid.UUID] = []
    after: BatchCursor | None = None
    while True:
        page = await listings.list_batches(tenant_id, status, after, 4, settlement_status=settlement)
        seen += [view.batch.id for view in page]
        if len(page) < 4:
            break
        last = page[-1].batch
        after = BatchCursor(last.created_at, BatchId(last.id))
    assert seen == wanted and wanted


@pytest.mark.parametrize(
    "where",
    [
        "status = 'cancelled'",
        "settlement_status = 'refunded'",
        "tenant_id = %(tenant)s AND status = 'failed'",
    ],
)
async def test_a_filtered_page_is_an_index_range_in_its_order(
    listed: tuple[BatchListings, list[tuple[Any, ...]], str], where: str
) -> None:
    _, _, url = listed
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        # Sixty rows would be scanned and sorted anyway; the question is whether an index can answer.
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_bitmapscan = off")
        page = f"SELECT id FROM batch.batches WHERE {where} ORDER BY created_at DESC, id DESC LIMIT 51"
        plan = "\n".join(
            str(row[0]) for row in conn.execute(f"EXPLAIN {page}", {"tenant": TENANTS[0]}).fetchall()
        )
    assert "Sort" not in plan and "Index" in plan and "ix_batches_created" not in plan, plan
