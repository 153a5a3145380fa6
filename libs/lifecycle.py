"""Process life: run until SIGTERM/SIGINT (`run_process`, the one place signals are handled),
supervised background loops, and waits that a cancellation always ends."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import uvloop

log = logging.getLogger(__name__)

T = TypeVar("T")


async def wait_at_most(awaitable: Awaitable[T], seconds: float) -> T:
    """The result of `awaitable`, or TimeoutError once `seconds` have passed.

    Loops that run until their task is cancelled use this instead of `asyncio.wait_for`: on
    Python 3.11 a cancellation that arrives just as wait_for's awaitable completes is lost
    (CPython gh-86296), and the loop then never stops (seen as a consumer's close() hanging).
    """
    async with asyncio.timeout(seconds):
        return await awaitable


async def sleep_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleeps up to `seconds`; returns True if `stopping` was set meanwhile."""
    try:
        await wait_at_most(stopping.wait(), seconds)
    except TimeoutError:
        return False
    return True


def spare_the_garbage_collector() -> None:
    """Tunes the garbage collector of a service or worker process; call once, after the imports.

    A process allocates thousands of short-lived objects per request or dispatch chunk (rows,
    messages, futures); with the default threshold (700) young collections run hundreds of times a
    second and the older ones walk every long-lived object (modules, SQLAlchemy, telemetry) again
    and again: measured, about a fifth of a worker's CPU, and pauses in the tail of request
    latency. What the imports built is frozen out of the collector's sight and young collections
    are made rarer; reference counting still frees almost everything at once, so memory stays
    flat. Only in a process of its own (embedded mode and tests run services inside other
    processes).
    """
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def run_process(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Runs `main(stopping)`; SIGTERM or SIGINT sets `stopping`, and `main` is expected to return."""

    async def _run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await main(stopping)

    # uvloop roughly halves the event loop's own cost per request; every process runs on it.
    uvloop.run(_run())


def supervise(name: str, coro: Awaitable[None], stopping: asyncio.Event) -> asyncio.Task[None]:
    """Runs a background loop; if it dies unexpectedly the process stops rather than limp on."""

    async def _guard() -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background loop %s crashed; stopping the process", name)
            stopping.set()

    return asyncio.create_task(_guard(), name=name)


async def stop_loops(loops: Sequence[asyncio.Task[None]], timeout: float) -> None:
    """Waits up to `timeout` for loops that watch their stopping event to return; cancels the late ones.

    For processes that order their own shutdown (the batch worker); service processes get the
    same from `libs.service_process.ServiceProcess.close`.
    """
    pending = [loop for loop in loops if not loop.done()]
    if pending:
        _, late = await asyncio.wait(pending, timeout=timeout)
        for loop in late:
            log.warning("%s did not stop within %.1f s; cancelled", loop.get_name(), timeout)
            loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
