"""ExpiringCache: entries expire after their time, the oldest go first past the bound."""

from __future__ import annotations

from libs.expiring_cache import ExpiringCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_answered_until_it_expires() -> None:
    clock = Clock()
    cache = ExpiringCache[str, int](2.0, 10, clock)
    cache.put("a", 1)
    clock.now += 1.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert cache.get("a") is None
    assert cache.get("never stored") is None


def test_past_the_bound_the_least_recently_stored_entry_goes_first() -> None:
    cache = ExpiringCache[str, int](60.0, 2, Clock())
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)  # stored again: now the most recent
    cache.put("c", 4)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (3, None, 4)


def test_forget_drops_matching_values_and_clear_drops_all() -> None:
    cache = ExpiringCache[str, int](60.0, 10, Clock())
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        cache.put(key, value)
    cache.forget(lambda value: value % 2 == 1)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, 2, None)
    cache.clear()
    assert cache.get("b") is None
