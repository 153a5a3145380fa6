"""Migration 0008 (ADR-042): batches stored before it count their undispatched tasks from then on.

A database at revision 0007 with batches in every state is upgraded; each open batch's count must
be what its tasks say, or its dispatch window would be planned from a wrong figure for good."""

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
def database_at_0007() -> Iterator[str]:
    with database_at(MIGRATIONS, "0007") as url:
        yield url


def _batch(
    conn: psycopg.Connection[tuple[object, ...]], status: str, tasks: list[tuple[str, bool]]
) -> uuid.UUID:
    """A batch whose tasks have these (status, dispatched) states."""
    batch_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    finished = all(state in ("succeeded", "failed", "cancelled") for state, _ in tasks)
    conn.execute(
        "INSERT INTO batch.batches (id, tenant_id, request_fingerprint, status, total_count,"
        " required_credits, finished_at) VALUES (%s, %s, 'fp', %s, %s, %s, CASE WHEN %s THEN now() END)",
        (batch_id, tenant_id, status, len(tasks), 10 * len(tasks), finished),
    )
    for index, (state, dispatched) in enumerate(tasks):
        conn.execute(
            "INSERT INTO batch.tasks (id, batch_id, tenant_id, batch_index, prompt, model, unit_price,"
            " status, dispatched_at)"
            " VALUES (%s, %s, %s, %s, 'p', 'sora-2', 10, %s, CASE WHEN %s THEN now() END)",
            (uuid.uuid4(), batch_id, tenant_id, index, state, dispatched),
        )
    return batch_id


def test_open_batches_count_their_undispatched_tasks_after_the_upgrade(database_at_0007: str) -> None:
    with psycopg.connect(libpq_url(database_at_0007), autocommit=True) as conn:
        waiting = _batch(conn, "queued", [("queued", False)] * 3)
        halfway = _batch(
            conn, "processing", [("succeeded", True), ("running", True), ("queued", True), ("queued", False)]
        )
        dispatched = _batch(conn, "processing", [("running", True), ("queued", True)])
        reserving = _batch(conn, "reserving", [("queued", False)] * 2)
        finished = _batch(conn, "completed", [("succeeded", True), ("cancelled", False)])

    upgrade_to(MIGRATIONS, database_at_0007, "head")

    with psycopg.connect(libpq_url(database_at_0007), autocommit=True) as conn:
        counts: dict[object, object] = dict(
            conn.execute("SELECT id, undispatched_count FROM batch.batches").fetchall()
        )
    assert counts == {waiting: 3, halfway: 1, dispatched: 0, reserving: 2, finished: 0}
