"""The billing process: gRPC API, task-outcome consumer, outbox relay (see libs/service_process.py)."""

from __future__ import annotations

import asyncio
import functools
import logging

import psycopg
from reelbatch.proto.billing.v1 import billing_pb2_grpc

from libs.config import Settings
from libs.lifecycle import sleep_or_stop
from libs.messaging.contract import BILLING_OUTCOMES_QUEUE
from libs.service_process import GrpcService, ServiceProcess, backend_process
from libs.telemetry import backlog_gauges
from services.billing.adapters.invalidation_hub import InvalidationHub, announce_prices
from services.billing.bootstrap import bootstrap
from services.billing.entrypoints.consumer import start_outcome_consumer
from services.billing.entrypoints.rpc.servicer import SERVICE_NAME, BillingServicer
from services.billing.use_cases.handlers import BillingHandlers

log = logging.getLogger(__name__)


async def build_process(settings: Settings) -> ServiceProcess:
    """The billing process, wired and not yet started. Does not run migrations."""
    app = await bootstrap(settings)
    invalidations = InvalidationHub(settings.database_url)
    service = GrpcService(
        settings.grpc_listen("billing"),
        functools.partial(
            billing_pb2_grpc.add_BillingServiceServicer_to_server,
            BillingServicer(app.handlers, invalidations),
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
        # Holds no work: cancelled at once on stop, which ends every invalidation stream, so
        # subscribers move to another replica instead of holding this one's shutdown.
        .add_loop("billing-invalidations", invalidations.run, holds_work=False)
        .add_loop("billing-price-announcement", lambda _: announce_prices_once(settings.database_url))
        .add_loop(
            "billing-rate-bucket-sweep", functools.partial(sweep_rate_buckets, app.handlers), holds_work=False
        )
        .add_loop("billing-auto-top-up", functools.partial(charge_top_ups, app.handlers, settings))
    )


async def announce_prices_once(database_url: str) -> None:
    """Tells every replica to forget remembered prices; a database outage only logs (the quote
    memo's own lifetime, 1 s, then bounds how long an old price is reused)."""
    try:
        await announce_prices(database_url)
    except psycopg.OperationalError:
        log.exception("could not announce this process's price list")


# Full buckets are deleted about this often (by every replica: a DELETE is safe concurrently).
RATE_BUCKET_SWEEP_SECONDS = 60.0


async def sweep_rate_buckets(handlers: BillingHandlers, stopping: asyncio.Event) -> None:
    """Deletes token buckets that are full again, every RATE_BUCKET_SWEEP_SECONDS, until stopping."""
    while not await sleep_or_stop(stopping, RATE_BUCKET_SWEEP_SECONDS):
        try:
            await handlers.sweep_rate_buckets()
        except Exception:
            # A database outage must not end the process: the next round sweeps what this one could not.
            log.exception("rate-bucket sweep failed")


# Purchases the top-up loop charges per round (each one Stripe call).
AUTO_TOP_UP_ROUND = 10


async def charge_top_ups(handlers: BillingHandlers, settings: Settings, stopping: asyncio.Event) -> None:
    """Charges the automatic top-ups crossings asked for (ADR-135), every
    `auto_top_up_interval_seconds` (at once again while a round was full), until stopping. Safe in
    every replica: purchases are leased `SKIP LOCKED`, and each is charged under its own Stripe
    Idempotency-Key, so a crash or a second replica never buys a second pack."""
    while True:
        try:
            leased = await handlers.charge_due_top_ups(AUTO_TOP_UP_ROUND, settings.auto_top_up_lease_seconds)
        except Exception:
            # A database outage must not end the process: the purchase stays pending and is retried.
            log.exception("automatic top-up round failed")
            leased = 0
        if leased < AUTO_TOP_UP_ROUND and await sleep_or_stop(
            stopping, settings.auto_top_up_interval_seconds
        ):
            return
        if stopping.is_set():
            return


async def serve(settings: Settings, stopping: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Runs billing until `stopping` is set, then drains and closes."""
    await (await build_process(settings)).run(stopping, ready)
