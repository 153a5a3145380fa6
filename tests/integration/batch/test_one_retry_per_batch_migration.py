"""Migration 0009 (ADR-048): batches retried several times before it keep every link, and the
oldest retry that was not rejected takes the source's one place, so the unique key can be built
and the next retry-failed call replays that retry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from libs.db import libpq_url
from libs.migrations import upgrade_to
from services.batch.bootstrap import MIGRATIONS
from tests.isolation import database_at


@pytest.fixture
def database_at_0008() -> Iterator[str]:
    with database_at(MIGRATIONS, "0008") as url:
        yield url


def _batch(
    conn: psycopg.Connection[tuple[object, ...]], status: str, minute: int, retry_of: uuid.UUID | None = None
) -> uuid.UUID:
    batch_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO batch.batches (id, tenant_id, request_fingerprint, status, total_count,"
        " required_credits, created_at, retry_of)"
        " VALUES (%s, %s, 'fp', %s, 1, 10, timestamptz '2026-12-01 10:00Z' + %s * interval '1 minute', %s)",
        (batch_id, uuid.uuid4(), status, minute, retry_of),
    )
    return batch_id


def test_the_oldest_retry_not_rejected_holds_the_place_and_every_link_stays(database_at_0008: str) -> None:
    with psycopg.connect(libpq_url(database_at_0008), autocommit=True) as conn:
        source = _batch(conn, "partial", 0)
        rejected = _batch(conn, "rejected", 1, source)
        oldest = _batch(conn, "completed", 2, source)
        newer = _batch(conn, "partial", 3, source)
        once = _batch(conn, "partial", 4)
        only = _batch(conn, "queued", 5, once)
        upgrade_to(MIGRATIONS, database_at_0008, "0009")
        rows = conn.execute("SELECT id, retry_of, retry_slot FROM batch.batches").fetchall()
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("UPDATE batch.batches SET retry_slot = %s WHERE id = %s", (source, newer))
    links = {row[0]: (row[1], row[2]) for row in rows}
    assert links == {
        source: (None, None),
        rejected: (source, None),
        oldest: (source, source),
        newer: (source, None),
        once: (None, None),
        only: (once, once),
    }
