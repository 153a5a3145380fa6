"""All SQL of the batch service. Every public method is one transaction.

Events are written to the outbox in the transaction that changes the state they describe, and
every transaction that makes a task terminal runs the finish check before it commits.
"""

from __future__ import annotations

import functools
import os
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import Interval, any_, bindparam, delete, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from libs.db import Database
from libs.messaging.contract import Envelope
from libs.messaging.outbox import add_events
from services.batch import metrics as batch_metrics
from services.batch.adapters import events
from services.batch.adapters.tables import batches, outbox, tasks
from services.batch.domain.batch import (
    LOST_TASK_MESSAGE,
    MAX_TASK_CLAIMS,
    PENDING_TASK_STATUSES,
    BatchId,
    BatchItem,
    BatchRecord,
    BatchStatus,
    BatchView,
    NewBatch,
    QuoteLine,
    RejectionReason,
    Reservation,
    Settlement,
    SettlementStatus,
    TaskCounts,
    TaskId,
    TaskRecord,
    TaskStatus,
    TaskSummary,
    TenantId,
    common_unit_price,
    final_status,
    outcome_counts,
    required_credits,
)
from services.batch.domain.execution import ClaimedTask, ClaimResult, TaskOutcome
from services.batch.domain.paging import BatchCursor
from services.batch.domain.provider import FailureType
from services.batch.domain.reporting import BatchBreakdown, BatchTotals, OutcomeGroup
from services.batch.domain.scheduling import (
    CancelReason,
    WindowState,
    allot_slots,
    cancelled_task_message,
    plan_dispatch,
)

_PENDING = [status.value for status in PENDING_TASK_STATUSES]
_COPY_TASKS = (
    "COPY batch.tasks (id, batch_id, tenant_id, batch_index, prompt, model, unit_price, duration_seconds,"
    " status) FROM STDIN"
)
# Batches up to this size are stored by one statement, alone or with others created at the same
# time (`insert_small_batches`: one round trip, atomic without a transaction); larger ones COPY
# their tasks, which costs less per row.
SMALL_BATCH_MAX_ITEMS = 256
# The statement's batch columns: its parameter of each, and the `_batch_params` value it takes.
_GROUP_BATCH_COLUMNS = {
    "ids": "id",
    "tenant_ids": "tenant_id",
    "request_ids": "request_id",
    "fingerprints": "fingerprint",
    "totals": "total",
    "required": "required",
    "costs": "cost_per_video",
    "webhook_urls": "webhook_url",
    "deadlines": "deadline",
    "retry_of": "retry_of",
}
_GROUP_TASK_COLUMNS = ("task_batch_ids", "id_heads", "indexes", "prompts", "models", "prices", "durations")
# A retry takes its source's one place (`retry_slot`, ADR-048): a conflict on it, as on the
# request id, inserts nothing, and the batch already holding the key is looked up instead.
_INSERT_BATCH = """
INSERT INTO batch.batches (id, tenant_id, request_id, request_fingerprint, status, total_count,
    undispatched_count, required_credits, cost_per_video, webhook_url, deadline_at, retry_of,
    retry_slot)
VALUES (%(id)s, %(tenant_id)s, %(request_id)s, %(fingerprint)s, 'reserving', %(total)s, %(total)s,
    %(required)s, %(cost_per_video)s, %(webhook_url)s, now() + %(deadline)s::int * interval '1 second',
    %(retry_of)s, %(retry_of)s)
ON CONFLICT DO NOTHING
RETURNING *"""
# The retry holding a batch's place; else (it was rejected meanwhile) the batch's latest retry.
_FIND_RETRY = """
SELECT * FROM batch.batches WHERE retry_of = %s
ORDER BY retry_slot IS NULL, created_at DESC, id DESC
LIMIT 1"""
_FIND_LIVE_RETRY = "SELECT * FROM batch.batches WHERE retry_slot = %s"
# Several small batches and all their tasks in one statement (the create path's group commit).
# A request id repeated within the group or already stored inserts nothing (DO NOTHING also
# skips the second of two rows of one statement); those batches are looked up afterwards.
_INSERT_BATCHES_WITH_TASKS = """
WITH b AS (
    INSERT INTO batch.batches (id, tenant_id, request_id, request_fingerprint, status, total_count,
        undispatched_count, required_credits, cost_per_video, webhook_url, deadline_at, retry_of)
    SELECT v.id, v.tenant_id, v.request_id, v.fingerprint, 'reserving', v.total, v.total, v.required,
        v.cost_per_video, v.webhook_url, now() + v.deadline * interval '1 second', v.retry_of
    FROM unnest(CAST(%(ids)b AS uuid[]), CAST(%(tenant_ids)b AS uuid[]), CAST(%(request_ids)b AS text[]),
        CAST(%(fingerprints)b AS text[]), CAST(%(totals)b AS int[]), CAST(%(required)b AS bigint[]),
        CAST(%(costs)b AS bigint[]), CAST(%(webhook_urls)b AS text[]), CAST(%(deadlines)b AS int[]),
        CAST(%(retry_of)b AS uuid[]))
        WITH ORDINALITY AS v(id, tenant_id, request_id, fingerprint, total, required, cost_per_video,
            webhook_url, deadline, retry_of, n)
    ORDER BY v.n
    ON CONFLICT (tenant_id, request_id) DO NOTHING
    RETURNING *
), t AS (
    INSERT INTO batch.tasks (id, batch_id, tenant_id, batch_index, prompt, model, unit_price,
        duration_seconds, status)
    SELECT (i.id_head || lpad(to_hex(i.batch_index), 6, '0'))::uuid, b.id, b.tenant_id, i.batch_index,
        i.prompt, i.model, i.price, i.duration, 'queued'
    FROM unnest(CAST(%(task_batch_ids)b AS uuid[]), CAST(%(id_heads)b AS text[]),
        CAST(%(indexes)b AS int[]), CAST(%(prompts)b AS text[]), CAST(%(models)b AS text[]),
        CAST(%(prices)b AS bigint[]), CAST(%(durations)b AS int[]))
        AS i(batch_id, id_head, batch_index, prompt, model, price, duration)
    JOIN b ON b.id = i.batch_id
)
SELECT * FROM b"""
_FIND_BY_REQUEST_IDS = """
SELECT b.* FROM batch.batches AS b
JOIN unnest(CAST(%(tenant_ids)b AS uuid[]), CAST(%(request_ids)b AS text[])) AS r(tenant_id, request_id)
    ON b.tenant_id = r.tenant_id AND b.request_id = r.request_id"""
# COPY's text format: backslash, tab, newline and carriage return must be escaped; nothing else.
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(value) else value


# Rows per write of a COPY of tasks.
_COPY_CHUNK_ROWS = 1_000
# A task id is its batch's id head and its index in 6 hex digits.
_MAX_TASK_INDEX = 0xFFFFFF


def _task_id_head() -> str:
    """The first 30 characters of the ids of one batch's tasks (a UUIDv7 without its last 24 bits).

    48 bits of Unix milliseconds, the version, 50 random bits and the variant, then the task's
    index: ids that grow with time and index put every insert at the right edge of the primary
    key index, not on a random page of it, which makes storing 10,000 tasks about a third cheaper.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return str(uuid.UUID(int=value))[:-6]


def _batch_params(new: NewBatch) -> dict[str, Any]:
    return {
        "id": new.id,
        "tenant_id": new.tenant_id,
        "request_id": new.request_id,
        "fingerprint": new.request_fingerprint,
        "total": len(new.items),
        "required": new.required_credits,
        "cost_per_video": new.cost_per_video,
        "webhook_url": new.webhook_url,
        "deadline": new.deadline_seconds or None,
        "retry_of": new.retry_of,
        "id_head": _task_id_head(),
    }


# reserving -> queued for a group of batches (`mark_queued_many`), their rows locked in id order.
_MARK_QUEUED = """
WITH reserving AS (
    SELECT id FROM batch.batches
    WHERE id = ANY(CAST(%(ids)b AS uuid[])) AND status = 'reserving'
    ORDER BY id
    FOR UPDATE
)
UPDATE batch.batches AS b
SET status = 'queued', frozen_credits = v.frozen, available_snapshot = v.available, queued_at = now()
FROM unnest(CAST(%(ids)b AS uuid[]), CAST(%(frozen)b AS bigint[]), CAST(%(available)b AS bigint[]))
    AS v(id, frozen, available)
WHERE b.id = v.id AND b.id IN (SELECT id FROM reserving)
RETURNING b.*"""
# A reserving batch re-priced at billing's current prices (`reprice_reserving`).
_REPRICE_BATCH = """
UPDATE batch.batches SET required_credits = %(required)s, cost_per_video = %(cost_per_video)s
WHERE id = %(id)s AND status = 'reserving'
RETURNING *"""
_REPRICE_TASKS = """
UPDATE batch.tasks AS t SET unit_price = v.new_price, duration_seconds = v.new_duration
FROM unnest(%(models)s::text[], %(old_prices)s::bigint[], %(old_durations)s::int[],
    %(new_prices)s::bigint[], %(new_durations)s::int[])
    AS v(model, old_price, old_duration, new_price, new_duration)
