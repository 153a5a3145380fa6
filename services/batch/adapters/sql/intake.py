"""Intake: a new batch and its tasks stored (one grouped statement, or a COPY), the idempotency
lookups by request id, a retry's one place per source batch (ADR-048), and the re-pricing of a
batch still reserving.

SQL style: plain SQL run by psycopg on the autocommit pool (`Database.raw_connection`).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import orjson
import psycopg
from psycopg.rows import namedtuple_row

from libs.db import Database
from services.batch.adapters.sql import records
from services.batch.adapters.sql.generation_json import settings_json
from services.batch.adapters.sql.statements import fetch_one
from services.batch.domain.batch import (
    BatchId,
    BatchItem,
    BatchRecord,
    Metadata,
    NewBatch,
    QuoteLine,
    TaskStatus,
    TenantId,
    common_unit_price,
    required_credits,
)
from services.batch.domain.errors import TooManyOpenBatches
from services.batch.domain.generation import NO_SETTINGS, GenerationSettings

_COPY_TASKS = (
    "COPY batch.tasks (id, batch_id, tenant_id, batch_index, prompt, model, unit_price, duration_seconds,"
    " status, price_options, settings, custom_id, metadata) FROM STDIN"
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
    "names": "name",
    "batch_metadata": "metadata",
    "open_limits": "open_limit",
}
_GROUP_TASK_COLUMNS = (
    "task_batch_ids",
    "id_heads",
    "indexes",
    "prompts",
    "models",
    "prices",
    "durations",
    "options",
    "settings",
    "custom_ids",
    "item_metadata",
)
# A retry takes its source's one place (`retry_slot`, ADR-048): a conflict on it, as on the
# request id, inserts nothing, and the batch already holding the key is looked up instead.
# A batch over its tenant's open-batch limit (`open_limit` > 0) inserts nothing either: the caller
# took the tenant's open-batch lock first (`_LOCK_OPEN_BATCHES`), so the count sees every create
# that committed before it, on every replica.
_INSERT_BATCH = """
INSERT INTO batch.batches (id, tenant_id, request_id, request_fingerprint, status, total_count,
    undispatched_count, required_credits, cost_per_video, webhook_url, deadline_at, retry_of,
    retry_slot, name, metadata)
SELECT %(id)s, %(tenant_id)s, %(request_id)s, %(fingerprint)s, 'reserving', %(total)s, %(total)s,
    %(required)s, %(cost_per_video)s, %(webhook_url)s, now() + %(deadline)s::int * interval '1 second',
    %(retry_of)s, %(retry_of)s, %(name)s, %(metadata)s::jsonb
