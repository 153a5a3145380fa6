"""The billing process: gRPC API, task-outcome consumer, outbox relay (see libs/service_process.py)."""

from __future__ import annotations

import asyncio

import grpc
from reelbatch.proto.billing.v1 import billing_pb2_grpc

from libs.config import Settings
from libs.messaging.contract import BILLING_OUTCOMES_QUEUE
from libs.rpc.tls import tls_from_settings
from libs.service_process import GrpcApi, Resources, ServiceProcess
from libs.telemetry import backlog_gauges
from services.billing.bootstrap import bootstrap
from services.billing.entrypoints.consumer import start_outcome_consumer
from services.billing.entrypoints.rpc.servicer import SERVICE_NAME, BillingServicer

GRACE_SECONDS = 5.0


async def build_process(settings: Settings) -> ServiceProcess:
    """The billing process, wired and not yet started. Does not run migrations."""
    app = await bootstrap(settings)
    servicer = BillingServicer(app.handlers)

    def register(server: grpc.aio.Server) -> None:
        billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)

    gauges = backlog_gauges().watch_outbox("billing", app.relay)
    gauges.watch_queues(app.bus, [BILLING_OUTCOMES_QUEUE])
    process = ServiceProcess(
        "billing",
        grace_seconds=GRACE_SECONDS,
        resources=Resources(bus=app.bus, channels=[app.batch_channel], database=app.database),
    )
    return (
        process.serve_grpc(
            GrpcApi(
                settings.billing_grpc_addr,
                [register],
                [SERVICE_NAME],
                tls=tls_from_settings(settings),
                probes={"database": app.database.ping, "broker": app.bus.ping},
                health_check_seconds=settings.health_check_interval_seconds,
            )
        )
        .add_consumer(
            lambda: start_outcome_consumer(
                app.bus,
                app.handlers,
                chunk_size=settings.billing_chunk_size,
                chunk_wait_seconds=settings.billing_chunk_wait_seconds,
            )
        )
        .add_loop("billing-outbox-relay", app.relay.run)
        .add_loop(
            "billing-backlog-gauges",
            lambda stopping: gauges.run(stopping, settings.backlog_sample_seconds),
            holds_work=False,
        )
    )


async def serve(settings: Settings, stopping: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Runs billing until `stopping` is set, then drains and closes."""
    await (await build_process(settings)).run(stopping, ready)