WHERE t.batch_id = %(id)s AND t.model = v.model AND t.unit_price = v.old_price
    AND t.duration_seconds = v.old_duration"""
# Finished tasks added to their batches' counters; the rows locked in id order first, as every
# writer of batch rows does, so two writers never deadlock.
_COUNT_OUTCOMES = """
WITH locked AS (
    SELECT id FROM batch.batches WHERE id = ANY(CAST(%(ids)b AS uuid[])) ORDER BY id FOR UPDATE
)
UPDATE batch.batches AS b
SET succeeded_count = b.succeeded_count + v.succeeded, failed_count = b.failed_count + v.failed,
    cancelled_count = b.cancelled_count + v.cancelled, credits_spent = b.credits_spent + v.spent,
    refunded_credits = b.refunded_credits + v.refunded
FROM unnest(CAST(%(ids)b AS uuid[]), CAST(%(succeeded)b AS bigint[]), CAST(%(failed)b AS bigint[]),
    CAST(%(cancelled)b AS bigint[]), CAST(%(spent)b AS bigint[]), CAST(%(refunded)b AS bigint[]))
    AS v(id, succeeded, failed, cancelled, spent, refunded)
WHERE b.id = v.id AND b.id IN (SELECT id FROM locked)"""
# In list order (the relay publishes in id order).
_INSERT_EVENTS = """
INSERT INTO batch.outbox (message_id, routing_key, message_type, body, headers)
SELECT * FROM unnest(CAST(%b AS text[]), CAST(%b AS text[]), CAST(%b AS text[]), CAST(%b AS bytea[]),
    CAST(%b AS jsonb[]))"""


async def _rows(conn: AsyncConnection, statement: str, params: Mapping[str, Any]) -> list[Any]:
    """Runs a statement on the psycopg connection under `conn` (in its transaction); its rows."""
    async with (await _driver(conn)).cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(statement, params)
        return await cursor.fetchall() if cursor.description is not None else []


async def _count_outcomes(conn: AsyncConnection, finished: Sequence[TaskRecord]) -> None:
    """Adds tasks that just finished to their batches' counters, in the transaction that
    finished them (so counters and tasks never disagree)."""
    added = sorted(outcome_counts(finished).items())
    if not added:
        return
    await _rows(
        conn,
        _COUNT_OUTCOMES,
        {
            "ids": [batch_id for batch_id, _ in added],
            "succeeded": [counts.succeeded for _, counts in added],
            "failed": [counts.failed for _, counts in added],
            "cancelled": [counts.cancelled for _, counts in added],
            "spent": [counts.credits_spent for _, counts in added],
            "refunded": [counts.refunded_credits for _, counts in added],
        },
    )


async def _driver(conn: AsyncConnection) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under a SQLAlchemy one (statements on it join its transaction)."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    return driver  # type: ignore[no-any-return]


async def _insert_events(conn: psycopg.AsyncConnection[Any], envelopes: Sequence[Envelope]) -> None:
    """`add_events` on a psycopg connection: one statement for all of them."""
    await conn.execute(
        _INSERT_EVENTS,
        (
            [e.message_id for e in envelopes],
            [e.routing_key for e in envelopes],
            [e.message_type for e in envelopes],
            [e.body for e in envelopes],
            [Jsonb(dict(e.headers)) for e in envelopes],
        ),
    )


async def _fetch_one(conn: psycopg.AsyncConnection[Any], query: str, params: Any) -> Any:
    async with conn.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchone()


async def _copy_tasks(conn: psycopg.AsyncConnection[Any], new: NewBatch, id_head: str) -> None:
    # COPY: 10,000 rows in tens of milliseconds, where one INSERT per row takes seconds. The rows
    # are written as COPY text from parts computed once per batch and per priced line, so a row
    # costs one string format in Python.
    batch = f"\t{new.id}\t{new.tenant_id}\t"
    queued = TaskStatus.QUEUED.value
    tails = {
        key: f"\t{_copy_text(line.model)}\t{line.unit_price}\t{line.duration_seconds}\t{queued}\n"
        for key, line in new.prices.items()
    }
    async with conn.cursor() as cursor, cursor.copy(_COPY_TASKS) as copy:
        # In chunks: PostgreSQL stores one while the next is formatted (~10 ms of 10,000 rows).
        for start in range(0, len(new.items), _COPY_CHUNK_ROWS):
            chunk = new.items[start : start + _COPY_CHUNK_ROWS]
            await copy.write(
                "".join(
                    [
                        f"{id_head}{index:06x}{batch}{index}\t{_copy_text(item.prompt)}"
                        f"{tails[(item.model, item.duration_seconds)]}"
                        for index, item in enumerate(chunk, start)
                    ]
                )
            )


# The create path's idempotency lookup, on the autocommit reader (one round trip, no transaction).
_FIND_BY_REQUEST_ID = "SELECT * FROM batch.batches WHERE tenant_id = %s AND request_id = %s"
# Unfinished is `finished_at IS NULL`: reserving, queued and processing (a rejection finishes too).
_COUNT_OPEN_BATCHES = """
SELECT count(*) FROM (
    SELECT 1 FROM batch.batches WHERE tenant_id = %s AND finished_at IS NULL LIMIT %s
) AS open_batches"""


_UUID_ARRAY = ARRAY(PG_UUID(as_uuid=True))


def _uuids(values: Iterable[uuid.UUID]) -> BindParameter[Any]:
    # A single array parameter (= ANY(...)), not an IN list with one placeholder per id.
    ids: Any = list(values)
    return bindparam(None, ids, type_=_UUID_ARRAY)


def _seconds(value: float) -> BindParameter[timedelta]:
    return bindparam(None, timedelta(seconds=value), type_=Interval())


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def _batch_record(row: Any) -> BatchRecord:
    created_at = _utc(row.created_at)
    assert created_at is not None
    return BatchRecord(
        id=BatchId(row.id),
        tenant_id=TenantId(row.tenant_id),
        request_id=row.request_id,
        request_fingerprint=row.request_fingerprint,
        status=BatchStatus(row.status),
        total_count=row.total_count,
        required_credits=row.required_credits,
        cost_per_video=row.cost_per_video,
        available_snapshot=row.available_snapshot,
        frozen_credits=row.frozen_credits,
        rejected_required=row.rejected_required,
        rejected_available=row.rejected_available,
        cancel_requested=row.cancel_requested,
        settlement_status=SettlementStatus(row.settlement_status),
        webhook_url=row.webhook_url,
        created_at=created_at,
        queued_at=_utc(row.queued_at),
        finished_at=_utc(row.finished_at),
        settled_at=_utc(row.settled_at),
        deadline_at=_utc(row.deadline_at),
        cancel_reason=row.cancel_reason,
        retry_of=BatchId(row.retry_of) if row.retry_of is not None else None,
        rejection_reason=row.rejection_reason,
    )


def _cancel_reason(value: str | None) -> CancelReason | None:
    return CancelReason(value) if value else None


# Advisory lock keys: one per tenant for its dispatch window, one per model for its provider slots.
_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


async def _advisory_lock(conn: AsyncConnection, key: str) -> None:
    await conn.execute(_LOCK, {"key": key})


# The worker's hot statements, run on the psycopg connection (`_rows`): plain SQL, arrays sent in
# binary (psycopg's text format dumps arrays element by element in Python, several times slower).
# Claiming dispatch messages: claims run under the model's lock, so every statement they do not
# build is time the other workers do not wait.
_QUEUED_OF_DISPATCHES = """
WITH started AS (
    UPDATE batch.batches SET status = 'processing'
    WHERE id IN (
        SELECT id FROM batch.batches
        WHERE id = ANY(CAST(%(batch_ids)b AS uuid[])) AND status = 'queued'
        ORDER BY id
        FOR UPDATE
    )
)
SELECT id, batch_id, tenant_id, model, batch_index FROM batch.tasks
WHERE id = ANY(CAST(%(ids)b AS uuid[])) AND status = 'queued'
"""
# Outcomes whose claim still holds (a late result of a lost claim matches nothing); returns the
# columns of a TaskRecord only.
_WRITE_OUTCOMES = """
UPDATE batch.tasks AS t
SET status = o.status, attempts = o.attempts, failure_type = o.failure_type,
    error_message = o.error_message, video_url = o.video_url,
    finished_at = now(), lease_expires_at = NULL
