"""The billing process: gRPC server, outcome consumer and outbox relay, until told to stop."""

from __future__ import annotations

import asyncio
import logging

import grpc
from reelbatch.proto.billing.v1 import billing_pb2_grpc

from libs.config import Settings, load_settings
from libs.lifecycle import run_process, stop_loops, supervise
from libs.messaging.contract import BILLING_OUTCOMES_QUEUE, Bus
from libs.rpc.server import DependencyMonitor, start_grpc_server
from libs.rpc.tls import tls_from_settings
from libs.telemetry import backlog_gauges, configure_telemetry
from services.billing.bootstrap import bootstrap
from services.billing.entrypoints.consumer import start_outcome_consumer
from services.billing.entrypoints.rpc.servicer import SERVICE_NAME, BillingServicer

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 5.0


async def serve(
    settings: Settings,
    stopping: asyncio.Event,
    ready: asyncio.Event | None = None,
    *,
    bus: Bus | None = None,
) -> None:
    """Runs billing until `stopping` is set, then drains and closes. Does not run migrations.

    `bus` lets an embedded deployment share its in-process bus (it is then not closed here).
    """
    app = await bootstrap(settings, bus=bus)
    relay_task: asyncio.Task[None] | None = None
    watchers: list[asyncio.Task[None]] = []
    try:
        servicer = BillingServicer(app.handlers)

        def register(server: grpc.aio.Server) -> None:
            billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)

        server = await start_grpc_server(
            settings.billing_grpc_addr, [register], [SERVICE_NAME], tls=tls_from_settings(settings)
        )
        monitor = DependencyMonitor(
            server,
            {"database": app.database.ping, "broker": app.bus.ping},
            interval_seconds=settings.health_check_interval_seconds,
        )
        gauges = backlog_gauges().watch_outbox("billing", app.relay)
        gauges.watch_queues(app.bus, [BILLING_OUTCOMES_QUEUE])
        sampling = gauges.run(stopping, settings.backlog_sample_seconds)
        watchers = [
            supervise("billing-dependency-monitor", monitor.run(stopping), stopping),
            supervise("billing-backlog-gauges", sampling, stopping),
        ]
        try:
            await start_outcome_consumer(
                app.bus,
                app.handlers,
                chunk_size=settings.billing_chunk_size,
                chunk_wait_seconds=settings.billing_chunk_wait_seconds,
            )
            relay_task = supervise("billing-outbox-relay", app.relay.run(stopping), stopping)
            log.info("billing serving gRPC on port %d", server.port)
            if ready is not None:
                ready.set()
            await stopping.wait()
        finally:
            await server.stop(SHUTDOWN_GRACE_SECONDS)
    finally:
        await stop_loops([relay_task] if relay_task else [], watchers, SHUTDOWN_GRACE_SECONDS)
        await app.close()


def main() -> None:
    """Process entry point: `python -m services.billing.entrypoints.main`."""
    settings = load_settings()
    configure_telemetry("billing", settings.log_level)

    async def run(stopping: asyncio.Event) -> None:
        await serve(settings, stopping)

    run_process(run)


if __name__ == "__main__":
    main()
