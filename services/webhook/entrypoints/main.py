"""The webhook process: gRPC server, event consumer and deliverer loop, until told to stop."""

from __future__ import annotations

import asyncio
import logging

import grpc
from reelbatch.proto.webhook.v1 import webhook_pb2_grpc

from libs.config import Settings, load_settings
from libs.lifecycle import run_process, stop_loops, supervise
from libs.messaging.contract import WEBHOOK_EVENTS_QUEUE, Bus
from libs.rpc.server import DependencyMonitor, start_grpc_server
from libs.rpc.tls import tls_from_settings
from libs.telemetry import backlog_gauges, configure_telemetry
from services.webhook.bootstrap import bootstrap
from services.webhook.entrypoints.consumer import start_event_consumer
from services.webhook.entrypoints.deliverer import Deliverer
from services.webhook.entrypoints.grpc_servicer import SERVICE_NAME, WebhookServicer

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 5.0


async def serve(
    settings: Settings,
    stopping: asyncio.Event,
    ready: asyncio.Event | None = None,
    *,
    bus: Bus | None = None,
) -> None:
    """Runs webhook until `stopping` is set, then stops and closes. Does not run migrations.

    In-flight sends are cancelled at shutdown without recording anything: their lease expires
    and the message is sent again with the same webhook-id.
    """
    app = await bootstrap(settings, bus=bus)
    deliverer_task: asyncio.Task[None] | None = None
    watchers: list[asyncio.Task[None]] = []
    try:
        servicer = WebhookServicer(app.handlers)

        def register(server: grpc.aio.Server) -> None:
            webhook_pb2_grpc.add_WebhookServiceServicer_to_server(servicer, server)

        server = await start_grpc_server(
            settings.webhook_grpc_addr, [register], [SERVICE_NAME], tls=tls_from_settings(settings)
        )
        monitor = DependencyMonitor(
            server,
            {"database": app.database.ping, "broker": app.bus.ping},
            interval_seconds=settings.health_check_interval_seconds,
        )
        gauges = backlog_gauges().watch_queues(app.bus, [WEBHOOK_EVENTS_QUEUE])
        sampling = gauges.run(stopping, settings.backlog_sample_seconds)
        watchers = [
            supervise("webhook-dependency-monitor", monitor.run(stopping), stopping),
            supervise("webhook-backlog-gauges", sampling, stopping),
        ]
        try:
            await start_event_consumer(app.bus, app.handlers, settings.public_base_url)
            deliverer = Deliverer(
                app.handlers,
                concurrency=settings.webhook_concurrency,
                claim_batch_size=settings.webhook_claim_batch_size,
                poll_seconds=settings.webhook_poll_seconds,
            )
            deliverer_task = supervise("webhook-deliverer", deliverer.run(stopping), stopping)
            log.info("webhook serving gRPC on port %d", server.port)
            if ready is not None:
                ready.set()
            await stopping.wait()
        finally:
            await server.stop(SHUTDOWN_GRACE_SECONDS)
    finally:
        await stop_loops([deliverer_task] if deliverer_task else [], watchers, SHUTDOWN_GRACE_SECONDS)
        await app.close()


def main() -> None:
    """Process entry point: `python -m services.webhook.entrypoints.main`."""
    settings = load_settings()
    configure_telemetry("webhook", settings.log_level)

    async def run(stopping: asyncio.Event) -> None:
        await serve(settings, stopping)

    run_process(run)


if __name__ == "__main__":
    main()
