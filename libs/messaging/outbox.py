"""Transactional outbox: events are rows written in the transaction that changes state, and a
relay publishes them to the bus afterwards (at least once) and deletes them.

Each service owns an `outbox` table in its schema (`outbox_table`), a trigger that wakes the
relay with NOTIFY (`outbox_notify_ddl`), and runs one `OutboxRelay`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import psycopg
from psycopg import sql
from sqlalchemy import (
    Column,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from libs.columns import created_at_column, serial_id_column
from libs.config import Settings
from libs.db import Database, libpq_url
from libs.lifecycle import sleep_or_stop
from libs.messaging.contract import Backlog, Bus, Envelope

log = logging.getLogger(__name__)


def outbox_table(metadata: MetaData, schema: str) -> Table:
    """The outbox table of one service schema."""
    return Table(
        "outbox",
        metadata,
        serial_id_column(),
        Column("message_id", Text, nullable=False, unique=True),
        Column("routing_key", Text, nullable=False),
        Column("message_type", Text, nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False),
        created_at_column(),
        schema=schema,
    )


def notify_channel(schema: str) -> str:
    return f"{schema}_outbox"


def outbox_notify_ddl(schema: str) -> list[str]:
    """DDL for the statement-level trigger that wakes the relay after each insert."""
    channel = notify_channel(schema)
    return [
        f"""
        CREATE OR REPLACE FUNCTION {schema}.outbox_notify() RETURNS trigger AS $$
        BEGIN PERFORM pg_notify('{channel}', ''); RETURN NULL; END; $$ LANGUAGE plpgsql
        """,
        f"""
        CREATE TRIGGER outbox_notify AFTER INSERT ON {schema}.outbox
        FOR EACH STATEMENT EXECUTE FUNCTION {schema}.outbox_notify()
        """,
    ]


async def add_events(db: AsyncSession | AsyncConnection, table: Table, envelopes: Sequence[Envelope]) -> None:
    """Writes events into the outbox inside the caller's transaction."""
    if not envelopes:
        return
    await db.execute(
        insert(table),
        [
            {
                "message_id": e.message_id,
                "routing_key": e.routing_key,
                "message_type": e.message_type,
                "body": e.body,
                "headers": dict(e.headers),
            }
            for e in envelopes
        ],
    )


class OutboxRelay:
    """Publishes outbox rows in id order, in chunks, and deletes them once the broker confirmed.

    Several relays may run on one table (SKIP LOCKED); a crash between publish and delete
    republishes the chunk, which consumers absorb (they are idempotent).
    """

    def __init__(
        self, database: Database, table: Table, bus: Bus, *, batch_size: int, poll_seconds: float
    ) -> None:
        self._db = database
        self._table = table
        self._bus = bus
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._channel = notify_channel(str(table.schema))
        self.published = 0
        name = sql.Identifier(str(table.schema), table.name)
        self._select_chunk = sql.SQL(
            "SELECT id, message_id, routing_key, message_type, body, headers FROM {} ORDER BY id"
            " LIMIT %s FOR UPDATE SKIP LOCKED"
        ).format(name)
        self._delete_chunk = sql.SQL("DELETE FROM {} WHERE id = ANY(CAST(%b AS bigint[]))").format(name)

    @classmethod
    def configured(cls, settings: Settings, database: Database, table: Table, bus: Bus) -> OutboxRelay:
        """A relay of `table` with the chunk size and poll interval the settings give."""
        return cls(
            database,
            table,
            bus,
            batch_size=settings.outbox_batch_size,
            poll_seconds=settings.outbox_poll_seconds,
        )

    async def relay_once(self) -> int:
        """Publishes one chunk; returns how many events it published."""
        # Raw psycopg (prepared statements, an id array instead of one bind per id): the relay
        # runs once per group of creates and per outcome transaction, on every service.
        async with self._db.raw_connection() as conn, conn.transaction():
            async with conn.cursor() as cursor:
                await cursor.execute(self._select_chunk, (self._batch_size,))
                rows = await cursor.fetchall()
            if not rows:
                return 0
            await self._bus.publish(
                [
                    Envelope(
                        routing_key=routing_key,
                        message_type=message_type,
                        body=body,
                        message_id=message_id,
                        headers=headers,
                    )
                    for _, message_id, routing_key, message_type, body, headers in rows
                ]
            )
            await conn.execute(self._delete_chunk, ([row[0] for row in rows],))
        self.published += len(rows)
        return len(rows)

    async def backlog(self) -> Backlog:
        """Events written but not yet published, and the age of the oldest (the relay's lag)."""
        t = self._table
        async with self._db.connection() as conn:
            row = (
                await conn.execute(
                    select(func.count(), func.extract("epoch", func.now() - func.min(t.c.created_at)))
                )
            ).one()
        return Backlog(messages=int(row[0]), oldest_age_seconds=None if row[1] is None else float(row[1]))

    async def run(self, stopping: asyncio.Event) -> None:
        """Relays until `stopping` is set; survives database and broker outages."""
        failures = 0
        listener: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        try:
            while not stopping.is_set():
                try:
                    if listener is None or listener.closed:
                        listener = await self._listen()
                    published = await self.relay_once()
                    failures = 0
                    if published < self._batch_size:
                        await self._wait_for_work(listener, stopping)
                except Exception as error:
                    failures += 1
                    log.warning("outbox relay on %s failed (%s); retrying", self._table.schema, error)
                    if listener is not None:
                        await listener.close()
                        listener = None
                    await sleep_or_stop(stopping, min(10.0, 0.1 * 2 ** min(failures, 7)))
        finally:
            if listener is not None:
                await listener.close()

    async def _listen(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        conn = await psycopg.AsyncConnection.connect(libpq_url(self._db.url), autocommit=True)
        await conn.execute(f"LISTEN {self._channel}")
        return conn

    async def _wait_for_work(
        self, listener: psycopg.AsyncConnection[tuple[object, ...]], stopping: asyncio.Event
    ) -> None:
        if stopping.is_set():
            return
        async for _ in listener.notifies(timeout=self._poll_seconds, stop_after=1):
            break