FROM unnest(
    CAST(%(ids)b AS uuid[]), CAST(%(tokens)b AS uuid[]), CAST(%(statuses)b AS text[]),
    CAST(%(attempts)b AS int[]), CAST(%(failure_types)b AS text[]),
    CAST(%(messages)b AS text[]), CAST(%(urls)b AS text[])
) AS o(id, token, status, attempts, failure_type, error_message, video_url)
WHERE t.id = o.id AND t.claim_token = o.token AND t.status = 'running'
RETURNING t.id, t.batch_id, t.tenant_id, t.batch_index, t.prompt, t.model, t.unit_price,
    t.status, t.attempts, t.claims, t.failure_type, t.error_message, t.video_url,
    t.created_at, t.started_at, t.finished_at
"""
# The tenant's open batches that still have tasks to dispatch, locked unless someone else holds
# them, with their window counts, all from the batch rows (ADR-042): a batch's outstanding tasks
# (dispatched, not finished) are its total less its finished and undispatched ones, the tenant's
# are the sum over its open batches. Batches with nothing left to dispatch count only through
# that sum, so they are neither returned nor locked. At most as many batches as the tenant's
# window has free tasks are read (each one planned takes at least one), so a backlog of thousands
# of waiting batches costs nothing while the window is full.
_OPEN_WINDOWS = """
WITH tenant AS (
    SELECT coalesce(sum(total_count - succeeded_count - failed_count - cancelled_count
        - undispatched_count), 0) AS outstanding
    FROM batch.batches
    WHERE tenant_id = %(tenant_id)s AND finished_at IS NULL
)
SELECT b.id, least(b.undispatched_count, %(batch_window)s) AS undispatched,
    b.total_count - b.succeeded_count - b.failed_count - b.cancelled_count - b.undispatched_count
        AS outstanding,
    tenant.outstanding AS tenant_outstanding
FROM batch.batches AS b CROSS JOIN tenant
WHERE b.tenant_id = %(tenant_id)s AND b.finished_at IS NULL AND b.status IN ('queued', 'processing')
    AND NOT b.cancel_requested AND b.undispatched_count > 0
ORDER BY b.created_at, b.id
LIMIT (SELECT greatest(%(tenant_window)s - outstanding, 0) FROM tenant)
FOR UPDATE OF b SKIP LOCKED
"""
_RECORD_SETTLEMENTS = """
WITH pending AS (
    SELECT id FROM batch.batches
    WHERE id = ANY(CAST(%(ids)b AS uuid[])) AND settlement_status = 'pending'
    ORDER BY id
    FOR UPDATE
)
UPDATE batch.batches AS b SET settlement_status = v.status, settled_at = v.settled_at
FROM unnest(CAST(%(ids)b AS uuid[]), CAST(%(statuses)b AS text[]), CAST(%(settled_at)b AS timestamptz[]))
    AS v(id, status, settled_at)
