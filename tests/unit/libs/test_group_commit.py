"""GroupCommitter: who shares a group, and what each caller gets back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from libs.group_commit import GroupCommitter


class Doubler:
    """A group runner that records its groups; odd requests fail alone, `boom` fails the group."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def run(self, requests: Sequence[int]) -> list[int | BaseException]:
        self.groups.append(list(requests))
        await self.release.wait()
        if -1 in requests:
            raise RuntimeError("boom")
        return [ValueError(n) if n % 2 else n * 2 for n in requests]


async def test_a_lone_request_runs_at_once_in_a_group_of_one() -> None:
    runner = Doubler()
    committer = GroupCommitter(runner.run, max_group_size=8, name="test")

    assert await committer.submit(2) == 4
    assert runner.groups == [[2]]


async def test_requests_arriving_while_a_group_runs_share_the_next_group_in_arrival_order() -> None:
    runner = Doubler()
    runner.release.clear()
    committer = GroupCommitter(runner.run, max_group_size=8, name="test")
    first = asyncio.ensure_future(committer.submit(2))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(committer.submit(n)) for n in (4, 6, 8)]
    await asyncio.sleep(0)
    runner.release.set()

    assert await first == 4
    assert await asyncio.gather(*later) == [8, 12, 16]
    assert runner.groups == [[2], [4, 6, 8]]


async def test_a_group_never_exceeds_its_maximum_size() -> None:
    runner = Doubler()
    committer = GroupCommitter(runner.run, max_group_size=2, name="test")

    assert await asyncio.gather(*(committer.submit(n) for n in (2, 4, 6, 8, 10))) == [4, 8, 12, 16, 20]
    assert runner.groups == [[2, 4], [6, 8], [10]]


async def test_a_request_that_fails_alone_leaves_the_rest_of_its_group_unaffected() -> None:
    runner = Doubler()
    committer = GroupCommitter(runner.run, max_group_size=8, name="test")

    results = await asyncio.gather(*(committer.submit(n) for n in (2, 3, 4)), return_exceptions=True)

    assert results[0] == 4 and results[2] == 8
    assert isinstance(results[1], ValueError)
    assert runner.groups == [[2, 3, 4]]


async def test_a_failing_group_fails_every_request_in_it_and_the_next_group_still_runs() -> None:
    runner = Doubler()
    committer = GroupCommitter(runner.run, max_group_size=2, name="test")

    results = await asyncio.gather(*(committer.submit(n) for n in (2, -1, 4)), return_exceptions=True)

    assert [type(result) for result in results[:2]] == [RuntimeError, RuntimeError]
    assert results[2] == 8


async def test_a_cancelled_caller_does_not_cancel_its_group() -> None:
    runner = Doubler()
    runner.release.clear()
    committer = GroupCommitter(runner.run, max_group_size=8, name="test")
    cancelled = asyncio.ensure_future(committer.submit(2))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    runner.release.set()

    assert await committer.submit(4) == 8
    assert runner.groups == [[2], [4]]


async def test_requests_submitted_together_join_one_group_and_each_gets_its_own_outcome() -> None:
    runner = Doubler()
    runner.release.clear()
    committer = GroupCommitter(runner.run, max_group_size=8, name="test")
    first = asyncio.ensure_future(committer.submit(2))
    await asyncio.sleep(0)
    together = asyncio.ensure_future(committer.submit_many([4, 5, 6]))
    await asyncio.sleep(0)
    runner.release.set()

    assert await first == 4
    outcomes = await together
    assert outcomes[0] == 8 and outcomes[2] == 12
    assert isinstance(outcomes[1], ValueError)  # that request's own failure, returned, not raised
    assert runner.groups == [[2], [4, 5, 6]]


async def test_a_failed_group_fails_every_request_submitted_together() -> None:
    committer = GroupCommitter(Doubler().run, max_group_size=8, name="test")

    outcomes = await committer.submit_many([2, -1])

    assert [type(outcome) for outcome in outcomes] == [RuntimeError, RuntimeError]
    assert await committer.submit_many([]) == []
