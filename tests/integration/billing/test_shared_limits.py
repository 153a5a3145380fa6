"""Billing's shared limits and invalidations on a real PostgreSQL: the one-statement token bucket
against its rule, concurrent draws, the sweep, and NOTIFY reaching the invalidation hub."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.db import Database
from libs.invalidations import InvalidationFeed, InvalidationKind
from libs.token_bucket import draw
from services.billing.adapters.invalidation_hub import InvalidationHub, announce_prices
from services.billing.adapters.sql.limits import draw_tokens, sweep_full_buckets
from services.billing.entrypoints.rpc.servicer import BillingServicer
from services.billing.use_cases.handlers import BillingHandlers

from .billing_testkit import serving


def _bucket() -> str:
    return f"test:{uuid.uuid4()}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rate=st.floats(min_value=0.01, max_value=100),
    burst=st.integers(min_value=1, max_value=50),
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=3),
            st.integers(min_value=0, max_value=20),
            st.integers(min_value=0, max_value=5),
        ),
        min_size=1,
        max_size=12,
    ),
)
async def test_one_statement_follows_the_token_bucket_rule(
    database: Database, rate: float, burst: int, steps: list[tuple[float, int, int]]
) -> None:
    bucket, now, model = _bucket(), 1_000_000.0, None
    async with database.raw_connection() as conn:
        for elapsed, wanted, returned in steps:
            now += elapsed
            drawn = await draw_tokens(
                conn, bucket, wanted=wanted, rate=rate, burst=burst, returned=returned, now=now
            )
            expected = draw(model, now, wanted=wanted, rate=rate, burst=burst, returned=returned)
            if wanted or returned:
                model = expected.bucket
            assert drawn.granted == expected.granted
            assert drawn.tokens_left == pytest.approx(expected.bucket.tokens, abs=1e-6)


async def test_concurrent_draws_never_grant_more_than_the_bucket_holds(database: Database) -> None:
    bucket = _bucket()

    async def one() -> int:
        async with database.raw_connection() as conn:
            return (await draw_tokens(conn, bucket, wanted=1, rate=0.001, burst=20)).granted

    granted = await asyncio.gather(*(one() for _ in range(60)))

    assert sum(granted) == 20


async def test_a_read_writes_nothing_and_a_missing_bucket_reads_full(database: Database) -> None:
    bucket = _bucket()
    async with database.raw_connection() as conn:
        read = await draw_tokens(conn, bucket, wanted=0, rate=1.0, burst=7)
        assert (read.granted, read.tokens_left) == (0, 7.0)
        rows = await (
            await conn.execute("SELECT count(*) FROM billing.rate_buckets WHERE bucket = %s", (bucket,))
        ).fetchone()
    assert rows == (0,)


async def test_the_sweep_deletes_only_buckets_that_are_full_again(database: Database) -> None:
    full, busy = _bucket(), _bucket()
    async with database.raw_connection() as conn:
        await draw_tokens(conn, full, wanted=1, rate=10.0, burst=5, now=1000.0)  # full again at 1000.1
        await draw_tokens(conn, busy, wanted=5, rate=0.001, burst=5, now=1000.0)  # full at 6000
        await sweep_full_buckets(conn, now=1100.0)
        left = await (
            await conn.execute(
                "SELECT bucket FROM billing.rate_buckets WHERE bucket IN (%s, %s)", (full, busy)
            )
        ).fetchall()
    assert left == [(busy,)]


@pytest.fixture
async def hub(billing_database_url: str) -> AsyncIterator[InvalidationHub]:
    listening = InvalidationHub(billing_database_url)
    stopping = asyncio.Event()
    task = asyncio.create_task(listening.run(stopping))
    for _ in range(200):
        if listening.listening:
            break
        await asyncio.sleep(0.01)
    yield listening
    stopping.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _end_listen_connections(database: Database) -> None:
    """Ends the hub's LISTEN connection from the server side, as a PostgreSQL restart would."""
    async with database.raw_connection() as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%%' AND datname = current_database()"
        )


async def _next(stream: AsyncGenerator[tuple[InvalidationKind, str], None]) -> tuple[InvalidationKind, str]:
    return await asyncio.wait_for(anext(stream), 5)


async def test_a_revocation_is_announced_when_it_commits(
    hub: InvalidationHub, handlers: BillingHandlers, billing_database_url: str
) -> None:
    tenant_id = await handlers.create_tenant("Invalidated")
    issued = await handlers.create_api_key(tenant_id)
    stream = hub.follow()
    assert await _next(stream) == (InvalidationKind.SUBSCRIBED, "")

    await handlers.revoke_api_key(tenant_id, issued.key_id)
    assert await _next(stream) == (InvalidationKind.API_KEY, str(issued.key_id))
    await announce_prices(billing_database_url)
    assert await _next(stream) == (InvalidationKind.PRICES, "")
    await stream.aclose()


async def test_a_broken_listen_connection_ends_every_stream(hub: InvalidationHub, database: Database) -> None:
    stream = hub.follow()
    assert await _next(stream) == (InvalidationKind.SUBSCRIBED, "")

    await _end_listen_connections(database)

    with pytest.raises(StopAsyncIteration):
        await _next(stream)


@pytest.fixture
async def billing_stub(
    hub: InvalidationHub, handlers: BillingHandlers
) -> AsyncIterator[billing_pb2_grpc.BillingServiceAsyncStub]:
    async with serving(BillingServicer(handlers, hub)) as stub:
        yield stub


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")


async def test_a_feed_follows_billing_over_grpc_and_distrusts_caches_when_it_breaks(
    billing_stub: billing_pb2_grpc.BillingServiceAsyncStub, handlers: BillingHandlers, database: Database
) -> None:
    feed = InvalidationFeed(billing_stub, resubscribe_seconds=0.05)
    seen: list[tuple[InvalidationKind, str]] = []
    feed.subscribe(lambda kind, subject: seen.append((kind, subject)))
    stopping = asyncio.Event()
    following = asyncio.create_task(feed.run(stopping))
    try:
        await _until(lambda: feed.live)
        tenant_id = await handlers.create_tenant("Followed")
        issued = await handlers.create_api_key(tenant_id)
        await handlers.revoke_api_key(None, issued.key_id)
        await _until(lambda: (InvalidationKind.API_KEY, str(issued.key_id)) in seen)

        # The LISTEN connection dies: the stream ends, the feed stops trusting caches, then
        # subscribes again once billing listens again.
        await _end_listen_connections(database)
        await _until(lambda: not feed.live)
        await _until(lambda: feed.live)
        assert seen.count((InvalidationKind.EVERYTHING, "")) >= 2
    finally:
        stopping.set()
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)


async def test_a_draw_over_grpc_refuses_a_nonsense_rate(
    billing_stub: billing_pb2_grpc.BillingServiceAsyncStub,
) -> None:
    request = billing_pb2.TakeRateTokensRequest(bucket="x", wanted=1, rate_per_second=0, burst=1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await billing_stub.TakeRateTokens(request)

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_stream_opened_after_the_hub_stopped_ends_at_once(billing_database_url: str) -> None:
    stopped = InvalidationHub(billing_database_url)
    stopping = asyncio.Event()
    stopping.set()
    await stopped.run(stopping)

    assert [item async for item in stopped.follow()] == []
