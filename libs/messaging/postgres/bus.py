"""`PostgresBus`: the `Bus` protocol on the tables of `libs.messaging.postgres.schema`.

Claims, a heartbeat that keeps claims alive, settlement (ack, requeue, dead-letter) and a LISTEN
session that wakes consumers; the package docstring describes the guarantees.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import insert, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.db import Database, libpq_url
from libs.lifecycle import wait_at_most
from libs.messaging.consuming import ChunkedBus, QueueReceipts
from libs.messaging.contract import TOPOLOGY, Backlog, Envelope, QueueSpec, routing_key_matches
from libs.messaging.postgres.schema import (
    CLAIM,
    MOVE_TO_DEAD_LETTERS,
    NOTIFY_CHANNEL,
    SCHEMA,
    declare_queue,
    messages,
    metadata,
    notify,
    queue_bindings,
)

log = logging.getLogger(__name__)

_DDL_LOCK = zlib.crc32(b"reelbatch-postgres-bus-ddl")
_SESSION_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class ClaimedMessage:
    """A message handed to this process and not yet acked, requeued or dead-lettered."""

    id: int
    envelope: Envelope
    deliveries: int


@dataclass
class _Subscription:
    """One `consume` call: its queue, its prefetch window and what it holds right now."""

    queue: QueueSpec
    prefetch: int
    in_flight: set[int] = field(default_factory=set)
    # Set by NOTIFY for this queue and whenever a held message is settled (room in the window).
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self, ids: Sequence[int]) -> None:
        self.in_flight.difference_update(ids)
        self.wake.set()


class PostgresBus(ChunkedBus[ClaimedMessage]):
    """`Bus` on PostgreSQL tables (schema `bus`); durable, at-least-once, competing consumers."""

    messaging_system = "postgresql"

    def __init__(
        self,
        database: Database,
        *,
        visibility_seconds: float = 30.0,
        poll_seconds: float = 1.0,
    ) -> None:
        super().__init__()
        self._db = database
        self._visibility = visibility_seconds
        self._poll = poll_seconds
        self._subscriptions: list[_Subscription] = []
        # Backend pid of the listener session, which lives exactly as long as this process does.
        self._session_pid: int | None = None
        self._session_started = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []

    @classmethod
    async def connect(
        cls, database_url: str, *, visibility_seconds: float = 30.0, poll_seconds: float = 1.0
    ) -> PostgresBus:
        """Creates the bus tables if missing and declares the whole topology (idempotent)."""
        bus = cls(
            Database(database_url, pool_size=4),
            visibility_seconds=visibility_seconds,
            poll_seconds=poll_seconds,
        )
        try:
            async with bus._db.connection() as conn:
                # Processes start together; the lock keeps their CREATE ... IF NOT EXISTS apart.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _DDL_LOCK})
                await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
                await conn.run_sync(metadata.create_all)
                for spec in TOPOLOGY:
                    await declare_queue(conn, spec)
        except BaseException:
            await bus._db.close()
            raise
        return bus

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Enqueues each envelope on every bound queue; returns once the rows are committed."""
        if not envelopes:
            return
        async with self._db.connection() as conn:
            bindings = await queue_bindings(conn)
            rows: list[dict[str, Any]] = [
                {
                    "queue": queue,
                    "message_id": envelope.message_id,
                    "routing_key": envelope.routing_key,
                    "message_type": envelope.message_type,
                    "body": envelope.body,
                    "headers": dict(envelope.headers),
                }
                for envelope in envelopes
                for queue, keys in bindings.items()
                if any(routing_key_matches(key, envelope.routing_key) for key in keys)
            ]
            if not rows:
                return
            await conn.execute(insert(messages), rows)
            await notify(conn, {row["queue"] for row in rows})

    async def _subscribe(
        self, queue: QueueSpec, prefetch: int
    ) -> tuple[asyncio.Queue[ClaimedMessage], QueueReceipts[ClaimedMessage]]:
        """Declares `queue` and starts fetching its messages into the inbox returned."""
        async with self._db.connection() as conn:
            await declare_queue(conn, queue)
        if not self._background:
            self._background = [
                asyncio.create_task(self._listen(), name="postgres-bus-listener"),
                asyncio.create_task(self._keep_claims(), name="postgres-bus-heartbeat"),
            ]
            # Claims should name a live session from the start; without one they still expire.
            try:
                await wait_at_most(self._session_started.wait(), _SESSION_WAIT_SECONDS)
            except TimeoutError:
                log.warning("bus listener not connected yet; claims rely on the visibility timeout")
        subscription = _Subscription(queue, prefetch)
        self._subscriptions.append(subscription)
        inbox: asyncio.Queue[ClaimedMessage] = asyncio.Queue()
        self._consumer_tasks.append(
            asyncio.create_task(self._fetch(subscription, inbox), name=f"postgres-bus-fetch-{queue.name}")
        )
        return inbox, _PostgresReceipts(self, subscription)

    async def ping(self) -> None:
        """Raises if the bus's database does not answer."""
        await self._db.ping()

    async def backlog(self, queue: QueueSpec) -> Backlog:
        """Messages of `queue` not yet acknowledged, and how long the oldest has waited."""
        async with self._db.connection() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT count(*), EXTRACT(EPOCH FROM now() - min(enqueued_at))"
                        " FROM bus.messages WHERE queue = :queue"
                    ),
                    {"queue": queue.name},
                )
            ).one()
        return Backlog(messages=int(row[0]), oldest_age_seconds=None if row[1] is None else float(row[1]))

    async def close(self) -> None:
        """Stops consuming, hands back the messages still held, and closes the pool."""
        tasks = [*self._consumer_tasks, *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._consumer_tasks.clear()
        self._background.clear()
        held = [message_id for s in self._subscriptions for message_id in s.in_flight]
        if held:
            try:
                async with self._db.connection() as conn:
                    await conn.execute(
                        text("UPDATE bus.messages SET visible_at = now() WHERE id = ANY(:ids)"), {"ids": held}
                    )
                    await notify(conn, {s.queue.name for s in self._subscriptions if s.in_flight})
            except (SQLAlchemyError, OSError) as error:
                log.warning(
                    "could not hand back %d messages (%s); they return after the timeout", len(held), error
                )
        self._subscriptions.clear()
        await self._db.close()

    async def _fetch(self, subscription: _Subscription, inbox: asyncio.Queue[ClaimedMessage]) -> None:
        """Keeps the subscription's window full: claims when there is room and work, else waits."""
        failures = 0
        while True:
            subscription.wake.clear()
            room = subscription.prefetch - len(subscription.in_flight)
            if room > 0:
                try:
                    claimed = await self._claim(subscription, room)
                except (SQLAlchemyError, OSError) as error:
                    failures += 1
                    log.warning("claiming from %s failed (%s); retrying", subscription.queue.name, error)
                    await asyncio.sleep(min(10.0, 0.1 * 2 ** min(failures, 7)))
                    continue
                failures = 0
                for message in claimed:
                    inbox.put_nowait(message)
                if len(claimed) == room:
                    continue
            try:
                await wait_at_most(subscription.wake.wait(), self._poll)
            except TimeoutError:
                pass

    async def _claim(self, subscription: _Subscription, limit: int) -> list[ClaimedMessage]:
        queue = subscription.queue
        async with self._db.connection() as conn:
            rows = (
                await conn.execute(
                    CLAIM,
                    {
                        "queue": queue.name,
                        "limit": limit,
                        "visibility": self._visibility,
                        "claimed_by": self._session_pid,
                    },
                )
            ).all()
            claimed: list[ClaimedMessage] = []
            for row in sorted(rows, key=lambda r: int(r.id)):
                message = ClaimedMessage(
                    id=int(row.id),
                    envelope=Envelope(
                        routing_key=row.routing_key,
                        message_type=row.message_type,
                        body=bytes(row.body),
                        message_id=row.message_id,
                        headers={str(k): str(v) for k, v in (row.headers or {}).items()},
                    ),
                    deliveries=int(row.deliveries),
                )
                # Handed out and lost (its consumer died) more often than the limit allows.
                if not queue.is_dead_letter_queue and message.deliveries > queue.delivery_limit + 1:
                    log.error(
                        "message %s on %s exceeded its delivery limit: dead-lettered", message.id, queue.name
                    )
                    await self._move_to_dead_letters(conn, queue, message.id)
                    continue
                claimed.append(message)
            subscription.in_flight.update(message.id for message in claimed)
        return claimed

    async def ack(self, subscription: _Subscription, claimed: Sequence[ClaimedMessage]) -> None:
        """Deletes handled messages; if that fails they come back after the visibility timeout."""
        ids = [message.id for message in claimed]
        try:
            async with self._db.connection() as conn:
                await conn.execute(messages.delete().where(messages.c.id.in_(ids)))
        except (SQLAlchemyError, OSError) as error:
            log.warning("ack of %d messages on %s failed (%s)", len(ids), subscription.queue.name, error)
        finally:
            subscription.release(ids)

    async def requeue(self, subscription: _Subscription, message: ClaimedMessage) -> None:
        """Makes a message visible again, or dead-letters it once past the delivery limit."""
        queue = subscription.queue
        try:
            async with self._db.connection() as conn:
                if not queue.is_dead_letter_queue and message.deliveries > queue.delivery_limit:
                    log.error(
                        "message %s on %s reached its delivery limit: dead-lettered", message.id, queue.name
                    )
                    await self._move_to_dead_letters(conn, queue, message.id)
                    return
                await conn.execute(
                    text("UPDATE bus.messages SET visible_at = now() WHERE id = :id"), {"id": message.id}
                )
                await notify(conn, {queue.name})
        except (SQLAlchemyError, OSError) as error:
            log.warning("requeue of message %s on %s failed (%s)", message.id, queue.name, error)
        finally:
            subscription.release([message.id])

    async def dead_letter(self, subscription: _Subscription, message: ClaimedMessage) -> None:
        """Moves a message to the queue's dead-letter queue (drops it if this is one already)."""
        try:
            async with self._db.connection() as conn:
                await self._move_to_dead_letters(conn, subscription.queue, message.id)
        except (SQLAlchemyError, OSError) as error:
            log.warning("dead-lettering message %s failed (%s)", message.id, error)
        finally:
            subscription.release([message.id])

    async def _move_to_dead_letters(self, conn: AsyncConnection, queue: QueueSpec, message_id: int) -> None:
        if queue.is_dead_letter_queue:
            # As on RabbitMQ, a dead-letter queue has no dead-letter queue of its own.
            await conn.execute(messages.delete().where(messages.c.id == message_id))
            return
        dead = queue.dead_letters()
        await declare_queue(conn, dead)
        await conn.execute(MOVE_TO_DEAD_LETTERS, {"id": message_id, "dead_queue": dead.name})
        await notify(conn, {dead.name})

    async def _keep_claims(self) -> None:
        """Extends the visibility of every message in hand, so only a dead consumer loses them."""
        while True:
            await asyncio.sleep(self._visibility / 3)
            held = [message_id for s in self._subscriptions for message_id in s.in_flight]
            if not held:
                continue
            try:
                async with self._db.connection() as conn:
                    await conn.execute(
                        text(
                            "UPDATE bus.messages SET visible_at = now() + make_interval(secs => :visibility),"
                            " claimed_by = :claimed_by WHERE id = ANY(:ids) AND visible_at > now()"
                        ),
                        {"ids": held, "visibility": self._visibility, "claimed_by": self._session_pid},
                    )
            except (SQLAlchemyError, OSError) as error:
                log.warning("extending %d claims failed (%s)", len(held), error)

    async def _listen(self) -> None:
        """Wakes the subscriptions of every queue named in a NOTIFY; reconnects after outages."""
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    libpq_url(self._db.url), autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._session_pid = conn.info.backend_pid
                    self._session_started.set()
                    failures = 0
                    # Notifications sent while nobody listened are lost: look at every queue once.
                    self._wake(None)
                    async for notification in conn.notifies():
                        self._wake(notification.payload)
            except (psycopg.Error, OSError) as error:
                self._session_pid = None
                failures += 1
                log.warning("bus listener lost its connection (%s); polling until it is back", error)
                await asyncio.sleep(min(10.0, 0.1 * 2 ** min(failures, 7)))

    def _wake(self, queue_name: str | None) -> None:
        for subscription in self._subscriptions:
            if queue_name is None or subscription.queue.name == queue_name:
                subscription.wake.set()


class _PostgresReceipts:
    """Settles claimed rows for `ChunkedConsumer` through the bus."""

    def __init__(self, bus: PostgresBus, subscription: _Subscription) -> None:
        self._bus = bus
        self._subscription = subscription

    def envelope_of(self, raw: ClaimedMessage) -> Envelope:
        return raw.envelope

    def redelivered(self, raw: ClaimedMessage) -> bool:
        return raw.deliveries > 1

    async def ack(self, raws: Sequence[ClaimedMessage]) -> None:
        await self._bus.ack(self._subscription, raws)

    async def requeue(self, raw: ClaimedMessage) -> None:
        await self._bus.requeue(self._subscription, raw)

    async def dead_letter(self, raw: ClaimedMessage) -> None:
        await self._bus.dead_letter(self._subscription, raw)
