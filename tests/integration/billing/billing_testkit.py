"""Helpers shared by the billing integration tests (fakes, a clock, ledger invariant checks)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import grpc
from reelbatch.proto.billing.v1 import billing_pb2_grpc
from sqlalchemy import text

from libs.db import Database
from libs.rpc.client import open_channel
from libs.rpc.server import start_grpc_server
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import TaskOutcome
from services.billing.entrypoints.rpc.servicer import SERVICE_NAME, BillingServicer
from services.billing.use_cases.handlers import BillingHandlers
from tests.spend_invariants import SPEND_QUERIES, spend_control_discrepancies


@asynccontextmanager
async def serving(servicer: BillingServicer) -> AsyncIterator[billing_pb2_grpc.BillingServiceAsyncStub]:
    """`servicer` on a real gRPC server on port 0, and a client stub of it."""

    def register(server: grpc.aio.Server) -> None:
        billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)

    server = await start_grpc_server("127.0.0.1:0", [register], [SERVICE_NAME])
    channel = open_channel(f"127.0.0.1:{server.port}")
    try:
        yield billing_pb2_grpc.BillingServiceStub(channel)
    finally:
        await channel.close(grace=None)
        await server.stop(0)


class RecordedOutcomes:
    """A stand-in for the batch service: returns the outcomes the test put there, counts calls."""

    def __init__(self) -> None:
        self.by_batch: dict[BatchId, list[TaskOutcome]] = {}
        self.calls = 0

    async def terminal_outcomes(self, batch_id: BatchId) -> list[TaskOutcome]:
        self.calls += 1
        return list(self.by_batch.get(batch_id, []))


class Clock:
    """A settable UTC clock."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


HandlersFactory = Callable[..., BillingHandlers]


async def funded_tenant(handlers: BillingHandlers, credits: int) -> TenantId:
    """A new tenant topped up with `credits`."""
    tenant_id = await handlers.create_tenant(f"tenant-{uuid.uuid4().hex[:8]}")
    if credits:
        await handlers.top_up(tenant_id, credits, f"seed-{uuid.uuid4()}")
    return tenant_id


def new_batch_id() -> BatchId:
    return BatchId(uuid.uuid4())


async def assert_ledger_invariants(database: Database) -> None:
    """I1-I3 over the whole billing schema, checked from the tables alone."""
    async with database.connection() as conn:
        total = (
            await conn.execute(text("SELECT coalesce(sum(amount), 0) FROM billing.ledger_entries"))
        ).scalar()
        assert total == 0, "all ledger entries must sum to zero"
        unbalanced = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT transfer_id FROM billing.ledger_entries"
                    " GROUP BY transfer_id HAVING sum(amount) <> 0 OR count(*) <> 2) t"
                )
            )
        ).scalar()
        assert unbalanced == 0, "every transfer is exactly two entries summing to zero"
        drifted = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM billing.accounts a"
                    " WHERE a.kind IN ('available', 'hold') AND a.balance <>"
                    " (SELECT coalesce(sum(e.amount), 0) FROM billing.ledger_entries e"
                    "  WHERE e.account_id = a.id)"
                )
            )
        ).scalar()
        assert drifted == 0, "each tenant account's balance equals the sum of its entries"
        negative = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM billing.accounts WHERE kind IN ('available','hold') AND balance < 0"
                )
            )
        ).scalar()
        assert negative == 0
        broken_holds = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM billing.batch_holds h"
                    " JOIN billing.accounts a ON a.id = h.hold_account_id"
                    " WHERE h.frozen <> h.captured + h.refunded + h.released + a.balance"
                    " OR (h.settlement_status <> 'pending' AND a.balance <> 0)"
                )
            )
        ).scalar()
        assert broken_holds == 0, "I1: frozen = captured + refunded + released + still held"
        rows = {name: (await conn.execute(text(sql))).all() for name, sql in SPEND_QUERIES.items()}
        assert not (problems := spend_control_discrepancies(rows)), problems


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Polls `check` until it holds; fails after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)
