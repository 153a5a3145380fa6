"""Fixtures of the security tests: billing over real gRPC on a migrated database, and one running
distributed stack (every service its own process) shared by the module that needs it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from reelbatch.proto.billing.v1 import billing_pb2_grpc

from libs.db import Database
from libs.price_list import DEFAULT_PRICING
from libs.rpc.client import open_channel
from libs.rpc.server import start_grpc_server
from services.billing.adapters.repository import BillingRepository
from services.billing.bootstrap import migrate, price_list
from services.billing.entrypoints.rpc.servicer import SERVICE_NAME, BillingServicer
from services.billing.use_cases.handlers import BillingHandlers
from tests.fakes.stripe_checkout import FakeStripe, running_fake_stripe, stack_settings, webhook_url_of
from tests.invariants import wait_for_all_settled
from tests.isolation import create_migrated_database, create_vhost, delete_vhost, drop_database
from tests.rest_api import Api
from tests.stack import STRIPE_WEBHOOK_SECRET, Stack

# Known to the tests so they can sign links themselves (an expired link with a valid signature).
VIDEO_URL_SECRET = "security-tests-video-secret-0123456789"


@pytest.fixture(scope="package")
def billing_database_url(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
async def billing_handlers(billing_database_url: str) -> AsyncIterator[BillingHandlers]:
    database = Database(billing_database_url, pool_size=4)
    yield BillingHandlers(
        BillingRepository(database), price_list(dict(DEFAULT_PRICING)), outcome_source=None, chunk_size=200
    )
    await database.close()


@pytest.fixture
async def billing(
    billing_handlers: BillingHandlers,
) -> AsyncIterator[billing_pb2_grpc.BillingServiceAsyncStub]:
    """A billing gRPC server on a free port (plaintext) and a stub talking to it."""
    servicer = BillingServicer(billing_handlers)

    def register(server: grpc.aio.Server) -> None:
        billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)

    server = await start_grpc_server("127.0.0.1:0", [register], [SERVICE_NAME])
    channel = open_channel(f"127.0.0.1:{server.port}")
    yield billing_pb2_grpc.BillingServiceStub(channel)
    await channel.close(None)
    await server.stop(0)


@pytest.fixture(scope="package")
def fake_stripe() -> Iterator[FakeStripe]:
    """Stripe's API as a local fake: the console's "buy credits" opens real Checkout Sessions."""
    with running_fake_stripe(STRIPE_WEBHOOK_SECRET) as state:
        yield state


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory, fake_stripe: FakeStripe) -> Iterator[Stack]:
    """The whole system as separate processes, with security limits the tests can reach."""
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    workdir = Path(tmp_path_factory.mktemp("security-stack"))
    running = Stack(
        database_url,
        amqp_url,
        workdir,
        workers=1,
        overrides={
            "REELBATCH_VIDEO_URL_SECRET": VIDEO_URL_SECRET,
            "REELBATCH_MAX_BODY_BYTES": str(8 * 1024 * 1024),
            # The fuzzer sends many requests with one key; the rate limit has its own unit tests.
            "REELBATCH_RATE_LIMIT_PER_SECOND": "1000",
            "REELBATCH_RATE_LIMIT_BURST": "10000",
            "REELBATCH_ADMIN_AUTH_MAX_FAILURES": "10000",
            **stack_settings(fake_stripe),
        },
        migrated=True,
    )
    fake_stripe.webhook_url = webhook_url_of(running.base_url)
    try:
        running.start_all()
        yield running
        wait_for_all_settled(database_url)
    finally:
        codes = running.stop_all()
        drop_database(db_name)
        delete_vhost(vhost)
        unclean = {name: code for name, code in codes.items() if code not in (0, -9)}
        assert not unclean, f"processes did not stop cleanly: {unclean}"


@pytest.fixture(scope="package")
def api(stack: Stack) -> Iterator[Api]:
    client = Api(stack.base_url)
    yield client
    client.http.close()
