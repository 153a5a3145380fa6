"""The billing process entry point: starts, serves, and shuts down cleanly when told to stop."""

from __future__ import annotations

import asyncio

from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.config import Settings
from libs.rpc.client import open_channel
from services.billing.entrypoints.main import serve
from tests.stack import free_port


async def test_serve_answers_grpc_once_ready_and_returns_when_stopping_is_set(
    billing_database_url: str, amqp_url: str
) -> None:
    port = free_port()
    settings = Settings(
        database_url=billing_database_url,
        amqp_url=amqp_url,
        billing_grpc_addr=f"127.0.0.1:{port}",
        outbox_poll_seconds=0.2,
    )
    stopping, ready = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(serve(settings, stopping, ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        channel = open_channel(f"127.0.0.1:{port}")
        pricing = await billing_pb2_grpc.BillingServiceStub(channel).GetPricing(
            billing_pb2.GetPricingRequest()
        )
        await channel.close(grace=None)
        assert {m.model: m.credits_per_video for m in pricing.models}["sora-2"] == 10
    finally:
        stopping.set()
        await asyncio.wait_for(running, 15)
    assert running.exception() is None