WHERE %(open_limit)s::int = 0 OR (
    SELECT count(*) FROM (
        SELECT 1 FROM batch.batches
        WHERE tenant_id = %(tenant_id)s AND finished_at IS NULL LIMIT %(open_limit)s::int
    ) AS open_batches
) < %(open_limit)s::int
ON CONFLICT DO NOTHING
RETURNING *"""
# The open-batch lock of each tenant whose creates are limited, in one order (no deadlock between
# two groups of creates): held until commit, it makes "count the open batches, then insert one"
# atomic across every batch replica (ADR-138). Finishing a batch takes no such lock: it only
# lowers the count, so a concurrent finish can at worst refuse a create that would have fit.
_LOCK_OPEN_BATCHES = """
SELECT pg_advisory_xact_lock(hashtextextended('batch.open_batches:' || t::text, 0))
FROM unnest(CAST(%(tenant_ids)s AS uuid[])) AS t ORDER BY t"""
# The retry holding a batch's place; else (it was rejected meanwhile) the batch's latest retry.
_FIND_RETRY = """
SELECT * FROM batch.batches WHERE retry_of = %s
ORDER BY retry_slot IS NULL, created_at DESC, id DESC
LIMIT 1"""
_FIND_LIVE_RETRY = "SELECT * FROM batch.batches WHERE retry_slot = %s"
# Several small batches and all their tasks in one statement (the create path's group commit).
# A request id repeated within the group or already stored inserts nothing (DO NOTHING also
# skips the second of two rows of one statement); those batches are looked up afterwards.
# A batch with an open-batch limit is inserted only while its tenant's unfinished batches, plus
# those of the tenant before it in the group, stay under the limit (the caller holds the tenants'
# open-batch locks, `_LOCK_OPEN_BATCHES`).
_INSERT_BATCHES_WITH_TASKS = """
WITH v AS (
    SELECT * FROM unnest(CAST(%(ids)b AS uuid[]), CAST(%(tenant_ids)b AS uuid[]),
        CAST(%(request_ids)b AS text[]), CAST(%(fingerprints)b AS text[]), CAST(%(totals)b AS int[]),
        CAST(%(required)b AS bigint[]), CAST(%(costs)b AS bigint[]), CAST(%(webhook_urls)b AS text[]),
        CAST(%(deadlines)b AS int[]), CAST(%(retry_of)b AS uuid[]), CAST(%(names)b AS text[]),
        CAST(%(batch_metadata)b AS text[]), CAST(%(open_limits)b AS int[]))
        WITH ORDINALITY AS v(id, tenant_id, request_id, fingerprint, total, required, cost_per_video,
            webhook_url, deadline, retry_of, name, metadata, open_limit, n)
), over_limit AS (
    SELECT ranked.n FROM (
        SELECT v.n, v.tenant_id, v.open_limit,
            row_number() OVER (PARTITION BY v.tenant_id ORDER BY v.n) AS rank
        FROM v WHERE v.open_limit > 0
    ) AS ranked
    WHERE ranked.rank + (
        SELECT count(*) FROM (
            SELECT 1 FROM batch.batches AS o
            WHERE o.tenant_id = ranked.tenant_id AND o.finished_at IS NULL LIMIT ranked.open_limit
        ) AS open_batches
    ) > ranked.open_limit
), b AS (
    INSERT INTO batch.batches (id, tenant_id, request_id, request_fingerprint, status, total_count,
        undispatched_count, required_credits, cost_per_video, webhook_url, deadline_at, retry_of,
        name, metadata)
    SELECT v.id, v.tenant_id, v.request_id, v.fingerprint, 'reserving', v.total, v.total, v.required,
        v.cost_per_video, v.webhook_url, now() + v.deadline * interval '1 second', v.retry_of,
        v.name, v.metadata::jsonb
    FROM v
    WHERE v.n NOT IN (SELECT n FROM over_limit)
    ORDER BY v.n
    ON CONFLICT (tenant_id, request_id) DO NOTHING
    RETURNING *
), t AS (
    INSERT INTO batch.tasks (id, batch_id, tenant_id, batch_index, prompt, model, unit_price,
        duration_seconds, status, price_options, settings, custom_id, metadata)
    SELECT (i.id_head || lpad(to_hex(i.batch_index), 6, '0'))::uuid, b.id, b.tenant_id, i.batch_index,
        i.prompt, i.model, i.price, i.duration, 'queued', i.options, i.settings::jsonb, i.custom_id,
        i.metadata::jsonb
    FROM unnest(CAST(%(task_batch_ids)b AS uuid[]), CAST(%(id_heads)b AS text[]),
        CAST(%(indexes)b AS int[]), CAST(%(prompts)b AS text[]), CAST(%(models)b AS text[]),
        CAST(%(prices)b AS bigint[]), CAST(%(durations)b AS int[]), CAST(%(options)b AS text[]),
        CAST(%(settings)b AS text[]), CAST(%(custom_ids)b AS text[]), CAST(%(item_metadata)b AS text[]))
        AS i(batch_id, id_head, batch_index, prompt, model, price, duration, options, settings, custom_id,
            metadata)
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


def metadata_json(metadata: Metadata) -> str | None:
    """A metadata column's value: a JSON object of the pairs, NULL (None) for none."""
    return orjson.dumps(dict(metadata)).decode() if metadata else None


_COPY_NULL = "\\N"
# The custom_id and metadata columns of an item without either (most batches), and the row's end.
_UNLABELLED = f"{_COPY_NULL}\t{_COPY_NULL}\n"


def _copy_labels(item: BatchItem) -> str:
    """The custom_id and metadata columns of a task's COPY row, and the row's end."""
    if not (item.custom_id or item.metadata):
        return _UNLABELLED
    custom_id = _copy_text(item.custom_id) if item.custom_id else _COPY_NULL
    metadata = metadata_json(item.metadata)
    return f"{custom_id}\t{_copy_text(metadata) if metadata is not None else _COPY_NULL}\n"


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
        "name": new.name,
        "metadata": metadata_json(new.metadata),
        "open_limit": new.open_batch_limit,
    }


