"""Orphaned provider jobs: jobs still running for tasks that already ended (ADR-110).

A task's job is normally stopped by the worker watching it (a cancelled batch, an attempt given
up). A job whose worker died is resumed by the next claim, unless the task never runs again: its
batch was cancelled while it waited to be dispatched again, or it failed for good. Such a job
would render unwatched; this sweep cancels it where the provider can stop jobs (Replicate, fal)
and records it as abandoned where it cannot (Veo on the Gemini API, OpenAI): it may still be
billed to us, never to the customer, whose task was refunded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from libs.lifecycle import sleep_or_stop
from services.batch.adapters.sql.provider_jobs import ProviderJobs
from services.batch.domain.provider import VideoProvider

log = logging.getLogger(__name__)

SWEEP_LIMIT = 100


class OrphanedJobs:
    """The worker's sweep of running jobs whose tasks ended."""

    def __init__(
        self,
        jobs: ProviderJobs,
        providers: Mapping[str, VideoProvider],
        *,
        interval_seconds: float,
        grace_seconds: float,
    ) -> None:
        self._jobs = jobs
        self._providers = providers
        self._interval = interval_seconds
        # Longer than a worker takes to record a job it stopped itself, so the two never race.
        self._grace = grace_seconds

    async def stop_once(self) -> int:
        """Takes over the orphaned jobs (up to a limit); returns how many the providers stopped."""
        taken = await self._jobs.take_orphans(self._grace, SWEEP_LIMIT)
        stopped = []
        for row_id, provider_name, handle in taken:
            stop = getattr(self._providers.get(provider_name), "stop_recorded", None)
            if stop is not None and handle and await stop(handle):
                stopped.append(row_id)
        await self._jobs.mark_stopped(stopped)
        if taken:
            log.warning(
                "stopped %d of %d provider jobs still running for ended tasks (the rest abandoned)",
                len(stopped),
                len(taken),
            )
        return len(stopped)

    async def run(self, stopping: asyncio.Event) -> None:
        """Sweeps every interval until `stopping` is set."""
        while not await sleep_or_stop(stopping, self._interval):
            try:
                await self.stop_once()
            except Exception:
                # The next round tries again; a crash of this loop would stop the worker.
                log.exception("sweep of orphaned provider jobs failed")
