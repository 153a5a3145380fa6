"""ListBatchTotals' filters (ADR-159): billing's incremental reconciliation asks only for the batches
whose billing moved since its checkpoint and for those created since."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import pytest
from reelbatch.proto.batch.v1 import batch_pb2

from libs.config import Settings
from tests.integration.batch.batch_harness import FakeBillingServer, batch_server, rpc_reason, tenant

if TYPE_CHECKING:
    from tests.integration.batch.batch_harness import BatchStub as Stub

SettingsFactory = Callable[..., Settings]


async def _ids(stub: Stub, request: batch_pb2.ListBatchTotalsRequest, owner: str) -> set[str]:
    """The owner's batches among every page of the answer (the database holds other tests' too)."""
    found: set[str] = set()
    while True:
        page = await stub.ListBatchTotals(request)
        found |= {totals.batch_id for totals in page.batches if totals.tenant_id == owner}
        if not page.next_cursor:
            return found
        request.cursor = page.next_cursor


async def test_batch_totals_are_answered_for_the_named_batches_and_those_created_since(
    make_settings: SettingsFactory, fake_billing: FakeBillingServer
) -> None:
    owner = tenant()
    fake_billing.servicer.balances[owner] = 1000
    async with batch_server(make_settings()) as stub:
        first, second, third = [
            (
                await stub.CreateBatch(
                    batch_pb2.CreateBatchRequest(
                        tenant_id=owner, items=[batch_pb2.BatchItem(prompt=f"p{n}", model="sora-2")]
                    )
                )
            ).batch_id
            for n in range(3)
        ]
        since = (await stub.GetBatch(batch_pb2.GetBatchRequest(tenant_id=owner, batch_id=second))).created_at

        named = batch_pb2.ListBatchTotalsRequest(batch_ids=[first, third])
        assert await _ids(stub, named, owner) == {first, third}
        recent = batch_pb2.ListBatchTotalsRequest(created_from=since)
        assert await _ids(stub, recent, owner) == {second, third}
        both = batch_pb2.ListBatchTotalsRequest(batch_ids=[first, third], created_from=since)
        assert await _ids(stub, both, owner) == {third}
        assert {first, second, third} <= await _ids(stub, batch_pb2.ListBatchTotalsRequest(), owner)

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListBatchTotals(batch_pb2.ListBatchTotalsRequest(batch_ids=[first] * 1001))
        assert rpc_reason(refused.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "validation_error")
