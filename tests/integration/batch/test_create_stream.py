"""CreateBatchStream: a create sent in parts is one create (one freeze, all or nothing), its
items in order with their custom_ids and metadata, its violations located in the whole batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import psycopg
import pytest
from reelbatch.proto.batch.v1 import batch_pb2

from libs.config import Settings
from tests.integration.batch.batch_harness import (
    FakeBillingServer,
    batch_server,
    rpc_reason,
    rpc_violations,
    tenant,
)

SettingsFactory = Callable[..., Settings]


def _parts(
    tenant_id: str, prompts: list[str], size: int, request_id: str
) -> list[batch_pb2.CreateBatchRequest]:
    parts = []
    for start in range(0, len(prompts), size):
        chunk = prompts[start : start + size]
        columns = batch_pb2.BatchItemColumns(
            prompts=chunk,
            models=["sora-2"] * len(chunk),
            duration_seconds=[0] * len(chunk),
            custom_ids=[f"c-{start + n}" for n in range(len(chunk))],
            metadata=[batch_pb2.Metadata(pairs={"n": str(start + n)}) for n in range(len(chunk))],
        )
        parts.append(batch_pb2.CreateBatchRequest(item_columns=columns))
    first = parts[0]
    first.tenant_id, first.request_id, first.name = tenant_id, request_id, "streamed"
    first.metadata["project"] = "p"
    return parts


async def test_a_create_sent_in_parts_is_one_batch_with_every_item_in_order(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 10_000
    prompts = [f"shot {n}" for n in range(25)]
    async with batch_server(make_settings()) as stub:
        created = await stub.CreateBatchStream(iter(_parts(tenant_id, prompts, 10, "stream-1")))
        replayed = await stub.CreateBatchStream(iter(_parts(tenant_id, prompts, 7, "stream-1")))
        batch = await stub.GetBatch(batch_pb2.GetBatchRequest(tenant_id=tenant_id, batch_id=created.batch_id))
        tasks = await stub.ListTasks(
            batch_pb2.ListTasksRequest(tenant_id=tenant_id, batch_id=created.batch_id, limit=100)
        )

    assert (created.total_count, created.required_credits, created.replayed) == (25, 250, False)
    assert (replayed.batch_id, replayed.replayed) == (created.batch_id, True)
    assert fake_billing.servicer.reserve_effects(created.batch_id) == 1
    assert (batch.name, dict(batch.metadata)) == ("streamed", {"project": "p"})
    assert [(t.batch_index, t.prompt, t.custom_id, dict(t.metadata)) for t in tasks.tasks] == [
        (n, f"shot {n}", f"c-{n}", {"n": str(n)}) for n in range(25)
    ]


async def test_a_bad_item_in_a_later_part_refuses_the_whole_stream_naming_its_batch_index(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer, sql: psycopg.AsyncConnection[Any]
) -> None:
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 10_000
    prompts = [f"shot {n}" for n in range(25)]
    prompts[23] = ""
    parts = _parts(tenant_id, prompts, 10, "stream-2")
    parts[1].item_columns.custom_ids[2] = "c-0"  # item 12 repeats item 0's custom_id
    async with batch_server(make_settings()) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateBatchStream(iter(parts))

    assert rpc_reason(refused.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "validation_error")
    assert rpc_violations(refused.value) == ["items[23].prompt", "items[12].custom_id"]
    stored = await (
        await sql.execute("SELECT count(*) FROM batch.batches WHERE tenant_id = %s", (tenant_id,))
    ).fetchone()
    assert stored == (0,)
