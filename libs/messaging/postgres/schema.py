"""The Postgres bus's schema `bus`: its tables, the named statements of claiming and dead-lettering,
queue declaration (with bindings, as an exchange holds them) and the NOTIFY that wakes consumers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.columns import database_clock_column, serial_id_column
from libs.messaging.contract import TOPOLOGY, QueueSpec

SCHEMA = "bus"
NOTIFY_CHANNEL = "reelbatch_bus"

metadata = MetaData(schema=SCHEMA)

queues = Table(
    "queues",
    metadata,
    Column("name", Text, primary_key=True),
    Column("routing_keys", ARRAY(Text), nullable=False),
    Column("delivery_limit", Integer, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    serial_id_column(),
    Column("queue", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("routing_key", Text, nullable=False),
    Column("message_type", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False),
    # Times the message was handed to a consumer; the delivery limit applies to it.
    Column("deliveries", Integer, nullable=False, server_default="0"),
    # Claimable once this moment has passed; a claim pushes it a visibility timeout ahead.
    database_clock_column("visible_at"),
    # Server pid of the claiming bus's listener session: when that session is gone (its process
    # died), the message is claimable at once rather than after the visibility timeout.
    Column("claimed_by", Integer, nullable=True),
    database_clock_column("enqueued_at"),
    # Claims scan one queue in id order and stop after a few rows.
    Index("messages_queue_id", "queue", "id"),
)

CLAIM = text(
    """
    UPDATE bus.messages AS m
    SET deliveries = m.deliveries + 1,
        visible_at = now() + make_interval(secs => :visibility),
        claimed_by = :claimed_by
    FROM (
        SELECT id FROM bus.messages AS candidate
        WHERE queue = :queue
          AND (
            visible_at <= now()
            OR (
                claimed_by IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a WHERE a.pid = candidate.claimed_by)
            )
          )
        ORDER BY id LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ) AS claimable
    WHERE m.id = claimable.id
    RETURNING m.id, m.message_id, m.routing_key, m.message_type, m.body, m.headers, m.deliveries
    """
)

MOVE_TO_DEAD_LETTERS = text(
    """
    WITH moved AS (DELETE FROM bus.messages WHERE id = :id RETURNING *)
    INSERT INTO bus.messages (queue, message_id, routing_key, message_type, body, headers)
    SELECT :dead_queue, message_id, routing_key, message_type, body, headers FROM moved
    """
)

_NOTIFY = text("SELECT pg_notify(:channel, name) FROM unnest(CAST(:queues AS text[])) AS name")


async def declare_queue(conn: AsyncConnection, spec: QueueSpec) -> None:
    """Creates or updates a queue and its bindings (a dead-letter queue has none)."""
    values: dict[str, Any] = {
        "name": spec.name,
        "routing_keys": list(spec.routing_keys),
        "delivery_limit": spec.delivery_limit,
    }
    statement = pg_insert(queues).values(values)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[queues.c.name],
            set_={
                "routing_keys": statement.excluded.routing_keys,
                "delivery_limit": statement.excluded.delivery_limit,
            },
        )
    )
    if not spec.is_dead_letter_queue:
        await declare_queue(conn, spec.dead_letters())


async def queue_bindings(conn: AsyncConnection) -> dict[str, tuple[str, ...]]:
    """Routing keys by queue: the declared queues, and `TOPOLOGY` as it is right now."""
    rows = (await conn.execute(select(queues.c.name, queues.c.routing_keys))).all()
    bound = {str(row.name): tuple(row.routing_keys) for row in rows}
    for spec in TOPOLOGY:
        bound[spec.name] = spec.routing_keys
    return bound


async def notify(conn: AsyncConnection, queue_names: set[str]) -> None:
    """Wakes the consumers of `queue_names` (sent on commit, like the rows it announces)."""
    if queue_names:
        await conn.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "queues": sorted(queue_names)})