# A reserving batch re-priced at billing's current prices (`reprice_reserving`).
_REPRICE_BATCH = """
UPDATE batch.batches SET required_credits = %(required)s, cost_per_video = %(cost_per_video)s
WHERE id = %(id)s AND status = 'reserving'
RETURNING *"""
_REPRICE_TASKS = """
UPDATE batch.tasks AS t SET unit_price = v.new_price, duration_seconds = v.new_duration
FROM unnest(%(models)s::text[], %(old_prices)s::bigint[], %(old_durations)s::int[],
    %(new_prices)s::bigint[], %(new_durations)s::int[], %(options)s::text[])
    AS v(model, old_price, old_duration, new_price, new_duration, options)
WHERE t.batch_id = %(id)s AND t.model = v.model AND t.unit_price = v.old_price
    AND t.duration_seconds = v.old_duration AND t.price_options = v.options"""


async def _copy_tasks(conn: psycopg.AsyncConnection[Any], new: NewBatch, id_head: str) -> None:
    # COPY: 10,000 rows in tens of milliseconds, where one INSERT per row takes seconds. The rows
    # are written as COPY text from parts computed once per batch and per priced line, so a row
    # costs one string format in Python.
    batch = f"\t{new.id}\t{new.tenant_id}\t"
    queued = TaskStatus.QUEUED.value
    tails = {
        key: (
            f"\t{_copy_text(line.model)}\t{line.unit_price}\t{line.duration_seconds}\t{queued}"
            f"\t{_copy_text(line.options)}\t"
        )
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
                        f"{tails[new.price_key(index)]}{_copy_settings(item.settings)}\t"
                        f"{_copy_labels(item)}"
                        for index, item in enumerate(chunk, start)
                    ]
                )
            )


def _copy_settings(settings: GenerationSettings) -> str:
    """The settings column in COPY text: \\N (NULL) for the many items that set nothing."""
    if settings is NO_SETTINGS:
        return _COPY_NULL
    document = settings_json(settings)
    return _COPY_NULL if document is None else _copy_text(document)


# The create path's idempotency lookup, on the autocommit reader (one round trip, no transaction).
_FIND_BY_REQUEST_ID = "SELECT * FROM batch.batches WHERE tenant_id = %s AND request_id = %s"


