"""A batch worker process: consumes dispatch messages and runs their tasks on the providers.

Several workers may run (competing consumers). On stop (SIGTERM) it takes no new messages, lets
the tasks in progress finish within a grace period, then stops the rest and hands them back:
queued and dispatched again at once, for another worker to claim without waiting for their leases
to expire (ADR-139). Messages it had not started go back to the queue unacknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from reelbatch.proto.events.v1 import events_pb2

from libs.config import Settings, load_settings
from libs.lifecycle import run_process, spare_the_garbage_collector, stop_loops, supervise
from libs.messaging.contract import DISPATCH_QUEUE
from libs.telemetry import configure_telemetry
from services.batch.bootstrap import build_worker
from services.batch.domain.provider import VideoProvider
from services.batch.entrypoints.consumer import DispatchConsumer

log = logging.getLogger(__name__)

DRAIN_GRACE_SECONDS = 10.0
LOOP_STOP_SECONDS = 5.0
# After a hand-back, how long the messages of the stopped tasks get to be acknowledged.
HAND_BACK_ACK_SECONDS = 1.0


async def run_worker(
    settings: Settings,
    stopping: asyncio.Event,
    ready: asyncio.Event | None = None,
    *,
    grace_seconds: float = DRAIN_GRACE_SECONDS,
    providers: Mapping[str, VideoProvider] | None = None,
) -> None:
    """Runs a worker until `stopping` is set, then drains and shuts down. Does not migrate."""
    worker = await build_worker(settings, providers)
    # Leases, outcomes and the relay must outlive the drain of the tasks in progress.
    after_drain = asyncio.Event()
    writer = asyncio.create_task(worker.writer.run(), name="batch-outcome-writer")
    loops = [
        supervise("batch-lease-heartbeat", worker.executor.keep_leases(after_drain), stopping),
        supervise("batch-worker-outbox-relay", worker.relay.run(after_drain), stopping),
        supervise("batch-orphaned-provider-jobs", worker.orphaned_jobs.run(stopping), stopping),
    ]
    consumer = DispatchConsumer(worker.executor)
    try:
        await worker.bus.consume(
            DISPATCH_QUEUE,
            consumer,
            [events_pb2.TaskDispatch],
            prefetch=settings.worker_prefetch,
            max_batch=1,
            concurrency=settings.worker_prefetch,
        )
        if ready is not None:
            ready.set()
        await stopping.wait()
        if not await consumer.drain(grace_seconds):
            running = worker.executor.in_flight
            try:
                handed_back = await worker.executor.hand_back()
            except Exception:
                # The database is unreachable: the leases expire and recovery dispatches the tasks.
                log.exception("could not hand back %d running tasks", running)
            else:
                log.warning(
                    "%d tasks still running after %.1fs: %d handed back", running, grace_seconds, handed_back
                )
            # The messages of the stopped tasks are finished now (acknowledged); the others go
            # back to the queue when the bus closes.
            await consumer.drain(HAND_BACK_ACK_SECONDS)
    finally:
        after_drain.set()
        # Closing the bus cancels the handlers still running; unacked messages go back to the queue.
        await worker.bus.close()
        await stop_loops(loops, LOOP_STOP_SECONDS)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await worker.database.close()


def main() -> None:
    """Process entry point: `python -m services.batch.entrypoints.worker`."""
    settings = load_settings()
    configure_telemetry("worker", settings.log_level)
    spare_the_garbage_collector()
    run_process(lambda stopping: run_worker(settings, stopping))


if __name__ == "__main__":
    main()
