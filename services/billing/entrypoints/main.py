"""The billing process: gRPC API, task-outcome consumer, outbox relay (see libs/service_process.py)."""

from __future__ import annotations

import asyncio
import functools

from reelbatch.proto.billing.v1 import billing_pb2_grpc

from libs.config import Settings
from libs.messaging.contract import BILLING_OUTCOMES_QUEUE
from libs.service_process import GrpcService, ServiceProcess, backend_process
from libs.telemetry import backlog_gauges
from services.billing.bootstrap import bootstrap
from services.billing.entrypoints.consumer import start_outcome_consumer
from services.billing.entrypoints.rpc.servicer import SERVICE_NAME, BillingServicer


async def build_process(settings: Settings) -> ServiceProcess:
    """The billing process, wired and not yet started. Does not run migrations."""
    app = await bootstrap(settings)
    service = GrpcService(
        settings.grpc_listen("billing"),
        functools.partial(
            billing_pb2_grpc.add_BillingServiceServicer_to_server, BillingServicer(app.handlers)
        ),
        SERVICE_NAME,
    )

    gauges = backlog_gauges().watch_outbox("billing", app.relay)
    gauges.watch_queues(app.connections.bus, [BILLING_OUTCOMES_QUEUE])
    return (
        backend_process("billing", settings, service, app.connections, gauges)
        .add_consumer(
            lambda: start_outcome_consumer(
                app.connections.bus,
                app.handlers,
                chunk_size=settings.billing_chunk_size,
                chunk_wait_seconds=settings.billing_chunk_wait_seconds,
            )
        )
        .add_loop("billing-outbox-relay", app.relay.run)
    )


async def serve(settings: Settings, stopping: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Runs billing until `stopping` is set, then drains and closes."""
    await (await build_process(settings)).run(stopping, ready)
