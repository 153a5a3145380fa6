"""The webhook process: gRPC API, event consumer and deliverer loop (see libs/service_process.py).

In-flight sends still running after the grace period are cancelled without recording anything:
their lease expires and the message is sent again with the same webhook-id.
"""

from __future__ import annotations

import asyncio
import functools

from reelbatch.proto.webhook.v1 import webhook_pb2_grpc

from libs.config import Settings
from libs.messaging.contract import WEBHOOK_EVENTS_QUEUE
from libs.service_process import GrpcService, ServiceProcess, backend_process
from libs.telemetry import backlog_gauges
from services.webhook.bootstrap import bootstrap
from services.webhook.entrypoints.consumer import start_event_consumer
from services.webhook.entrypoints.deliverer import Deliverer
from services.webhook.entrypoints.grpc_servicer import SERVICE_NAME, WebhookServicer


async def build_process(settings: Settings) -> ServiceProcess:
    """The webhook process, wired and not yet started. Does not run migrations."""
    app = await bootstrap(settings)
    service = GrpcService(
        settings.grpc_listen("webhook"),
        functools.partial(
            webhook_pb2_grpc.add_WebhookServiceServicer_to_server, WebhookServicer(app.handlers)
        ),
        SERVICE_NAME,
    )

    gauges = backlog_gauges().watch_queues(app.connections.bus, [WEBHOOK_EVENTS_QUEUE])
    deliverer = Deliverer(
        app.handlers,
        concurrency=settings.webhook_concurrency,
        claim_batch_size=settings.webhook_claim_batch_size,
        poll_seconds=settings.webhook_poll_seconds,
    )
    return (
        backend_process("webhook", settings, service, app.connections, gauges, clients=[app.sender])
        .add_consumer(
            lambda: start_event_consumer(app.connections.bus, app.handlers, settings.public_base_url)
        )
        .add_loop("webhook-deliverer", deliverer.run)
    )


async def serve(settings: Settings, stopping: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Runs webhook until `stopping` is set, then drains and closes."""
    await (await build_process(settings)).run(stopping, ready)
