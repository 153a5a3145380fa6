"""The deliverer loop: claim due messages, send each in its own coroutine, bounded in number.

A hanging endpoint holds only the slots of its own messages; the loop keeps claiming for the
others as soon as any slot frees up. When the process stops, the loop claims nothing more and the
sends in flight finish within the process's grace period; those still running when it ends are
cancelled and their messages released at once (due now, same webhook-id) for any deliverer to
send again, instead of waiting for their lease to expire (ADR-139).
"""

from __future__ import annotations

import asyncio
import logging

from libs.lifecycle import sleep_or_stop
from services.webhook.domain.records import ClaimedMessage
from services.webhook.use_cases.handlers import WebhookHandlers

log = logging.getLogger(__name__)

OUTAGE_BACKOFF_SECONDS = 1.0


class Deliverer:
    """Runs until `stopping`, then lets the sends in flight finish until it is cancelled (the end
    of the grace period); sends still running then are cancelled and their messages released."""

    def __init__(
        self, handlers: WebhookHandlers, *, concurrency: int, claim_batch_size: int, poll_seconds: float
    ) -> None:
        self._handlers = handlers
        self._concurrency = concurrency
        self._claim_batch_size = claim_batch_size
        self._poll_seconds = poll_seconds
        self._in_flight: dict[asyncio.Task[None], ClaimedMessage] = {}
        self._slot_freed = asyncio.Event()

    async def run(self, stopping: asyncio.Event) -> None:
        try:
            while not stopping.is_set():
                wanted = min(self._concurrency - len(self._in_flight), self._claim_batch_size)
                claimed: list[ClaimedMessage] = []
                if wanted > 0:
                    try:
                        claimed = await self._handlers.claim_due(wanted)
                    except Exception:
                        # A database outage must not end the process: wait and claim again.
                        log.warning("claiming webhook messages failed; retrying", exc_info=True)
                        await sleep_or_stop(stopping, max(self._poll_seconds, OUTAGE_BACKOFF_SECONDS))
                        continue
                for message in claimed:
                    task = asyncio.create_task(self._deliver(message), name=f"webhook-{message.message_id}")
                    self._in_flight[task] = message
                    task.add_done_callback(self._finished)
                # A full claim means more may be due: claim again at once while slots remain.
                if not claimed or len(claimed) < wanted:
                    await self._wait_for_work(stopping)
            # Stopping: the sends in flight finish; the process cancels this wait when its grace
            # period ends.
            if self._in_flight:
                await asyncio.wait(set(self._in_flight))
        finally:
            await self._release_unfinished()

    async def _release_unfinished(self) -> None:
        """Cancels the sends still in flight and releases their messages for an immediate retry."""
        unfinished = dict(self._in_flight)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        if not unfinished:
            return
        try:
            released = await self._handlers.release(list(unfinished.values()))
        except Exception:
            # The database is unreachable: their leases expire and they are sent again then.
            log.exception("could not release %d webhook messages in flight", len(unfinished))
        else:
            log.warning("released %d webhook messages still in flight for another deliverer", released)

    async def _wait_for_work(self, stopping: asyncio.Event) -> None:
        self._slot_freed.clear()
        waiters = [
            asyncio.create_task(self._slot_freed.wait()),
            asyncio.create_task(sleep_or_stop(stopping, self._poll_seconds)),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._slot_freed.set()

    async def _deliver(self, message: ClaimedMessage) -> None:
        try:
            await self._handlers.deliver(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease expires and another pass retries it; one bad message must not stop the loop.
            log.exception("delivery of webhook message %s failed unexpectedly", message.message_id)