class BatchIntake:
    """Stores new batches with their tasks, and finds the batch a request or a retry already made."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def insert_batch(self, new: NewBatch) -> tuple[BatchRecord, bool]:
        """Stores the batch and its tasks, or returns the batch already holding the request id
        or, for a retry, its source's place (ADR-048).

        Returns (batch, created). A concurrent insert of the same (tenant, request id), or of
        another retry of the same source, waits on the unique index until the first one commits,
        then finds that batch. With `open_batch_limit`, a new batch that would leave its tenant
        more unfinished batches than that is not stored: TooManyOpenBatches (a replay is still
        answered with its batch). Raw psycopg on the autocommit pool: a small batch is one statement,
        a large one (and any retry) a transaction with a COPY.
        """
        # A retry is stored alone, whatever its size: its conflict may be on its source's place.
        if len(new.items) <= SMALL_BATCH_MAX_ITEMS and new.retry_of is None:
            answer = (await self.insert_small_batches([new]))[0]
            if isinstance(answer, TooManyOpenBatches):
                raise answer
            return answer
        if len(new.items) > _MAX_TASK_INDEX:
            raise ValueError(f"a batch holds at most {_MAX_TASK_INDEX} tasks")
        params = _batch_params(new)
        async with self._db.raw_connection() as conn:
            async with conn.transaction():
                if new.open_batch_limit > 0:
                    await conn.execute(_LOCK_OPEN_BATCHES, {"tenant_ids": [new.tenant_id]})
                inserted = await fetch_one(conn, _INSERT_BATCH, params)
                if inserted is not None:
                    await _copy_tasks(conn, new, params["id_head"])
            if inserted is not None:
                return records.batch_record(inserted), True
            existing = await fetch_one(conn, _FIND_BY_REQUEST_ID, (new.tenant_id, new.request_id))
            if existing is None and new.retry_of is not None:
                existing = await fetch_one(conn, _FIND_RETRY, (new.retry_of,))
        if existing is None and new.open_batch_limit > 0:
            raise TooManyOpenBatches(new.open_batch_limit)
        assert existing is not None, "the conflicting batch has committed"
        return records.batch_record(existing), False

    async def insert_small_batches(
        self, group: Sequence[NewBatch]
    ) -> list[tuple[BatchRecord, bool] | TooManyOpenBatches]:
        """`insert_batch` of several batches of at most `SMALL_BATCH_MAX_ITEMS` items, in one
        statement (one round trip and one commit for the group), answered in order; a batch over
        its tenant's open-batch limit is answered with the refusal (nothing of it stored)."""
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
                line = new.prices[new.price_key(index)]
                params["task_batch_ids"].append(new.id)
                params["id_heads"].append(batch["id_head"])
                params["indexes"].append(index)
                params["prompts"].append(item.prompt)
                params["models"].append(item.model)
                params["prices"].append(line.unit_price)
                params["durations"].append(line.duration_seconds)
                params["options"].append(line.options)
                params["settings"].append(settings_json(item.settings))
                params["custom_ids"].append(item.custom_id or None)
                params["item_metadata"].append(metadata_json(item.metadata))
        limited = sorted({new.tenant_id for new in group if new.open_batch_limit > 0})
        async with self._db.raw_connection() as conn:
            # One statement is atomic alone; with limits, a transaction holds the tenants' locks.
            async with conn.transaction() if limited else nullcontext():
                if limited:
                    await conn.execute(_LOCK_OPEN_BATCHES, {"tenant_ids": limited})
                async with conn.cursor(row_factory=namedtuple_row) as cursor:
                    await cursor.execute(_INSERT_BATCHES_WITH_TASKS, params)
                    rows: list[Any] = await cursor.fetchall()
                    inserted = {BatchId(row.id): records.batch_record(row) for row in rows}
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
                        record = records.batch_record(row)
                        existing[(record.tenant_id, record.request_id)] = record
        answers: list[tuple[BatchRecord, bool] | TooManyOpenBatches] = []
        for new in group:
            if new.id in inserted:
                answers.append((inserted[new.id], True))
                continue
            found = existing.get((new.tenant_id, new.request_id))
            if found is None and new.open_batch_limit > 0:
                # Not stored and no batch holds its request id: its tenant was at the limit.
                answers.append(TooManyOpenBatches(new.open_batch_limit))
                continue
            assert found is not None, "the conflicting batch has committed"
            answers.append((found, False))
        return answers

    async def find_by_request_id(self, tenant_id: TenantId, request_id: str) -> BatchRecord | None:
        """The batch a (tenant, request id) already created, if any."""
        async with self._db.raw_connection() as conn:
            row = await fetch_one(conn, _FIND_BY_REQUEST_ID, (tenant_id, request_id))
        return records.batch_record(row) if row is not None else None

    async def live_retry(self, source_id: BatchId) -> BatchRecord | None:
        """The retry holding the source batch's one place (ADR-048): any retry not rejected."""
        async with self._db.raw_connection() as conn:
            row = await fetch_one(conn, _FIND_LIVE_RETRY, (source_id,))
        return records.batch_record(row) if row is not None else None

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
            "options": [line.options for line in stored],
        }
        async with self._db.raw_connection() as conn, conn.transaction():
            repriced = await fetch_one(conn, _REPRICE_BATCH, params)
            if repriced is None:
                return None
            # One UPDATE joins every task to its old line: lines can swap prices safely.
            await conn.execute(_REPRICE_TASKS, params)
        return records.batch_record(repriced)
