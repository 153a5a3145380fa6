"""Invalidations: what a process must forget when billing commits a change (issue 27, ADR-130).

The contract: billing sends `pg_notify(NOTIFY_CHANNEL, encode(kind, id))` in the transaction of
the change (PostgreSQL delivers it only if and when that commits), every billing replica LISTENs
on the channel, and every subscriber of its `WatchInvalidations` stream gets each one; a revoked
key or a new price list reaches every gateway and batch replica within milliseconds.

`InvalidationFeed` is the subscriber's side, `InvalidatedCache` a cache that follows one. A cache
may trust its entries only while the feed is `live` (subscribed, so nothing is missed); whenever
the stream starts or breaks, the feed says `everything`, and a cache forgets all it holds.
`generation` grows with every invalidation: an answer fetched before an invalidation arrived is
not stored after it (it may be the old truth).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from enum import StrEnum
from typing import Generic, TypeVar

import grpc
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.expiring_cache import ExpiringCache
from libs.lifecycle import sleep_or_stop

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger(__name__)

# The PostgreSQL channel billing notifies and listens on.
NOTIFY_CHANNEL = "reelbatch_invalidations"

# A broken stream is opened again after this pause (while it is down, caches are not trusted).
RESUBSCRIBE_SECONDS = 0.2
PREVIOUS_RELEASE_RETRY_SECONDS = 5.0


class InvalidationKind(StrEnum):
    """What an invalidation is about (the `kind` of `WatchInvalidationsResponse`)."""

    SUBSCRIBED = "subscribed"
    API_KEY = "api_key"
    ADMIN_KEY = "admin_key"
    PRICES = "prices"
    EVERYTHING = "everything"


def encode(kind: InvalidationKind, subject: str = "") -> str:
    """The NOTIFY payload of an invalidation."""
    return f"{kind.value}:{subject}"


def decode(payload: str) -> tuple[InvalidationKind, str]:
    """An invalidation from its NOTIFY payload; an unknown kind means `everything` (a newer
    release's kind is still forgotten by an older subscriber, at the price of its whole cache)."""
    kind, _, subject = payload.partition(":")
    try:
        return InvalidationKind(kind), subject
    except ValueError:
        return InvalidationKind.EVERYTHING, ""


InvalidationHandler = Callable[[InvalidationKind, str], None]


class InvalidationFeed:
    """Follows billing's `WatchInvalidations` stream and hands each invalidation to handlers."""

    def __init__(
        self,
        billing: billing_pb2_grpc.BillingServiceAsyncStub,
        *,
        resubscribe_seconds: float = RESUBSCRIBE_SECONDS,
    ) -> None:
        self._billing = billing
        self._resubscribe = resubscribe_seconds
        self._handlers: list[InvalidationHandler] = []
        self.live = False
        self.generation = 0

    def subscribe(self, handler: InvalidationHandler) -> None:
        """Calls `handler(kind, subject)` for every invalidation (and `everything` on (re)connects)."""
        self._handlers.append(handler)

    def _deliver(self, kind: InvalidationKind, subject: str) -> None:
        self.generation += 1
        for handler in self._handlers:
            handler(kind, subject)

    async def run(self, stopping: asyncio.Event) -> None:
        """Subscribes, and subscribes again after every break, until `stopping` is set."""
        while not stopping.is_set():
            pause = self._resubscribe
            try:
                await self._follow()
            except grpc.aio.AioRpcError as error:
                log.info("invalidation stream broke (%s); caches are bypassed until it is back", error.code())
                if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                    # A billing of the previous release (a rolling deploy): ask again now and then.
                    pause = PREVIOUS_RELEASE_RETRY_SECONDS
            finally:
                self._went_down()
            if await sleep_or_stop(stopping, pause):
                return

    async def _follow(self) -> None:
        call = self._billing.WatchInvalidations(billing_pb2.WatchInvalidationsRequest())
        try:
            async for message in call:
                kind, subject = decode(f"{message.kind}:{message.id}")
                if kind is InvalidationKind.SUBSCRIBED:
                    # What happened before the subscription is unknown: start from nothing.
                    self._deliver(InvalidationKind.EVERYTHING, "")
                    self.live = True
                else:
                    self._deliver(kind, subject)
        finally:
            call.cancel()

    def _went_down(self) -> None:
        if self.live:
            self.live = False
        self._deliver(InvalidationKind.EVERYTHING, "")


class InvalidatedCache(Generic[K, V]):
    """An `ExpiringCache` kept honest by a feed: it answers from memory only while the feed is live
    (always without a feed: the entries' lifetime then bounds their staleness), forgets the values
    an invalidation of `kind` names (by `subject_of`; every value for a subject of "") and all of
    them on `everything`, and does not store an answer fetched before an invalidation arrived.
    """

    def __init__(
        self,
        entries: ExpiringCache[K, V],
        feed: InvalidationFeed | None,
        kind: InvalidationKind,
        subject_of: Callable[[V], str],
    ) -> None:
        self._entries = entries
        self._feed = feed
        self._kind = kind
        self._subject_of = subject_of
        if feed is not None:
            feed.subscribe(self._invalidated)

    def _invalidated(self, kind: InvalidationKind, subject: str) -> None:
        if kind is InvalidationKind.EVERYTHING or (kind is self._kind and not subject):
            self._entries.clear()
        elif kind is self._kind:
            self.forget(lambda value: self._subject_of(value) == subject)

    def get(self, key: K) -> V | None:
        """The remembered value, unless it expired or the feed is down (then always None)."""
        if self._feed is not None and not self._feed.live:
            return None
        return self._entries.get(key)

    def ticket(self) -> int:
        """Taken before asking for an answer; `put` it back with the answer."""
        return 0 if self._feed is None else self._feed.generation

    def put(self, key: K, value: V, ticket: int) -> None:
        """Remembers an answer asked for at `ticket`, unless an invalidation arrived since (the
        answer may predate it) or the feed is down."""
        feed = self._feed
        if feed is None or (feed.live and feed.generation == ticket):
            self._entries.put(key, value)

    def forget(self, matches: Callable[[V], bool]) -> None:
        """Drops every value that `matches` (this process's own change, known before the feed's)."""
        self._entries.forget(matches)

    def clear(self) -> None:
        """Drops every value."""
        self._entries.clear()
