"""A small in-process cache whose entries expire: answers worth remembering for a moment.

Used where a burst of identical questions would otherwise each cost a call to another service
(API key lookups in the gateway, price quotes in the batch service). Bounded: past `max_entries`
the least recently stored entry goes first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """Values by key, each valid for `ttl_seconds` after it was stored (per `clock`)."""

    def __init__(self, ttl_seconds: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value stored under `key`, unless it has expired or was never stored."""
        cached = self._entries.get(key)
        if cached is None or cached[0] <= self._clock():
            return None
        return cached[1]

    def put(self, key: K, value: V) -> None:
        """Stores `value` for the next `ttl_seconds`, dropping the oldest entries past the bound."""
        self._entries[key] = (self._clock() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget(self, matches: Callable[[V], bool]) -> None:
        """Drops every entry whose value `matches`."""
        for key in [key for key, (_, value) in self._entries.items() if matches(value)]:
            del self._entries[key]

    def clear(self) -> None:
        """Drops every entry."""
        self._entries.clear()
