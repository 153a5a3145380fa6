"""Group commit: concurrent requests that arrive while one transaction runs share the next one.

The classic answer to a hot row (one wallet, one tenant's dispatch window): instead of N callers
each taking the lock, writing and committing in turn, the first caller runs a group of one at once,
and everyone who arrives meanwhile waits for it and then goes together, in arrival order, in one
transaction. A quiet system pays no extra latency; a busy one pays at most one transaction's
wait and saves N-1 lock acquisitions, round trips and commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")

# A group's runner answers one outcome per request, in request order: its result, or the
# exception that request alone raises (the others of the group are unaffected).
GroupRunner = Callable[[Sequence[RequestT]], Awaitable[Sequence[ResultT | BaseException]]]


@dataclass
class _Waiting(Generic[RequestT, ResultT]):
    request: RequestT
    done: asyncio.Future[ResultT]


class GroupCommitter(Generic[RequestT, ResultT]):
    """Runs requests through `run_group` one group at a time, at most `max_group_size` per group.

    `run_group` gets the requests in arrival order and answers one outcome per request (a result
    or an exception for that request alone); if it raises, every request of the group gets that
    exception. A caller that is cancelled stops waiting, but its group still runs to its end:
    the outcome of a request that was submitted is never decided by whether its caller waited.
    """

    def __init__(self, run_group: GroupRunner[RequestT, ResultT], *, max_group_size: int, name: str) -> None:
        if max_group_size < 1:
            raise ValueError("max_group_size must be at least 1")
        self._run_group = run_group
        self._max_group_size = max_group_size
        self._name = name
        self._waiting: list[_Waiting[RequestT, ResultT]] = []
        self._running: asyncio.Task[None] | None = None

    async def submit(self, request: RequestT) -> ResultT:
        """The outcome of `request`, run alone or with those submitted while a group ran."""
        done: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        # Retrieved here too, so a failure whose caller stopped waiting is not reported as lost.
        done.add_done_callback(_retrieve)
        self._waiting.append(_Waiting(request, done))
        if self._running is None:
            self._running = asyncio.create_task(self._run_waiting(), name=self._name)
        # Shielded: cancelling a caller must not cancel the future the group will set.
        return await asyncio.shield(done)

    async def submit_many(self, requests: Sequence[RequestT]) -> list[ResultT | BaseException]:
        """The outcomes of `requests`, in order, each its result or its own exception; they join
        the waiting group together (a caller that already holds a group of requests, e.g. one RPC
        carrying several, pays one wait instead of one per request)."""
        loop = asyncio.get_running_loop()
        waiting = [_Waiting(request, loop.create_future()) for request in requests]
        for item in waiting:
            item.done.add_done_callback(_retrieve)
        self._waiting.extend(waiting)
        if waiting and self._running is None:
            self._running = asyncio.create_task(self._run_waiting(), name=self._name)
        outcomes: list[ResultT | BaseException] = []
        for item in waiting:
            try:
                outcomes.append(await asyncio.shield(item.done))
            except Exception as error:  # that request's own outcome
                outcomes.append(error)
        return outcomes

    async def _run_waiting(self) -> None:
        try:
            while self._waiting:
                group = self._waiting[: self._max_group_size]
                del self._waiting[: self._max_group_size]
                await self._run(group)
        finally:
            self._running = None

    async def _run(self, group: list[_Waiting[RequestT, ResultT]]) -> None:
        try:
            outcomes = await self._run_group([waiting.request for waiting in group])
            if len(outcomes) != len(group):
                raise RuntimeError(f"{self._name}: {len(outcomes)} outcomes for {len(group)} requests")
        except Exception as error:  # every request of the group fails with it
            for waiting in group:
                if not waiting.done.done():
                    waiting.done.set_exception(error)
            return
        for waiting, outcome in zip(group, outcomes, strict=True):
            if waiting.done.done():
                continue
            if isinstance(outcome, BaseException):
                waiting.done.set_exception(outcome)
            else:
                waiting.done.set_result(outcome)


def _retrieve(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()
