"""The open-batch limit is atomic across batch replicas (ADR-138): concurrent creates of one
tenant, sent to two batch servers on one PostgreSQL (grouped small batches and COPYed large ones),
never leave more unfinished batches than the limit; the refusal stores nothing and says when to
ask again; a replay at the limit is still answered with its batch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import psycopg
from reelbatch.proto.batch.v1 import batch_pb2

from libs.config import Settings
from libs.db import libpq_url
from services.batch.adapters.sql.intake import SMALL_BATCH_MAX_ITEMS
from tests.integration.batch.batch_harness import (
    FakeBillingServer,
    batch_server,
    eventually,
    rpc_reason,
    tenant,
)

if TYPE_CHECKING:
    from tests.integration.batch.batch_harness import BatchStub as Stub

SettingsFactory = Callable[..., Settings]
LIMIT = 5
CREATES = 40


def _request(
    tenant_id: str, request_id: str, items: int = 1, limit: int = LIMIT
) -> batch_pb2.CreateBatchRequest:
    return batch_pb2.CreateBatchRequest(
        tenant_id=tenant_id,
        request_id=request_id,
        items=[batch_pb2.BatchItem(prompt=f"shot {n}", model="sora-2") for n in range(items)],
        open_batch_limit=limit,
    )


async def _create(stub: Stub, request: batch_pb2.CreateBatchRequest) -> str | grpc.aio.AioRpcError:
    try:
        answer = await stub.CreateBatch(request)
    except grpc.aio.AioRpcError as refused:
        return refused
    return str(answer.batch_id)


async def _unfinished(sql: psycopg.AsyncConnection[Any], tenant_id: str) -> int:
    cursor = await sql.execute(
        "SELECT count(*) FROM batch.batches WHERE tenant_id = %s AND finished_at IS NULL", (tenant_id,)
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_concurrent_creates_on_two_replicas_never_exceed_the_open_batch_limit(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    tenant_id, other = tenant(), tenant()
    fake_billing.servicer.balances[tenant_id] = 10_000_000
    fake_billing.servicer.balances[other] = 10_000_000
    async with batch_server(make_settings()) as first, batch_server(make_settings()) as second:
        # Small batches share grouped inserts; every fourth is large enough for the COPY path.
        requests = [
            _request(tenant_id, f"open-{n}", SMALL_BATCH_MAX_ITEMS + 1 if n % 4 == 0 else 1)
            for n in range(CREATES)
        ]
        answers = await asyncio.gather(
            *(_create(first if n % 2 else second, request) for n, request in enumerate(requests))
        )
        accepted = [answer for answer in answers if isinstance(answer, str)]
        refused = [answer for answer in answers if not isinstance(answer, str)]

        assert len(accepted) == LIMIT, "every create ran while the others were open"
        assert await _unfinished(sql, tenant_id) == LIMIT
        for refusal in refused:
            code, reason, details = rpc_reason(refusal)
            assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited")
            assert details["retry_after_seconds"] == "5"
            assert f"at most {LIMIT} batches" in str(refusal.details())
        # Nothing of a refused create was stored (no batch, no task) and nothing frozen for it.
        cursor = await sql.execute(
            "SELECT count(*) FROM batch.tasks WHERE tenant_id = %s AND batch_id <> ALL(%s::uuid[])",
            (tenant_id, accepted),
        )
        assert (await cursor.fetchone()) == (0,)

        # A replay of an accepted request at the limit answers its batch, not a refusal.
        index = next(n for n, answer in enumerate(answers) if isinstance(answer, str))
        assert await _create(second, requests[index]) == answers[index]
        # Another tenant has its own limit; a create without a limit is not counted against one.
        assert isinstance(await _create(first, _request(other, "other-1")), str)
        assert isinstance(await _create(first, _request(tenant_id, "unlimited", limit=0)), str)

        # A batch that finishes makes room for exactly one more.
        await sql.execute(
            "UPDATE batch.batches SET status = 'completed', finished_at = now() WHERE id = %s",
            (accepted[0],),
        )
        again = await asyncio.gather(
            *(
                _create(stub, _request(tenant_id, f"again-{n}", limit=LIMIT + 1))
                for n, stub in enumerate([first, second] * 3)
            )
        )
        assert sum(isinstance(answer, str) for answer in again) == 1
        assert await _unfinished(sql, tenant_id) == LIMIT + 1

        # No worker ran: the open batches are cancelled, so no later test's worker runs them.
        cursor = await sql.execute(
            "SELECT id, tenant_id FROM batch.batches WHERE tenant_id IN (%s, %s) AND finished_at IS NULL",
            (tenant_id, other),
        )
        for batch_id, owner in await cursor.fetchall():
            await first.CancelBatch(
                batch_pb2.CancelBatchRequest(tenant_id=str(owner), batch_id=str(batch_id))
            )


# The tenant's open-batch lock as `_LOCK_OPEN_BATCHES` takes it, and the waiters on it (pg_locks
# splits an advisory lock's 64-bit key into classid and objid).
_TAKE_TENANT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('batch.open_batches:' || %s, 0))"
_WAITERS_ON_TENANT_LOCK = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted
    AND (classid::bigint << 32 | objid::bigint) = hashtextextended('batch.open_batches:' || %s, 0)"""


async def test_a_create_without_a_limit_never_waits_for_the_tenants_open_batch_lock(
    make_settings: SettingsFactory,
    fake_billing: FakeBillingServer,
    sql: psycopg.AsyncConnection[Any],
    batch_database_url: str,
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 10_000_000
    async with (
        batch_server(make_settings()) as stub,
        await psycopg.AsyncConnection.connect(libpq_url(batch_database_url)) as holder,
    ):
        # Another create of the tenant holds its open-batch lock (an open transaction).
        await holder.execute(_TAKE_TENANT_LOCK, (tenant_id,))

        # Without a limit both insert paths (a grouped small batch, a COPYed large one) go ahead.
        unlimited = await asyncio.wait_for(
            asyncio.gather(
                _create(stub, _request(tenant_id, "free-small", limit=0)),
                _create(stub, _request(tenant_id, "free-large", SMALL_BATCH_MAX_ITEMS + 1, limit=0)),
            ),
            timeout=10,
        )
        assert all(isinstance(answer, str) for answer in unlimited), unlimited

        # With a limit the create waits for the lock: the limit is still enforced under it.
        limited = asyncio.create_task(_create(stub, _request(tenant_id, "limited", limit=LIMIT)))

        async def waiting() -> bool | None:
            row = await (await sql.execute(_WAITERS_ON_TENANT_LOCK, (tenant_id,))).fetchone()
            return True if row is not None and row[0] > 0 else None

        await eventually(waiting)
        assert not limited.done()
        await holder.commit()
        assert isinstance(await asyncio.wait_for(limited, timeout=10), str)
        assert await _unfinished(sql, tenant_id) == 3

        cursor = await sql.execute(
            "SELECT id FROM batch.batches WHERE tenant_id = %s AND finished_at IS NULL", (tenant_id,)
        )
        for (batch_id,) in await cursor.fetchall():
            await stub.CancelBatch(batch_pb2.CancelBatchRequest(tenant_id=tenant_id, batch_id=str(batch_id)))
