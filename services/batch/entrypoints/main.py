"""The batch server process: gRPC API, settlement consumer, outbox relay and recovery loop
(see libs/service_process.py for its life). Workers are separate processes (`worker.py`)."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import astuple

from reelbatch.proto.batch.v1 import batch_pb2_grpc
from reelbatch.proto.events.v1 import events_pb2

from libs.config import Settings
from libs.lifecycle import sleep_or_stop
from libs.messaging.contract import BATCH_SETTLEMENTS_QUEUE, DISPATCH_QUEUE
from libs.service_process import GrpcService, ServiceProcess, backend_process
from libs.telemetry import backlog_gauges
from services.batch.bootstrap import build_server
from services.batch.entrypoints.consumer import SettlementConsumer
from services.batch.entrypoints.grpc_servicer import SERVICE_NAME, BatchServicer
from services.batch.handlers import BatchHandlers

log = logging.getLogger(__name__)

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


async def build_process(settings: Settings) -> ServiceProcess:
    """The batch server process, wired and not yet started. Does not migrate."""
    server = await build_server(settings)
    service = GrpcService(
        settings.grpc_listen("batch"),
        functools.partial(batch_pb2_grpc.add_BatchServiceServicer_to_server, BatchServicer(server.handlers)),
        SERVICE_NAME,
    )

    gauges = backlog_gauges().watch_outbox("batch", server.relay)
    gauges.watch_queues(server.connections.bus, [DISPATCH_QUEUE, BATCH_SETTLEMENTS_QUEUE])
    return (
        backend_process("batch", settings, service, server.connections, gauges)
        .add_consumer(
            lambda: server.connections.bus.consume(
                BATCH_SETTLEMENTS_QUEUE,
                SettlementConsumer(server.handlers),
                [events_pb2.BatchSettled],
                prefetch=SETTLEMENT_CHUNK,
                max_batch=SETTLEMENT_CHUNK,
                max_wait_seconds=SETTLEMENT_CHUNK_WAIT_SECONDS,
            )
        )
        .add_loop("batch-outbox-relay", server.relay.run)
        .add_loop("batch-recovery", lambda stopping: run_recovery(server.handlers, settings, stopping))
        .add_loop("batch-invalidations", server.invalidations.run, holds_work=False)
    )


async def serve(settings: Settings, stopping: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Runs the batch server until `stopping` is set, then drains and closes."""
    await (await build_process(settings)).run(stopping, ready)
