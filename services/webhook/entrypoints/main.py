"""The webhook process: gRPC server, event consumer and deliverer loop, until told to stop."""

from __future__ import annotations

import asyncio
import logging

import grpc
from reelbatch.proto.webhook.v1 import webhook_pb2_grpc

from libs.bus import Bus
from libs.config import Settings, load_settings
from libs.lifecycle import run_process, supervise
from libs.rpc.server import start_grpc_server
from libs.telemetry import configure_logging
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
    try:
        servicer = WebhookServicer(app.handlers)

        def register(server: grpc.aio.Server) -> None:
            webhook_pb2_grpc.add_WebhookServiceServicer_to_server(servicer, server)

        server = await start_grpc_server(settings.webhook_grpc_addr, [register], [SERVICE_NAME])
        try:
            await start_event_consumer(app.bus, app.handlers)
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
        if deliverer_task is not None:
            try:
                await asyncio.wait_for(deliverer_task, SHUTDOWN_GRACE_SECONDS)
            except TimeoutError:
                log.warning("webhook deliverer did not stop within the grace period; cancelled")
        await app.close()


def main() -> None:
    """Process entry point: `python -m services.webhook.entrypoints.main`."""
    settings = load_settings()
    configure_logging("webhook", settings.log_level)

    async def run(stopping: asyncio.Event) -> None:
        await serve(settings, stopping)

    run_process(run)


if __name__ == "__main__":
    main()