WHERE b.id = v.id AND b.id IN (SELECT id FROM pending)
RETURNING b.id
"""
_WINDOW_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))"
# The next `n` undispatched tasks of each planned batch, in batch order, marked dispatched, and
# taken off their batches' undispatched counts (rows the top-up locked): one statement for the
# whole plan (a group of new batches plans one line each).
_DISPATCH_PLANNED = """
WITH picked AS (
    UPDATE batch.tasks AS t SET dispatched_at = now()
    WHERE t.id IN (
        SELECT picked.id
        FROM unnest(CAST(%(batch_ids)b AS uuid[]), CAST(%(counts)b AS int[])) AS p(batch_id, n)
        CROSS JOIN LATERAL (
            SELECT id FROM batch.tasks
            WHERE batch_id = p.batch_id AND dispatched_at IS NULL AND status = 'queued'
            ORDER BY batch_index
            LIMIT p.n
            FOR UPDATE SKIP LOCKED
        ) AS picked
    )
    RETURNING t.id, t.batch_id, t.batch_index
), counted AS (
    UPDATE batch.batches AS b
    SET undispatched_count = b.undispatched_count
        - (SELECT count(*) FROM picked WHERE picked.batch_id = b.id)
    WHERE b.id = ANY(CAST(%(batch_ids)b AS uuid[]))
)
SELECT id, batch_id, batch_index FROM picked
"""
_RENEW_LEASES = """
UPDATE batch.tasks SET lease_expires_at = clock_timestamp() + %(lease)s
WHERE id IN (
    SELECT id FROM batch.tasks
    WHERE claim_token = ANY(CAST(%(tokens)b AS uuid[])) AND status = 'running'
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""
# Those of the batches that still have a task queued or running.
_STILL_PENDING = """
SELECT b.id FROM unnest(CAST(%(ids)b AS uuid[])) AS b(id)
WHERE EXISTS (SELECT 1 FROM batch.tasks WHERE batch_id = b.id AND status IN ('queued', 'running'))
"""
# Running tasks of the model per tenant, and the tenants with dispatched tasks waiting for a slot.
_SLOT_USE = """
SELECT tenant_id, count(*) AS running, false AS waiting FROM batch.tasks
WHERE status = 'running' AND model = %(model)s GROUP BY tenant_id
UNION ALL
SELECT DISTINCT tenant_id, 0, true FROM batch.tasks
WHERE dispatched_at IS NOT NULL AND status = 'queued' AND model = %(model)s
"""
_RUNNING_BY_MODEL = """
SELECT model, count(*) FROM batch.tasks
WHERE status = 'running' AND model = ANY(%(models)s) GROUP BY model
"""
_CLAIM = """
UPDATE batch.tasks AS t
SET status = 'running', claim_token = gen_random_uuid(), claims = t.claims + 1,
    claimed_by = %(worker_id)s, lease_expires_at = clock_timestamp() + %(lease)s,
    started_at = coalesce(t.started_at, now())
WHERE t.id IN (
    SELECT id FROM batch.tasks
    WHERE id = ANY(CAST(%(ids)b AS uuid[])) AND status = 'queued'
    -- A row locked by a cancel in progress is looked at again on the next claim.
    FOR UPDATE SKIP LOCKED
)
RETURNING t.id, t.batch_id, t.tenant_id, t.batch_index, t.prompt, t.model, t.unit_price,
    t.claim_token, t.claims
"""


def _task_record(row: Any) -> TaskRecord:
    created_at = _utc(row.created_at)
    assert created_at is not None
    return TaskRecord(
        id=TaskId(row.id),
        batch_id=BatchId(row.batch_id),
        tenant_id=TenantId(row.tenant_id),
        batch_index=row.batch_index,
        prompt=row.prompt,
        model=row.model,
        unit_price=row.unit_price,
        status=TaskStatus(row.status),
        attempts=row.attempts,
        claims=row.claims,
        failure_type=row.failure_type,
        error_message=row.error_message,
        video_url=row.video_url,
        created_at=created_at,
        started_at=_utc(row.started_at),
        finished_at=_utc(row.finished_at),
    )


# --- hot reads: one statement each on the reader pool (no transaction, no SQLAlchemy layers) -----

_BATCH_COLUMNS = ", ".join(f"b.{column.name}" for column in batches.c)
# A page of tasks: the `TaskSummary` fields, converted by PostgreSQL (ids to text, times to
# microseconds since the epoch) so that each row loads into a TaskSummary as it is.
_TASK_SUMMARY_COLUMNS = """t.id::text, t.batch_id::text, t.batch_index, t.status, t.model, t.prompt,
    t.unit_price, t.video_url, t.error_message, t.failure_type, t.attempts,
    (extract(epoch FROM t.created_at) * 1000000)::bigint,
    (extract(epoch FROM t.finished_at) * 1000000)::bigint"""

# The batch row and its counters in one statement: the same sums as `_counts`, by FILTER.
# The batch row holds its counters (ADR-031): a poll of a 10,000-task batch reads one row.
_BATCH_VIEW = f"""
SELECT {_BATCH_COLUMNS},
    ARRAY(SELECT r.id FROM batch.batches AS r WHERE r.retry_of = b.id ORDER BY r.created_at, r.id)
        AS retries
FROM batch.batches AS b
WHERE b.id = %(batch_id)s"""

_IN_TENANT = " AND b.tenant_id = %(tenant_id)s"


@functools.cache
def _tasks_page_sql(in_tenant: bool, status: bool, failure_type: bool, after: bool) -> str:
    """The batch (in scope) joined to one page of its tasks: no row when the batch is not in scope,
    one row of NULL task columns when the page is empty."""
    filters = "".join(
        clause
        for wanted, clause in (
            (status, " AND t.status = %(status)s"),
            (failure_type, " AND t.failure_type = %(failure_type)s"),
            (after, " AND t.batch_index > %(after)s"),
        )
        if wanted
    )
    return f"""
SELECT {_TASK_SUMMARY_COLUMNS}
FROM batch.batches AS b
LEFT JOIN LATERAL (
    SELECT * FROM batch.tasks AS t
    WHERE t.batch_id = b.id{filters}
    ORDER BY t.batch_index
    LIMIT %(limit)s
) AS t ON true
WHERE b.id = %(batch_id)s{_IN_TENANT if in_tenant else ""}"""


def _task_summaries(cursor: Any) -> Callable[[Sequence[Any]], TaskSummary]:
    """A psycopg row factory: each row is a TaskSummary as it is."""
    return TaskSummary._make


def _task_counts(row: Any) -> TaskCounts:
    return TaskCounts(
        total=row.total_count,
        succeeded=row.succeeded_count,
        failed=row.failed_count,
        cancelled=row.cancelled_count,
        credits_spent=row.credits_spent,
        refunded_credits=row.refunded_credits,
    )


def _batch_view(row: Any) -> BatchView:
    retries = tuple(BatchId(retry) for retry in row.retries or ())
    return BatchView(_batch_record(row), _task_counts(row), retries)


_RETRY = batches.alias("retry")
# A batch's retries, oldest first, as a column of a query of `batches` (NULL when there are none).
_RETRIES_COLUMN = (
    select(func.array_agg(aggregate_order_by(_RETRY.c.id, _RETRY.c.created_at, _RETRY.c.id)))
    .where(_RETRY.c.retry_of == batches.c.id)
    .scalar_subquery()
    .label("retries")
)


def _queued_by_dispatch(
    dispatches: Sequence[tuple[BatchId, Sequence[TaskId]]], rows: Sequence[Any]
) -> list[list[Any]]:
    """Each dispatch message's still-queued task rows of its own batch (a task id repeated in two
    messages belongs to the first)."""
    queued = {row.id: row for row in rows}
    assigned: set[uuid.UUID] = set()
    by_dispatch: list[list[Any]] = []
    for batch_id, task_ids in dispatches:
        mine = [
            queued[task_id]
            for task_id in dict.fromkeys(task_ids)
            if task_id in queued and queued[task_id].batch_id == batch_id and task_id not in assigned
        ]
        assigned.update(row.id for row in mine)
        by_dispatch.append(mine)
    return by_dispatch


def _claimed_task(row: Any) -> ClaimedTask:
    return ClaimedTask(
        task_id=TaskId(row.id),
        batch_id=BatchId(row.batch_id),
        tenant_id=TenantId(row.tenant_id),
        batch_index=row.batch_index,
        prompt=row.prompt,
        model=row.model,
        unit_price=row.unit_price,
        claim_token=row.claim_token,
        claims=row.claims,
    )


class BatchRepository:
    """Batches, tasks and the batch outbox in PostgreSQL."""

    def __init__(
        self,
        database: Database,
        *,
        dispatch_chunk_size: int,
        batch_window_chunks: int = 4,
        tenant_window_chunks: int = 16,
    ) -> None:
        self._db = database
        self._chunk_size = dispatch_chunk_size
        self._batch_window_chunks = batch_window_chunks
        self._tenant_window_chunks = tenant_window_chunks

    # --- create and reserve -------------------------------------------------------------------

    async def insert_batch(self, new: NewBatch) -> tuple[BatchRecord, bool]:
        """Stores the batch and its tasks, or returns the batch already holding the request id
        or, for a retry, its source's place (ADR-048).

        Returns (batch, created). A concurrent insert of the same (tenant, request id), or of
        another retry of the same source, waits on the unique index until the first one commits,
        then finds that batch. Raw psycopg on the autocommit pool: a small batch is one statement,
        a large one (and any retry) a transaction with a COPY.
        """
        # A retry is stored alone, whatever its size: its conflict may be on its source's place.
        if len(new.items) <= SMALL_BATCH_MAX_ITEMS and new.retry_of is None:
            return (await self.insert_small_batches([new]))[0]
        if len(new.items) > _MAX_TASK_INDEX:
            raise ValueError(f"a batch holds at most {_MAX_TASK_INDEX} tasks")
        params = _batch_params(new)
        async with self._db.raw_connection() as conn:
            async with conn.transaction():
                inserted = await _fetch_one(conn, _INSERT_BATCH, params)
                if inserted is not None:
                    await _copy_tasks(conn, new, params["id_head"])
            if inserted is not None:
                return _batch_record(inserted), True
            existing = await _fetch_one(conn, _FIND_BY_REQUEST_ID, (new.tenant_id, new.request_id))
            if existing is None and new.retry_of is not None:
                existing = await _fetch_one(conn, _FIND_RETRY, (new.retry_of,))
        assert existing is not None, "the conflicting batch has committed"
        return _batch_record(existing), False

    async def insert_small_batches(self, group: Sequence[NewBatch]) -> list[tuple[BatchRecord, bool]]:
        """`insert_batch` of several batches of at most `SMALL_BATCH_MAX_ITEMS` items, in one
        statement (one round trip and one commit for the group), answered in order."""
        if any(len(new.items) > SMALL_BATCH_MAX_ITEMS for new in group):
            raise ValueError(f"a grouped insert holds batches of at most {SMALL_BATCH_MAX_ITEMS} items")
        if any(new.retry_of is not None for new in group):
            raise ValueError("a retry is stored alone (insert_batch), holding its source's place")
        if not group:
            return []
        params: dict[str, list[Any]] = {key: [] for key in (*_GROUP_BATCH_COLUMNS, *_GROUP_TASK_COLUMNS)}
        for new in group:
            batch = _batch_params(new)
            for key, value in _GROUP_BATCH_COLUMNS.items():
                params[key].append(batch[value])
            for index, item in enumerate(new.items):
                line = new.prices[(item.model, item.duration_seconds)]
                params["task_batch_ids"].append(new.id)
                params["id_heads"].append(batch["id_head"])
                params["indexes"].append(index)
                params["prompts"].append(item.prompt)
                params["models"].append(item.model)
                params["prices"].append(line.unit_price)
                params["durations"].append(line.duration_seconds)
        async with self._db.raw_connection() as conn:
            async with conn.cursor(row_factory=namedtuple_row) as cursor:
                await cursor.execute(_INSERT_BATCHES_WITH_TASKS, params)
                rows: list[Any] = await cursor.fetchall()
                inserted = {BatchId(row.id): _batch_record(row) for row in rows}
            existing: dict[tuple[TenantId, str | None], BatchRecord] = {}
            others = [new for new in group if new.id not in inserted]
            if others:
                async with conn.cursor(row_factory=namedtuple_row) as cursor:
                    await cursor.execute(
                        _FIND_BY_REQUEST_IDS,
                        {
                            "tenant_ids": [new.tenant_id for new in others],
                            "request_ids": [new.request_id for new in others],
                        },
                    )
                    found_rows: list[Any] = await cursor.fetchall()
                    for row in found_rows:
                        record = _batch_record(row)
                        existing[(record.tenant_id, record.request_id)] = record
        answers: list[tuple[BatchRecord, bool]] = []
        for new in group:
            if new.id in inserted:
                answers.append((inserted[new.id], True))
                continue
            found = existing.get((new.tenant_id, new.request_id))
            assert found is not None, "the conflicting batch has committed"
            answers.append((found, False))
        return answers

    async def find_by_request_id(self, tenant_id: TenantId, request_id: str) -> BatchRecord | None:
        """The batch a (tenant, request id) already created, if any."""
        async with self._db.raw_connection() as conn:
            row = await _fetch_one(conn, _FIND_BY_REQUEST_ID, (tenant_id, request_id))
        return _batch_record(row) if row is not None else None

    async def live_retry(self, source_id: BatchId) -> BatchRecord | None:
        """The retry holding the source batch's one place (ADR-048): any retry not rejected."""
        async with self._db.raw_connection() as conn:
            row = await _fetch_one(conn, _FIND_LIVE_RETRY, (source_id,))
        return _batch_record(row) if row is not None else None

    async def get_batch(self, batch_id: BatchId, tenant_id: TenantId | None = None) -> BatchRecord | None:
        """The batch, if it exists in the tenant's scope (None: admin scope)."""
        query = select(batches).where(batches.c.id == batch_id)
        if tenant_id is not None:
            query = query.where(batches.c.tenant_id == tenant_id)
        async with self._db.connection() as conn:
            row = (await conn.execute(query)).one_or_none()
        return _batch_record(row) if row is not None else None

    async def reservation_lines(self, batch_id: BatchId) -> list[QuoteLine]:
        """The quoted lines of a batch, rebuilt from its tasks (the recovery loop has no request)."""
        async with self._db.connection() as conn:
            rows = (
                await conn.execute(
                    select(
                        tasks.c.model, tasks.c.unit_price, tasks.c.duration_seconds, func.count().label("n")
                    )
                    .where(tasks.c.batch_id == batch_id)
                    .group_by(tasks.c.model, tasks.c.unit_price, tasks.c.duration_seconds)
                    .order_by(func.min(tasks.c.batch_index))
                )
            ).all()
        return [
            QuoteLine(
                model=row.model, count=row.n, unit_price=row.unit_price, duration_seconds=row.duration_seconds
            )
            for row in rows
        ]

    async def mark_queued(self, batch_id: BatchId, reservation: Reservation) -> BatchRecord | None:
        """reserving -> queued, announced (BatchesQueued) with (see `dispatches_when_queued`) the first
        dispatch window; None if not reserving.

        A batch cancelled while it was reserving has its tasks cancelled here instead of dispatched.
        """
        return (await self.mark_queued_many([(batch_id, reservation)]))[0]

    def dispatches_when_queued(self, batch: BatchRecord) -> bool:
        """Whether queueing the batch also dispatches its first window, in the same transaction.

        A batch that fits in one window does. A larger one gets its first window from
        `top_up_tenant` right after (ADR-039): marking 1,600 of 10,000 tasks dispatched costs
        ~55 ms that the create's answer need not wait for, and a crash in between leaves a queued
        batch that the recovery loop's top-up dispatches.
        """
        return batch.total_count <= self._batch_window_chunks * self._chunk_size

    async def top_up_tenant(self, tenant_id: TenantId) -> int:
        """Dispatches what fits in the tenant's windows now; returns how many tasks it dispatched."""
        async with self._db.connection() as conn:
            return await self._top_up_windows(conn, [tenant_id])

    async def mark_queued_many(
        self, reserved: Sequence[tuple[BatchId, Reservation]]
    ) -> list[BatchRecord | None]:
        """`mark_queued` of several batches in one transaction (the create path's group commit).

        One UPDATE for all of them, one window top-up per tenant (of the batches that
        `dispatches_when_queued`), and one BatchesQueued event for all of them and their first
        dispatch messages in one outbox insert. Answers in the order asked.
        """
        if not reserved:
            return []
        async with self._db.connection() as conn:
            # Statements on the driver connection (same transaction), without the SQLAlchemy layers.
            driver = await _driver(conn)
            ids = [batch_id for batch_id, _ in reserved]
            rows = await _rows(
                conn,
                _MARK_QUEUED,
                {
                    "ids": ids,
                    "frozen": [reservation.frozen_credits for _, reservation in reserved],
                    "available": [reservation.available_before for _, reservation in reserved],
                },
            )
            queued = {BatchId(row.id): _batch_record(row) for row in rows}
            in_order = [queued[batch_id] for batch_id in ids if batch_id in queued]
            outbox_events = [events.batches_queued(in_order)] if in_order else []
            dispatching = {
                batch.tenant_id
                for batch in in_order
                if not batch.cancel_requested and self.dispatches_when_queued(batch)
            }
            if dispatching:
                await self._top_up_windows(conn, dispatching, outbox_events=outbox_events)
            if outbox_events:
                await _insert_events(driver, outbox_events)
            for batch in in_order:
                if batch.cancel_requested:
                    await self._cancel_queued_tasks(conn, batch.id, _cancel_reason(batch.cancel_reason))
        return [queued.get(batch_id) for batch_id in ids]

    async def mark_rejected(
        self,
        batch_id: BatchId,
        reason: RejectionReason,
        required: int | None = None,
        available: int | None = None,
    ) -> BatchRecord | None:
        """reserving -> rejected for `reason` (with the credits billing compared, when it was
        short of them); its tasks are deleted, since a rejected batch never ran.

        Returns the rejected batch, or None if it was not reserving any more.
        """
        async with self._db.connection() as conn:
            rejected = (
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id, batches.c.status == BatchStatus.RESERVING.value)
                    .values(
                        status=BatchStatus.REJECTED.value,
                        # A rejected retry froze nothing: its source may be retried again.
                        retry_slot=None,
                        rejection_reason=reason.value,
                        rejected_required=required,
                        rejected_available=available,
                        finished_at=func.now(),
                    )
                    .returning(*batches.c)
                )
            ).one_or_none()
            if rejected is None:
                return None
            await conn.execute(delete(tasks).where(tasks.c.batch_id == batch_id))
            return _batch_record(rejected)

    async def reprice_reserving(
        self, batch_id: BatchId, stored: Sequence[QuoteLine], current: Sequence[QuoteLine]
    ) -> BatchRecord | None:
        """A reserving batch's tasks and total moved from its `stored` lines to billing's
        `current` ones (same order), in one transaction; nothing was frozen for it yet.

        Returns the repriced batch, or None if it was not reserving any more.
        """
        if len(stored) != len(current):
            raise ValueError("every stored line needs its current price")
        params = {
            "id": batch_id,
            "required": required_credits(current),
            "cost_per_video": common_unit_price(current),
            "models": [line.model for line in stored],
            "old_prices": [line.unit_price for line in stored],
            "old_durations": [line.duration_seconds for line in stored],
            "new_prices": [line.unit_price for line in current],
            "new_durations": [line.duration_seconds for line in current],
        }
        async with self._db.raw_connection() as conn, conn.transaction():
            repriced = await _fetch_one(conn, _REPRICE_BATCH, params)
            if repriced is None:
                return None
            # One UPDATE joins every task to its old line: lines can swap prices safely.
            await conn.execute(_REPRICE_TASKS, params)
        return _batch_record(repriced)

    async def stale_reserving_batches(self, older_than_seconds: float, limit: int) -> list[BatchId]:
        """Batches stuck in reserving (a crash or a billing outage interrupted their creation)."""
        async with self._db.connection() as conn:
            ids = (
                await conn.execute(
                    select(batches.c.id)
                    .where(
                        batches.c.status == BatchStatus.RESERVING.value,
                        batches.c.created_at < func.now() - _seconds(older_than_seconds),
                    )
                    .order_by(batches.c.created_at)
                    .limit(limit)
                )
            ).scalars()
            return [BatchId(i) for i in ids]

    # --- reads --------------------------------------------------------------------------------

    async def batch_view(self, batch_id: BatchId, tenant_id: TenantId | None) -> BatchView | None:
        """The batch and its derived counters (one statement: the row and its counts agree)."""
        query = _BATCH_VIEW if tenant_id is None else _BATCH_VIEW + _IN_TENANT
        async with self._db.raw_connection() as conn, conn.cursor(row_factory=namedtuple_row) as cursor:
            await cursor.execute(query, {"batch_id": batch_id, "tenant_id": tenant_id}, binary=True)
            row = await cursor.fetchone()
        return _batch_view(row) if row is not None else None

    async def count_open_batches(self, tenant_id: TenantId, limit: int) -> int:
        """How many of the tenant's batches are unfinished, counted up to `limit` (an index range
        of `ix_batches_open_by_tenant`, however many batches the tenant has)."""
        async with self._db.raw_connection() as conn:
            row = await _fetch_one(conn, _COUNT_OPEN_BATCHES, (tenant_id, limit))
        return int(row[0])

    async def list_batches(
        self,
        tenant_id: TenantId | None,
        status: str,
        after: BatchCursor | None,
        limit: int,
        *,
        settlement_status: str = "",
        created_from: datetime | None = None,
        created_to: datetime | None = None,
    ) -> list[BatchView]:
        """Newest first; at most `limit` batches after the cursor, filtered by whatever is set."""
        query = select(batches, _RETRIES_COLUMN)
        if tenant_id is not None:
            query = query.where(batches.c.tenant_id == tenant_id)
        if status:
            query = query.where(batches.c.status == status)
        if settlement_status:
            query = query.where(batches.c.settlement_status == settlement_status)
        if created_from is not None:
            query = query.where(batches.c.created_at >= created_from)
        if created_to is not None:
            query = query.where(batches.c.created_at < created_to)
        if after is not None:
            query = query.where(
                func.row(batches.c.created_at, batches.c.id) < func.row(after.created_at, after.batch_id)
            )
        query = query.order_by(batches.c.created_at.desc(), batches.c.id.desc()).limit(limit)
        async with self._db.connection() as conn:
            return [_batch_view(row) for row in (await conn.execute(query)).all()]

    async def list_tasks(
        self,
        batch_id: BatchId,
        tenant_id: TenantId | None,
        status: TaskStatus | None,
        after_index: int | None,
        limit: int,
        *,
        failure_type: FailureType | None = None,
    ) -> list[TaskSummary] | None:
        """Tasks in batch order, after the cursor; None when the batch is not in the tenant's scope
        (None: admin scope). One statement answers both."""
        query = _tasks_page_sql(
            tenant_id is not None, status is not None, failure_type is not None, after_index is not None
        )
        params = {
            "batch_id": batch_id,
            "tenant_id": tenant_id,
            "status": status.value if status is not None else None,
            "failure_type": failure_type.value if failure_type is not None else None,
            "after": after_index,
            "limit": limit,
        }
        async with self._db.raw_connection() as conn, conn.cursor(row_factory=_task_summaries) as cursor:
            # Binary results: numbers load without parsing text.
            await cursor.execute(query, params, binary=True)
            rows = await cursor.fetchall()
        if not rows:
            return None
        # An empty page is the batch's row joined to no task.
        return [row for row in rows if row.id is not None]

    async def batch_breakdown(self, batch_id: BatchId, tenant_id: TenantId | None) -> BatchBreakdown | None:
        """The batch's tasks grouped by (status, failure_type, model), with its timing."""
        query = select(batches).where(batches.c.id == batch_id)
        if tenant_id is not None:
            query = query.where(batches.c.tenant_id == tenant_id)
        async with self._db.connection() as conn:
            row = (await conn.execute(query)).one_or_none()
            if row is None:
                return None
            batch = _batch_record(row)
            groups = (
                await conn.execute(
                    select(
                        tasks.c.status,
                        tasks.c.failure_type,
                        tasks.c.model,
                        func.count().label("n"),
                        func.coalesce(func.sum(tasks.c.unit_price), 0).label("credits"),
                        func.coalesce(func.sum(tasks.c.attempts), 0).label("attempts"),
                        func.min(tasks.c.started_at).label("first_started_at"),
                    )
                    .where(tasks.c.batch_id == batch_id)
                    .group_by(tasks.c.status, tasks.c.failure_type, tasks.c.model)
                    .order_by(tasks.c.status, tasks.c.failure_type, tasks.c.model)
                )
            ).all()
        starts = [_utc(group.first_started_at) for group in groups if group.first_started_at is not None]
        return BatchBreakdown(
            batch_id=batch.id,
            groups=tuple(
                OutcomeGroup(
                    status=group.status,
                    failure_type=group.failure_type,
                    model=group.model,
                    count=int(group.n),
                    credits=int(group.credits),
                )
                for group in groups
            ),
            created_at=batch.created_at,
            queued_at=_utc(row.queued_at),
            first_started_at=min((s for s in starts if s is not None), default=None),
            finished_at=batch.finished_at,
            settled_at=_utc(row.settled_at),
            total_attempts=sum(int(group.attempts) for group in groups),
        )

    async def batch_totals(self, after: BatchId | None, limit: int) -> list[BatchTotals]:
        """Per-batch outcome totals in batch id order (every tenant)."""
        terminal = [status.value for status in TaskStatus if status.value not in _PENDING]
        refundable = [TaskStatus.FAILED.value, TaskStatus.CANCELLED.value]
        page = select(batches).order_by(batches.c.id).limit(limit)
        if after is not None:
            page = page.where(batches.c.id > after)
        chosen = page.subquery()
        query = (
            select(
                chosen.c.id,
                chosen.c.tenant_id,
                chosen.c.status,
                chosen.c.settlement_status,
                chosen.c.total_count,
                chosen.c.frozen_credits,
                func.count(tasks.c.id).filter(tasks.c.status.in_(terminal)).label("terminal"),
                func.coalesce(
                    func.sum(tasks.c.unit_price).filter(tasks.c.status == TaskStatus.SUCCEEDED.value), 0
                ).label("succeeded"),
                func.coalesce(func.sum(tasks.c.unit_price).filter(tasks.c.status.in_(refundable)), 0).label(
                    "refundable"
                ),
            )
            .select_from(chosen.outerjoin(tasks, tasks.c.batch_id == chosen.c.id))
            .group_by(
                chosen.c.id,
                chosen.c.tenant_id,
                chosen.c.status,
                chosen.c.settlement_status,
                chosen.c.total_count,
                chosen.c.frozen_credits,
            )
            .order_by(chosen.c.id)
        )
        async with self._db.connection() as conn:
            rows = (await conn.execute(query)).all()
        return [
            BatchTotals(
                batch_id=BatchId(row.id),
                tenant_id=TenantId(row.tenant_id),
                status=row.status,
                settlement_status=row.settlement_status,
                total_count=row.total_count,
                frozen_credits=row.frozen_credits,
                terminal_count=int(row.terminal),
                succeeded_credits=int(row.succeeded),
                refundable_credits=int(row.refundable),
            )
            for row in rows
        ]

    # --- cancel -------------------------------------------------------------------------------

    async def cancel_batch(self, batch_id: BatchId, tenant_id: TenantId | None) -> bool:
        """Cancels the tasks not yet started; False when the batch is not in the tenant's scope."""
        query = select(batches).where(batches.c.id == batch_id).with_for_update()
        if tenant_id is not None:
            query = query.where(batches.c.tenant_id == tenant_id)
        async with self._db.connection() as conn:
            row = (await conn.execute(query)).one_or_none()
            if row is None:
                return False
            batch = _batch_record(row)
            if batch.finished_at is not None or batch.status is BatchStatus.REJECTED:
                return True
            await self._request_cancel(conn, batch, CancelReason.CUSTOMER)
            return True

    async def _request_cancel(self, conn: AsyncConnection, batch: BatchRecord, reason: CancelReason) -> None:
        # The first reason sticks: a customer cancel after the deadline fired changes nothing.
        reason = _cancel_reason(batch.cancel_reason) or reason
        await conn.execute(
            update(batches)
            .where(batches.c.id == batch.id)
            .values(cancel_requested=True, cancel_reason=reason.value)
        )
        if batch.status is not BatchStatus.RESERVING:
            # A reserving batch is cancelled when its reservation completes (mark_queued). Running
            # tasks are stopped by their workers, which watch cancel_requested.
            await self._cancel_queued_tasks(conn, batch.id, reason)

    async def _cancel_queued_tasks(
        self, conn: AsyncConnection, batch_id: BatchId, reason: CancelReason | None
    ) -> None:
        rows = (
            await conn.execute(
                update(tasks)
                .where(tasks.c.batch_id == batch_id, tasks.c.status == TaskStatus.QUEUED.value)
                .values(
                    status=TaskStatus.CANCELLED.value,
                    failure_type=FailureType.CANCELLED.value,
                    error_message=cancelled_task_message(reason, started=False),
                    finished_at=func.now(),
                )
                .returning(*tasks.c)
            )
        ).all()
        cancelled = [_task_record(row) for row in rows]
        # The one place tasks finish without having been dispatched: their batch's undispatched
        # count (ADR-042) drops with them, or they would be taken off its outstanding tasks twice
        # (as finished and as undispatched) and the tenant's window would admit that many more.
        never_dispatched = sum(1 for row in rows if row.dispatched_at is None)
        if never_dispatched:
            await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(undispatched_count=batches.c.undispatched_count - never_dispatched)
            )
        await _count_outcomes(conn, cancelled)
        await add_events(conn, outbox, events.task_outcomes(cancelled))
        await self._finish_batches(conn, [batch_id])

    # --- execution ----------------------------------------------------------------------------

    async def claim_tasks(
        self,
        batch_id: BatchId,
        task_ids: Sequence[TaskId],
        lease_seconds: float,
        *,
        slot_limits: Mapping[str, int] | None = None,
        worker_id: str | None = None,
    ) -> ClaimResult:
        """queued -> running for those of `task_ids` still queued that have a provider slot.

        One dispatch message's claim; see `claim_dispatches`.
        """
        return (
            await self.claim_dispatches(
                [(batch_id, task_ids)], lease_seconds, slot_limits=slot_limits, worker_id=worker_id
            )
        )[0]

    async def claim_dispatches(
        self,
        dispatches: Sequence[tuple[BatchId, Sequence[TaskId]]],
        lease_seconds: float,
        *,
        slot_limits: Mapping[str, int] | None = None,
        worker_id: str | None = None,
    ) -> list[ClaimResult]:
        """Claims the tasks of several dispatch messages in one transaction; one result each.

        queued -> running for those of each message's task ids (of its batch) still queued that
        have a provider slot. Each model has `slot_limits[model]` slots shared by every worker:
        the running tasks of the model are counted under a per-model transaction advisory lock, so
        two workers can never both take the last slot; the messages get their slots in turn
        (`allot_slots`). The lock serialises every claim of the model, so under it there are only
        one count, one claiming UPDATE and the commit. Claimed tasks get a fresh claim token and
        `claimed_by`.
        """
        wanted_ids = {task_id for _, task_ids in dispatches for task_id in task_ids}
        if not wanted_ids:
            return [ClaimResult([]) for _ in dispatches]
        limits = slot_limits or {}
        batch_ids = sorted({batch_id for batch_id, _ in dispatches})
        async with self._db.connection() as conn:
            # The batch rows first (queued -> processing, in the same statement), as CancelBatch
            # locks them: the same lock order on both paths.
            found = await _rows(
                conn, _QUEUED_OF_DISPATCHES, {"batch_ids": batch_ids, "ids": list(wanted_ids)}
            )
            queued_rows = _queued_by_dispatch(dispatches, found)
            chosen: list[uuid.UUID] = []
            for model in sorted({row.model for rows in queued_rows for row in rows}):
                wanted = [
                    sorted((row for row in rows if row.model == model), key=lambda row: row.batch_index)
                    for rows in queued_rows
                ]
                wanted = [rows for rows in wanted if rows]
                limit = limits.get(model)
                if limit is None:
                    granted = [len(rows) for rows in wanted]
                else:
                    running, waiting = await self._slot_usage(conn, model)
                    granted = allot_slots(
                        limit=limit,
                        running=running,
                        waiting=waiting,
                        wanted=[(TenantId(rows[0].tenant_id), len(rows)) for rows in wanted],
                    )
                chosen += [
                    row.id for rows, count in zip(wanted, granted, strict=True) for row in rows[:count]
                ]
            claimed_rows = (
                await _rows(
                    conn,
                    _CLAIM,
                    {"ids": chosen, "worker_id": worker_id, "lease": timedelta(seconds=lease_seconds)},
                )
                if chosen
                else []
            )
        claimed = {row.id: _claimed_task(row) for row in claimed_rows}
        return [
            ClaimResult(
                sorted(
                    (claimed[row.id] for row in rows if row.id in claimed), key=lambda task: task.batch_index
                ),
                [TaskId(row.id) for row in rows if row.id not in claimed],
                frozenset(row.model for row in rows if row.id not in claimed),
            )
            for rows in queued_rows
        ]

    async def models_at_limit(self, slot_limits: Mapping[str, int]) -> set[str]:
        """Those of the models whose running tasks fill their slot limit, by one unlocked count.

        A hint, not a decision: a slot freed just after the count is found by the next claim.
        """
        if not slot_limits:
            return set()
        async with self._db.raw_connection() as conn:
            rows = await (await conn.execute(_RUNNING_BY_MODEL, {"models": list(slot_limits)})).fetchall()
        return {model for model, running in rows if running >= slot_limits[model]}

    async def _slot_usage(
        self, conn: AsyncConnection, model: str
    ) -> tuple[dict[TenantId, int], set[TenantId]]:
        """Takes the model's slot lock (until commit); running tasks per tenant, waiting tenants."""
        await _advisory_lock(conn, f"batch.slots:{model}")
        running: dict[TenantId, int] = {}
        waiting: set[TenantId] = set()
        for row in await _rows(conn, _SLOT_USE, {"model": model}):
            if row.waiting:
                waiting.add(TenantId(row.tenant_id))
            else:
                running[TenantId(row.tenant_id)] = int(row.running)
        return running, waiting

    async def renew_leases(self, claim_tokens: Sequence[uuid.UUID], lease_seconds: float) -> int:
        """Extends the leases of tasks this worker still holds; returns how many it renewed.

        A task whose row is locked is skipped: its outcome is being written (the lease no longer
        matters), or it is renewed by the next round, two more of which come before it expires.
        Waiting instead would deadlock with the outcome write, which locks the same rows in
        another order.
        """
        if not claim_tokens:
            return 0
        async with self._db.connection() as conn:
            renewed = await _rows(
                conn,
                _RENEW_LEASES,
                {"tokens": list(claim_tokens), "lease": timedelta(seconds=lease_seconds)},
            )
            return len(renewed)

    async def cancelled_batches(self, batch_ids: Iterable[BatchId]) -> dict[BatchId, CancelReason | None]:
        """Those of the batches whose cancel was requested, with the reason (customer or deadline)."""
        ids = set(batch_ids)
        if not ids:
            return {}
        async with self._db.connection() as conn:
            rows = (
                await conn.execute(
                    select(batches.c.id, batches.c.cancel_reason).where(
                        batches.c.id == any_(_uuids(ids)), batches.c.cancel_requested
                    )
                )
            ).all()
            return {BatchId(row.id): _cancel_reason(row.cancel_reason) for row in rows}

    async def write_outcomes(self, outcomes: Sequence[TaskOutcome]) -> int:
        """Writes outcomes whose claim still holds, their events, and the finish check.

        A late result of a task whose lease expired and was claimed again (or failed by recovery)
        no longer matches its claim token and is discarded. Returns how many were written.
        """
        if not outcomes:
            return 0
        async with self._db.connection() as conn:
            rows = await _rows(
                conn,
                _WRITE_OUTCOMES,
                {
                    "ids": [o.task_id for o in outcomes],
                    "tokens": [o.claim_token for o in outcomes],
                    "statuses": [o.status.value for o in outcomes],
                    "attempts": [o.attempts for o in outcomes],
                    "failure_types": [o.failure_type.value if o.failure_type else None for o in outcomes],
                    "messages": [o.error_message for o in outcomes],
                    "urls": [o.video_url for o in outcomes],
                },
            )
            written = [_task_record(row) for row in rows]
            await _count_outcomes(conn, written)
            # Outcomes, BatchFinished and the next dispatches reach the outbox in one statement.
            emitted = events.task_outcomes(written)
            # The top-up first: it locks the open batch rows of the tenants (skipping those held
            # by others), which spares the finish check its own locking statement.
            held: set[BatchId] = set()
            await self._top_up_windows(
                conn, {task.tenant_id for task in written}, outbox_events=emitted, locked=held
            )
            await self._finish_batches(
                conn, {task.batch_id for task in written}, outbox_events=emitted, held=held
            )
            await add_events(conn, outbox, emitted)
        batch_metrics.tasks_finished(written)
        return len(written)

    # --- dispatch windows ---------------------------------------------------------------------

    async def _top_up_windows(
        self,
        conn: AsyncConnection,
        tenant_ids: Iterable[TenantId],
        *,
        outbox_events: list[Envelope] | None = None,
        locked: set[BatchId] | None = None,
    ) -> int:
        """Dispatches the next chunks of the tenants' batches, as far as their windows allow.

        Under a per-tenant advisory lock (taken in ascending order) so two writers cannot both
        fill the same free space. Batches locked by someone else (a cancel, a claim) are skipped:
        the next outcome or the recovery loop tops them up. Returns how many tasks were dispatched.
        The dispatch messages go to the outbox, or onto `outbox_events` (see `_finish_batches`);
        the ids of the batch rows this locked are added to `locked`.
        """
        dispatched = 0
        batch_window = self._batch_window_chunks * self._chunk_size
        for tenant_id in sorted(set(tenant_ids)):
            await _rows(conn, _WINDOW_LOCK, {"key": f"batch.window:{tenant_id}"})
            # The tenant's batches that can still take a chunk, with their counts, in one round
            # trip: undispatched tasks (at most one window), dispatched unfinished ones, and the
            # tenant's total of those.
            open_rows = await _rows(
                conn,
                _OPEN_WINDOWS,
                {
                    "tenant_id": tenant_id,
                    "batch_window": batch_window,
                    "tenant_window": self._tenant_window_chunks * self._chunk_size,
                },
            )
            if locked is not None:
                locked.update(BatchId(row.id) for row in open_rows)
            states = [
                WindowState(BatchId(row.id), int(row.outstanding), int(row.undispatched)) for row in open_rows
            ]
            # Batches skipped as locked, or with nothing left to dispatch, still count against
            # the tenant's window.
            outstanding_elsewhere = (
                int(open_rows[0].tenant_outstanding) - sum(state.outstanding for state in states)
                if open_rows
                else 0
            )
            if outstanding_elsewhere > 0:
                states.append(WindowState(BatchId(uuid.UUID(int=0)), outstanding_elsewhere, 0))
            plan = plan_dispatch(
                states,
                chunk_size=self._chunk_size,
                batch_window_chunks=self._batch_window_chunks,
                tenant_window_chunks=self._tenant_window_chunks,
            )
            envelopes: list[Envelope] = []
            if plan:
                picked = await _rows(
                    conn,
                    _DISPATCH_PLANNED,
                    {"batch_ids": list(plan), "counts": list(plan.values())},
                )
                by_batch: dict[BatchId, list[Any]] = defaultdict(list)
                for row in picked:
                    by_batch[BatchId(row.batch_id)].append(row)
                for batch_id in plan:
                    ordered = [
                        TaskId(row.id) for row in sorted(by_batch[batch_id], key=lambda row: row.batch_index)
                    ]
                    envelopes += events.task_dispatches(batch_id, tenant_id, ordered, self._chunk_size)
                    dispatched += len(ordered)
            if outbox_events is None:
                await add_events(conn, outbox, envelopes)
            else:
                outbox_events += envelopes
        return dispatched

    async def top_up_windows(self, limit: int) -> int:
        """Safety net: dispatches what fits in the windows of tenants with undispatched tasks."""
        async with self._db.connection() as conn:
            tenant_ids = (
                (
                    await conn.execute(
                        select(batches.c.tenant_id)
                        .where(
                            batches.c.finished_at.is_(None),
                            batches.c.status.in_([BatchStatus.QUEUED.value, BatchStatus.PROCESSING.value]),
                            ~batches.c.cancel_requested,
                            batches.c.undispatched_count > 0,
                        )
                        .distinct()
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
            return await self._top_up_windows(conn, [TenantId(t) for t in tenant_ids])

    # --- deadlines and retries ----------------------------------------------------------------

    async def expire_deadlines(self, limit: int) -> int:
        """Cancels the batches whose deadline passed (workers stop their running tasks)."""
        async with self._db.connection() as conn:
            rows = (
                await conn.execute(
                    select(batches)
                    .where(
                        batches.c.finished_at.is_(None),
                        batches.c.deadline_at.is_not(None),
                        ~batches.c.cancel_requested,
                        batches.c.deadline_at < func.now(),
                        batches.c.status != BatchStatus.REJECTED.value,
                    )
                    .order_by(batches.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                await self._request_cancel(conn, _batch_record(row), CancelReason.DEADLINE)
        return len(rows)

    async def failed_items(
        self, batch_id: BatchId, failure_types: AbstractSet[FailureType]
    ) -> list[BatchItem]:
        """The items of the batch's tasks that failed in one of these ways, in batch order."""
        async with self._db.connection() as conn:
            rows = (
                await conn.execute(
                    select(tasks.c.prompt, tasks.c.model, tasks.c.duration_seconds)
                    .where(
                        tasks.c.batch_id == batch_id,
                        tasks.c.status == TaskStatus.FAILED.value,
                        tasks.c.failure_type.in_(sorted(failure_types)),
                    )
                    .order_by(tasks.c.batch_index)
                )
            ).all()
        return [
            BatchItem(prompt=row.prompt, model=row.model, duration_seconds=row.duration_seconds)
            for row in rows
        ]

    # --- finishing and recovery ---------------------------------------------------------------

    async def _finish_batches(
        self,
        conn: AsyncConnection,
        batch_ids: Iterable[BatchId],
        *,
        outbox_events: list[Envelope] | None = None,
        held: AbstractSet[BatchId] = frozenset(),
    ) -> None:
        """Finishes those of the batches whose tasks are all terminal, with a BatchFinished event.

        The row lock (ascending ids, so two writers never deadlock) is what stops two workers that
        finish the last two tasks of a batch from both missing the end: the second to lock sees
        the first one's committed task. Rows in `held` are already locked by this transaction (by
        the window top-up of an outcome write, which ran first). The events go to the outbox, or
        onto `outbox_events` for a caller that writes all of its events in one statement.
        """
        ids = sorted(set(batch_ids))
        if not ids:
            return
        to_lock = [batch_id for batch_id in ids if batch_id not in held]
        locked_rows = (
            (
                await conn.execute(
                    select(batches)
                    .where(batches.c.id == any_(_uuids(to_lock)), batches.c.finished_at.is_(None))
                    .order_by(batches.c.id)
                    .with_for_update()
                )
            ).all()
            if to_lock
            else []
        )
        candidates = [batch_id for batch_id in ids if batch_id in held] + [row.id for row in locked_rows]
        if not candidates:
            return
        # One index probe per batch (EXISTS), not a scan of its thousands of pending tasks; a fresh
        # snapshot, taken once every row above is locked.
        still_pending = {row.id for row in await _rows(conn, _STILL_PENDING, {"ids": candidates})}
        ending = [batch_id for batch_id in candidates if batch_id not in still_pending]
        if not ending:
            return
        ending_rows = [row for row in locked_rows if row.id in ending]
        held_ending = [batch_id for batch_id in ending if batch_id in held]
        if held_ending:
            ending_rows += (
                await conn.execute(select(batches).where(batches.c.id == any_(_uuids(held_ending))))
            ).all()
        done = [_batch_record(row) for row in ending_rows]
        counts = {BatchId(row.id): _task_counts(row) for row in ending_rows}
        finished: list[Envelope] = []
        for batch in done:
            status = final_status(counts[batch.id], batch.cancel_requested)
            finished_at: datetime = (
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch.id)
                    .values(status=status.value, finished_at=func.now())
                    .returning(batches.c.finished_at)
                )
            ).scalar_one()
            finished.append(
                events.batch_finished(
                    batch.id, batch.tenant_id, status, counts[batch.id], finished_at.astimezone(UTC)
                )
            )
            # Counted here, by whichever path finishes the batch (a rare rollback over-counts).
            batch_metrics.batch_reached(status)
        if outbox_events is None:
            await add_events(conn, outbox, finished)
        else:
            outbox_events += finished

    async def recover_expired_leases(self, limit: int) -> tuple[int, int]:
        """Tasks whose worker vanished: dispatched again, or failed after MAX_TASK_CLAIMS claims.

        Returns (requeued, failed).
        """
        async with self._db.connection() as conn:
            expired = (
                await conn.execute(
                    select(tasks.c.id, tasks.c.claims)
                    .where(
                        tasks.c.status == TaskStatus.RUNNING.value,
                        tasks.c.lease_expires_at < func.clock_timestamp(),
                    )
                    .order_by(tasks.c.lease_expires_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not expired:
                return 0, 0
            lost = [row.id for row in expired if row.claims >= MAX_TASK_CLAIMS]
            retry = [row.id for row in expired if row.claims < MAX_TASK_CLAIMS]
            failed_rows: Sequence[Any] = []
            if lost:
                failed_rows = (
                    await conn.execute(
                        update(tasks)
                        .where(tasks.c.id == any_(_uuids(lost)))
                        .values(
                            status=TaskStatus.FAILED.value,
                            failure_type=FailureType.INTERNAL.value,
                            error_message=LOST_TASK_MESSAGE,
                            finished_at=func.now(),
                            lease_expires_at=None,
                        )
                        .returning(*tasks.c)
                    )
                ).all()
                failed_tasks = [_task_record(row) for row in failed_rows]
                await _count_outcomes(conn, failed_tasks)
                await add_events(conn, outbox, events.task_outcomes(failed_tasks))
            requeued_rows: Sequence[Any] = []
            if retry:
                requeued_rows = (
                    await conn.execute(
                        update(tasks)
                        .where(tasks.c.id == any_(_uuids(retry)))
                        .values(status=TaskStatus.QUEUED.value, claim_token=None, lease_expires_at=None)
                        .returning(tasks.c.id, tasks.c.batch_id, tasks.c.tenant_id, tasks.c.batch_index)
                    )
                ).all()
                by_batch: dict[tuple[BatchId, TenantId], list[tuple[int, TaskId]]] = defaultdict(list)
                for row in requeued_rows:
                    by_batch[(BatchId(row.batch_id), TenantId(row.tenant_id))].append(
                        (row.batch_index, TaskId(row.id))
                    )
                dispatches: list[Envelope] = []
                for (batch_id, tenant_id), indexed in by_batch.items():
                    ordered = [task_id for _, task_id in sorted(indexed)]
                    dispatches += events.task_dispatches(batch_id, tenant_id, ordered, self._chunk_size)
                await add_events(conn, outbox, dispatches)
            await self._finish_batches(conn, {BatchId(row.batch_id) for row in failed_rows})
        return len(requeued_rows), len(failed_rows)

    async def finish_forgotten_batches(self, limit: int) -> int:
        """Safety net: batches whose tasks are all terminal but that were never finished."""
        pending_task = exists().where(tasks.c.batch_id == batches.c.id, tasks.c.status.in_(_PENDING))
        async with self._db.connection() as conn:
            ids = list(
                (
                    await conn.execute(
                        select(batches.c.id)
                        .where(
                            batches.c.status.in_([BatchStatus.QUEUED.value, BatchStatus.PROCESSING.value]),
                            batches.c.finished_at.is_(None),
                            ~pending_task,
                        )
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                ).scalars()
            )
            await self._finish_batches(conn, [BatchId(i) for i in ids])
        return len(ids)

    # --- settlement ---------------------------------------------------------------------------

    async def record_settlements(self, settlements: Sequence[Settlement]) -> int:
        """Marks batches settled or refunded, once; returns how many changed.

        One statement for the whole chunk (the first settlement of a batch counts), the rows
        locked in id order.
        """
        first: dict[BatchId, Settlement] = {}
        for settlement in settlements:
            first.setdefault(settlement.batch_id, settlement)
        if not first:
            return 0
        ordered = sorted(first)
        async with self._db.connection() as conn:
            rows = await _rows(
                conn,
                _RECORD_SETTLEMENTS,
                {
                    "ids": ordered,
                    "statuses": [first[batch_id].status.value for batch_id in ordered],
                    "settled_at": [first[batch_id].settled_at for batch_id in ordered],
                },
            )
        return len(rows)
