"""The batch server process: gRPC API, settlement consumer, outbox relay and recovery loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import astuple

from reelbatch.proto.batch.v1 import batch_pb2_grpc
from reelbatch.proto.events.v1 import events_pb2

from libs.config import Settings, load_settings
from libs.lifecycle import run_process, sleep_or_stop, supervise
from libs.messaging.contract import BATCH_SETTLEMENTS_QUEUE, DISPATCH_QUEUE
from libs.rpc.server import DependencyMonitor, start_grpc_server
from libs.rpc.tls import tls_from_settings
from libs.telemetry import backlog_gauges, configure_telemetry
from services.batch.bootstrap import build_server
from services.batch.entrypoints.consumer import SettlementConsumer
from services.batch.entrypoints.grpc_servicer import SERVICE_NAME, BatchServicer
from services.batch.handlers import BatchHandlers

log = logging.getLogger(__name__)

GRPC_GRACE_SECONDS = 5.0
LOOP_STOP_SECONDS = 5.0
SETTLEMENT_CHUNK = 100
# A settlement ends a batch's life (the customer polls for it): wait only briefly to fill a chunk,
# a burst of settlements is already in the prefetch buffer together.
SETTLEMENT_CHUNK_WAIT_SECONDS = 0.005


async def run_recovery(handlers: BatchHandlers, settings: Settings, stopping: asyncio.Event) -> None:
    """Repairs interrupted work every recovery interval until `stopping` is set."""
    while not stopping.is_set():
        try:
            report = await handlers.recovery.recover_once(
                reserving_grace_seconds=settings.reserving_grace_seconds
            )
        except Exception:
            # A database outage must not end the loop: the next round repairs what this one could not.
            log.exception("recovery round failed")
        else:
            if any(astuple(report)):
                log.info("recovery: %s", report)
        await sleep_or_stop(stopping, settings.recovery_interval_seconds)


async def stop_loops(loops: Iterable[asyncio.Task[None]], timeout: float) -> None:
    """Waits for loops that watch `stopping` to return; cancels those that do not in time."""
    pending = [loop for loop in loops if not loop.done()]
    if pending:
        _, late = await asyncio.wait(pending, timeout=timeout)
        for loop in late:
            loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)


async def serve(settings: Settings, stopping: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Runs the batch server until `stopping` is set, then shuts down cleanly. Does not migrate."""
    server = await build_server(settings)
    try:
        servicer = BatchServicer(server.handlers)
        grpc_server = await start_grpc_server(
            settings.batch_grpc_addr,
            [lambda grpc: batch_pb2_grpc.add_BatchServiceServicer_to_server(servicer, grpc)],
            [SERVICE_NAME],
            tls=tls_from_settings(settings),
        )
        await server.bus.consume(
            BATCH_SETTLEMENTS_QUEUE,
            SettlementConsumer(server.handlers),
            [events_pb2.BatchSettled],
            prefetch=SETTLEMENT_CHUNK,
            max_batch=SETTLEMENT_CHUNK,
            max_wait_seconds=SETTLEMENT_CHUNK_WAIT_SECONDS,
        )
        monitor = DependencyMonitor(
            grpc_server,
            {"database": server.database.ping, "broker": server.bus.ping},
            interval_seconds=settings.health_check_interval_seconds,
        )
        gauges = backlog_gauges().watch_outbox("batch", server.relay)
        gauges.watch_queues(server.bus, [DISPATCH_QUEUE, BATCH_SETTLEMENTS_QUEUE])
        sampling = gauges.run(stopping, settings.backlog_sample_seconds)
        loops = [
            supervise("batch-outbox-relay", server.relay.run(stopping), stopping),
            supervise("batch-recovery", run_recovery(server.handlers, settings, stopping), stopping),
            supervise("batch-dependency-monitor", monitor.run(stopping), stopping),
            supervise("batch-backlog-gauges", sampling, stopping),
        ]
        log.info("batch server listening on port %d", grpc_server.port)
        if ready is not None:
            ready.set()
        await stopping.wait()
        await grpc_server.stop(GRPC_GRACE_SECONDS)
        await stop_loops(loops, LOOP_STOP_SECONDS)
    finally:
        await server.close()


def main() -> None:
    """Process entry point: `python -m services.batch.entrypoints.main`."""
    settings = load_settings()
    configure_telemetry("batch", settings.log_level)
    run_process(lambda stopping: serve(settings, stopping))


if __name__ == "__main__":
    main()
