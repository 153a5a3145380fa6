"""Billing's side of the invalidation contract (libs/invalidations.py, ADR-130): one LISTEN
connection per billing replica, fanned out to every `WatchInvalidations` stream it serves.

A subscriber is told `subscribed` only while this replica really listens; when the LISTEN
connection breaks (a PostgreSQL restart, a network cut) every stream is ended, so each subscriber
stops trusting its cache and subscribes again (to whichever replica is healthy) instead of
believing it misses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

import psycopg
from psycopg.conninfo import make_conninfo

from libs.db import libpq_url
from libs.invalidations import NOTIFY_CHANNEL, InvalidationKind, decode, encode
from libs.lifecycle import sleep_or_stop

log = logging.getLogger(__name__)

# After a broken LISTEN connection, try again after this pause.
RELISTEN_SECONDS = 0.5
# A dead peer is noticed by TCP keepalives within about idle + interval x count seconds.

# An item of a subscriber's queue: an invalidation, or None for "this stream ends".
_Item = tuple[InvalidationKind, str] | None


class InvalidationHub:
    """LISTENs on the invalidation channel and hands every notification to every subscriber."""

    def __init__(self, database_url: str) -> None:
        self._conninfo = make_conninfo(
            libpq_url(database_url),
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=2,
        )
        self._subscribers: set[asyncio.Queue[_Item]] = set()
        self.listening = False
        # Set once `run` has returned: a stream opened later (a stopping replica still accepts
        # calls for a moment) ends at once instead of waiting out the server's grace period.
        self._closed = False

    async def run(self, stopping: asyncio.Event) -> None:
        """Listens until `stopping` is set (or the task is cancelled), listening again after breaks."""
        try:
            while not stopping.is_set():
                try:
                    await self._listen()
                except psycopg.OperationalError as error:
                    log.warning("invalidation LISTEN connection broke (%s); listening again", error)
                finally:
                    self._stop_listening()
                if await sleep_or_stop(stopping, RELISTEN_SECONDS):
                    return
        finally:
            self._closed = True
            self._stop_listening()

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
        ) as conn:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.listening = True
            for queue in self._subscribers:
                queue.put_nowait((InvalidationKind.SUBSCRIBED, ""))
            async for notification in conn.notifies():
                item = decode(notification.payload)
                for queue in self._subscribers:
                    queue.put_nowait(item)

    def _stop_listening(self) -> None:
        # Every stream ends: its subscriber may have missed something from now on.
        self.listening = False
        for queue in self._subscribers:
            queue.put_nowait(None)
        self._subscribers.clear()

    async def follow(self) -> AsyncGenerator[tuple[InvalidationKind, str], None]:
        """`subscribed` once this replica listens, then every invalidation, until listening stops."""
        if self._closed:
            return
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        if self.listening:
            queue.put_nowait((InvalidationKind.SUBSCRIBED, ""))
        self._subscribers.add(queue)
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            self._subscribers.discard(queue)


async def announce_prices(database_url: str) -> None:
    """Tells every replica that remembers prices to forget them: a billing process starting may
    bring a new price list (the list is configuration, read at start)."""
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url), autocommit=True) as conn:
        await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, encode(InvalidationKind.PRICES)))
