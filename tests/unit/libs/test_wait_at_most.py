"""`wait_at_most`: a loop built on it stops when its task is cancelled, even when the cancellation
arrives just as the awaited event fires (asyncio.wait_for on Python 3.11 loses that
cancellation: CPython gh-86296, which left a bus consumer's close() waiting forever)."""

from __future__ import annotations

import asyncio

import pytest

from libs.lifecycle import wait_at_most


async def _stops_when_cancelled_as_the_event_fires(spins: int) -> bool:
    event = asyncio.Event()

    async def consume() -> None:
        while True:
            try:
                await wait_at_most(event.wait(), 5)
            except TimeoutError:
                pass
            event.clear()

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    event.set()
    for _ in range(spins):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=0.5)
    if not done:
        task.cancel()  # the test's own clean-up: it failed already
        await asyncio.wait([task], timeout=0.5)
    return bool(done)


@pytest.mark.parametrize("spins", range(4))
async def test_a_loop_stops_when_cancelled_at_any_point_around_the_event(spins: int) -> None:
    assert await _stops_when_cancelled_as_the_event_fires(spins)


async def test_returns_the_result_or_times_out() -> None:
    assert await wait_at_most(asyncio.sleep(0, result="done"), 1) == "done"
    with pytest.raises(TimeoutError):
        await wait_at_most(asyncio.Event().wait(), 0.01)
