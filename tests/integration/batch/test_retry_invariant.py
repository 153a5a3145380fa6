"""I6 of the invariant checker (retry-failed, ADR-048): a second retry that froze credits, or a
retry holding more items than its source failed, is reported; a rejected retry is not.

The rows are written directly (as a bug would leave them), on a fresh migrated database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.invariants import check_invariants
from tests.isolation import create_migrated_database, drop_database

_BATCH = """
INSERT INTO batch.batches (id, tenant_id, request_fingerprint, status, total_count, required_credits,
    retry_of)
VALUES (%s, %s, 'fp', %s, %s, 0, %s)"""
_TASK = """
INSERT INTO batch.tasks (id, batch_id, tenant_id, batch_index, prompt, model, unit_price, status)
VALUES (%s, %s, %s, %s, 'p', 'sora-2', 10, %s)"""


@pytest.fixture
def database_url() -> Iterator[str]:
    name, url = create_migrated_database()
    yield url
    drop_database(name)


def _retry_problems(database_url: str) -> list[str]:
    report = check_invariants(database_url, require_settled=False)
    return [problem for problem in report.discrepancies if problem.startswith("I6")]


def _source_with_failed_tasks(conn: psycopg.Connection[tuple[object, ...]], tenant: uuid.UUID) -> uuid.UUID:
    """A finished batch of three tasks, two of them failed."""
    source = uuid.uuid4()
    conn.execute(_BATCH, (source, tenant, "partial", 3, None))
    for index, status in enumerate(("succeeded", "failed", "failed")):
        conn.execute(_TASK, (uuid.uuid4(), source, tenant, index, status))
    return source


def test_one_retry_and_a_rejected_one_are_clean_but_two_live_retries_are_reported(database_url: str) -> None:
    tenant = uuid.uuid4()
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        source = _source_with_failed_tasks(conn, tenant)
        conn.execute(_BATCH, (uuid.uuid4(), tenant, "rejected", 2, source))
        conn.execute(_BATCH, (uuid.uuid4(), tenant, "queued", 2, source))
        assert _retry_problems(database_url) == []

        conn.execute(_BATCH, (uuid.uuid4(), tenant, "queued", 2, source))
        assert _retry_problems(database_url) == [f"I6: batch {source} has 2 retries that froze credits"]


def test_a_retry_holding_more_items_than_its_source_failed_is_reported(database_url: str) -> None:
    tenant = uuid.uuid4()
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        source = _source_with_failed_tasks(conn, tenant)
        retry = uuid.uuid4()
        conn.execute(_BATCH, (retry, tenant, "queued", 3, source))
        expected = f"I6: retry {retry} holds 3 items, its source {source} failed 2"
        assert _retry_problems(database_url) == [expected]
