"""Two billing replicas behind one client target: a pool, not a standby (issue 27).

Real gRPC servers (the billing process entry point, twice) on 127.0.0.1 ports, on the same real
PostgreSQL and RabbitMQ. The client's target lists both replicas; calls must spread over both
before anything happens, and move to the survivor, with no failed call, when one replica stops.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.config import Settings
from libs.rpc.client import open_channel
from services.billing.entrypoints.main import serve
from services.billing.entrypoints.rpc.base import Context
from services.billing.entrypoints.rpc.reservations import ReservationRpcs
from services.billing.entrypoints.rpc.servicer import BillingServicer
from tests.stack import free_port

# Each of two replicas must serve at least this share of the calls (fair round robin gives 50%).
FAIR_SHARE = 0.35
CALLS = 400


@dataclass
class Replica:
    """One billing process running in this event loop."""

    port: int
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@pytest.fixture
def served_by(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """Calls of GetPricing counted by the servicer (one per replica) that answered them."""
    counts: Counter[int] = Counter()
    answer = ReservationRpcs.GetPricing

    async def counted(
        self: BillingServicer, request: billing_pb2.GetPricingRequest, context: Context
    ) -> billing_pb2.GetPricingResponse:
        counts[id(self)] += 1
        return await answer(self, request, context)

    monkeypatch.setattr(BillingServicer, "GetPricing", counted)
    return counts


@pytest.fixture
async def replicas(billing_database_url: str, amqp_url: str) -> AsyncIterator[list[Replica]]:
    started = [Replica(free_port()), Replica(free_port())]
    for replica in started:
        settings = Settings(
            database_url=billing_database_url,
            amqp_url=amqp_url,
            billing_grpc_listen=f"127.0.0.1:{replica.port}",
            outbox_poll_seconds=0.2,
            metrics_port=0,
        )
        ready = asyncio.Event()
        replica.task = asyncio.create_task(serve(settings, replica.stopping, ready))
        await asyncio.wait_for(ready.wait(), 20)
    yield started
    for replica in started:
        replica.stopping.set()
    await asyncio.wait_for(asyncio.gather(*(r.task for r in started if r.task)), 20)


async def _call(stub: billing_pb2_grpc.BillingServiceAsyncStub) -> grpc.StatusCode:
    try:
        await stub.GetPricing(billing_pb2.GetPricingRequest(), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_calls_spread_over_both_replicas_and_move_to_the_survivor_when_one_stops(
    served_by: Counter[int], replicas: list[Replica]
) -> None:
    target = ",".join(f"127.0.0.1:{replica.port}" for replica in replicas)
    channel = open_channel(target)
    stub = billing_pb2_grpc.BillingServiceStub(channel)
    try:
        # Connections come up one by one: wait (bounded) until both replicas have answered once.
        deadline = time.monotonic() + 10
        while len(served_by) < 2 and time.monotonic() < deadline:
            assert await _call(stub) == grpc.StatusCode.OK
        assert len(served_by) == 2, "the second replica never got a call"
        served_by.clear()

        for _ in range(CALLS // 20):
            assert set(await asyncio.gather(*(_call(stub) for _ in range(20)))) == {grpc.StatusCode.OK}
        shares = {replica: count / CALLS for replica, count in served_by.items()}
        print(f"shares of {CALLS} calls over 2 replicas: {sorted(shares.values())}")
        assert len(shares) == 2 and min(shares.values()) >= FAIR_SHARE, shares

        # Stop one replica (it drains: NOT_SERVING first) under a steady stream of calls.
        outcomes: list[grpc.StatusCode] = []
        stream_done = asyncio.Event()

        async def stream() -> None:
            while not stream_done.is_set():
                outcomes.extend(await asyncio.gather(*(_call(stub) for _ in range(5))))
                await asyncio.sleep(0.005)

        streaming = asyncio.create_task(stream())
        await asyncio.sleep(0.2)
        stopped = replicas[0]
        stopped.stopping.set()
        assert stopped.task is not None
        await asyncio.wait_for(stopped.task, 20)
        served_by.clear()
        await asyncio.sleep(0.5)
        stream_done.set()
        await streaming
        failed = [code for code in outcomes if code != grpc.StatusCode.OK]
        assert not failed, f"{len(failed)} of {len(outcomes)} calls failed: {set(failed)}"
        assert len(served_by) == 1 and sum(served_by.values()) >= 20, served_by
    finally:
        await channel.close(grace=None)
