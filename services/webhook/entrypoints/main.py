"""The webhook process: gRPC API, event consumer and deliverer loop (see libs/service_process.py).

In-flight sends still running after the grace period are cancelled without recording anything:
their lease expires and the message is sent again with the same webhook-id.
"""

from __future__ import annotations

import asyncio

import grpc
from reelbatch.proto.webhook.v1 import webhook_pb2_grpc

from libs.config import Settings
from libs.messaging.contract import WEBHOOK_EVENTS_QUEUE
from libs.rpc.tls import tls_from_settings
from libs.service_process import GrpcApi, Resources, ServiceProcess
from libs.telemetry import backlog_gauges
from services.webhook.bootstrap import bootstrap
from services.webhook.entrypoints.consumer import start_event_consumer
from services.webhook.entrypoints.deliverer import Deliverer
from services.webhook.entrypoints.grpc_servicer import SERVICE_NAME, WebhookServicer

GRACE_SECONDS = 5.0


async def build_process(settings: Settings) -> ServiceProcess:
    """The webhook process, wired and not yet started. Does not run migrations."""
    app = await bootstrap(settings)
    servicer = WebhookServicer(app.handlers)

    def register(server: grpc.aio.Server) -> None:
        webhook_pb2_grpc.add_WebhookServiceServicer_to_server(servicer, server)

    gauges = backlog_gauges().watch_queues(app.bus, [WEBHOOK_EVENTS_QUEUE])
    deliverer = Deliverer(
        app.handlers,
        concurrency=settings.webhook_concurrency,
        claim_batch_size=settings.webhook_claim_batch_size,
        poll_seconds=settings.webhook_poll_seconds,
    )
    process = ServiceProcess(
        "webhook",
        grace_seconds=GRACE_SECONDS,
        resources=Resources(
            bus=app.bus, clients=[app.sender], channels=[app.batch_channel], database=app.database
        ),
    )
    return (
        process.serve_grpc(
            GrpcApi(
                settings.webhook_grpc_addr,
                [register],
                [SERVICE_NAME],
                tls=tls_from_settings(settings),
                probes={"database": app.database.ping, "broker": app.bus.ping},
                health_check_seconds=settings.health_check_interval_seconds,
            )
        )
        .add_consumer(lambda: start_event_consumer(app.bus, app.handlers, settings.public_base_url))
        .add_loop("webhook-deliverer", deliverer.run)
        .add_loop(
            "webhook-backlog-gauges",
            lambda stopping: gauges.run(stopping, settings.backlog_sample_seconds),
            holds_work=False,
        )
    )


async def serve(settings: Settings, stopping: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Runs webhook until `stopping` is set, then drains and closes."""
    await (await build_process(settings)).run(stopping, ready)
