"""Billing through a real gRPC server on port 0 with a real client stub, and settlement pulling
outcomes from a (small, real) BatchService gRPC server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from reelbatch.proto.batch.v1 import batch_pb2, batch_pb2_grpc
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc
from sqlalchemy import text

from libs.db import Database
from libs.rpc.client import open_channel
from libs.rpc.errors import remote_error
from libs.rpc.server import GrpcServer, start_grpc_server
from services.billing.adapters.batch_client import BatchServiceOutcomes
from services.billing.domain import finance
from services.billing.domain.errors import OutcomesMissing
from services.billing.domain.ids import BatchId
from services.billing.domain.pricing import QuoteLine
from services.billing.entrypoints.rpc.servicer import BillingServicer
from services.billing.use_cases import reporting

from .billing_testkit import HandlersFactory, assert_ledger_invariants, serving


@pytest.fixture
async def billing(make_handlers: HandlersFactory) -> AsyncIterator[billing_pb2_grpc.BillingServiceAsyncStub]:
    async with serving(BillingServicer(make_handlers(outcome_source=None))) as stub:
        yield stub


async def test_the_seed_demo_numbers_hold_end_to_end_over_grpc(
    billing: billing_pb2_grpc.BillingServiceAsyncStub, database: Database
) -> None:
    tenant_id = (await billing.CreateTenant(billing_pb2.CreateTenantRequest(name="demo"))).tenant_id
    key = await billing.CreateApiKey(
        billing_pb2.CreateApiKeyRequest(tenant_id=tenant_id, api_key=f"demo-key-{uuid.uuid4().hex[:6]}")
    )
    assert (
        await billing.AuthenticateApiKey(billing_pb2.AuthenticateApiKeyRequest(api_key=key.api_key))
    ).tenant_id == (tenant_id)
    topped = await billing.TopUp(
        billing_pb2.TopUpRequest(tenant_id=tenant_id, credits=5000, reference="seed")
    )
    assert topped.balance == 5000

    lines = [billing_pb2.QuoteLine(model="sora-2", count=20)]
    quoted = await billing.Quote(billing_pb2.QuoteRequest(tenant_id=tenant_id, lines=lines))
    assert (quoted.total_credits, quoted.lines[0].unit_price, quoted.available_credits) == (200, 10, 5000)

    batch_id = str(uuid.uuid4())
    reserved = await billing.Reserve(
        billing_pb2.ReserveRequest(tenant_id=tenant_id, batch_id=batch_id, lines=quoted.lines)
    )
    assert (reserved.frozen_credits, reserved.available_before, reserved.available_after) == (200, 5000, 4800)

    for n in range(19):
        await billing.Capture(
            billing_pb2.TaskChargeRequest(batch_id=batch_id, task_id=f"{batch_id}-{n}", model="sora-2")
        )
    refund = await billing.Refund(
        billing_pb2.TaskChargeRequest(batch_id=batch_id, task_id=f"{batch_id}-19", model="sora-2")
    )
    assert (refund.credits, refund.replayed) == (10, False)

    settlement = await billing.Settle(billing_pb2.SettleRequest(batch_id=batch_id))
    assert (
        settlement.frozen_credits,
        settlement.captured_credits,
        settlement.refunded_credits,
        settlement.released_credits,
        settlement.held_credits,
        settlement.outcomes_applied,
        settlement.settlement_status,
    ) == (200, 190, 10, 0, 0, 20, "refunded")
    balance = await billing.GetBalance(billing_pb2.GetBalanceRequest(tenant_id=tenant_id))
    assert (balance.available_credits, balance.held_credits) == (4810, 0)

    ledger = await billing.ListLedgerEntries(billing_pb2.ListLedgerEntriesRequest(tenant_id=tenant_id))
    assert [(e.ref_type, e.credits_delta, e.balance_after) for e in ledger.entries] == [
        ("batch_refund", 10, 4810),
        ("batch_upfront", -200, 4800),
        ("topup", 5000, 5000),
    ]
    assert ledger.entries[1].batch_id == batch_id
    assert ledger.next_cursor == ""
    async with database.connection() as conn:
        revenue = (
            await conn.execute(
                text(
                    "SELECT coalesce(sum(e.amount), 0) FROM billing.ledger_entries e"
                    " JOIN billing.accounts a ON a.id = e.account_id"
                    " WHERE a.kind = 'revenue' AND e.batch_id = :b"
                ),
                {"b": uuid.UUID(batch_id)},
            )
        ).scalar_one()
    assert revenue == 190
    await assert_ledger_invariants(database)


async def test_refusals_travel_as_statuses_with_a_stable_reason_and_details(
    billing: billing_pb2_grpc.BillingServiceAsyncStub,
) -> None:
    tenant_id = (await billing.CreateTenant(billing_pb2.CreateTenantRequest(name="poor"))).tenant_id
    await billing.TopUp(billing_pb2.TopUpRequest(tenant_id=tenant_id, credits=50, reference="r"))

    with pytest.raises(grpc.aio.AioRpcError) as insufficient:
        await billing.Reserve(
            billing_pb2.ReserveRequest(
                tenant_id=tenant_id,
                batch_id=str(uuid.uuid4()),
                lines=[billing_pb2.QuoteLine(model="sora-2", count=6)],
            )
        )
    refused = remote_error(insufficient.value)
    assert (refused.code, refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "insufficient_credits")
    assert refused.details == {"required_credits": "60", "available_credits": "50"}

    with pytest.raises(grpc.aio.AioRpcError) as unknown_model:
        await billing.Quote(billing_pb2.QuoteRequest(lines=[billing_pb2.QuoteLine(model="nope", count=1)]))
    assert remote_error(unknown_model.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert remote_error(unknown_model.value).details == {"model": "nope"}

    with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
        await billing.AuthenticateApiKey(billing_pb2.AuthenticateApiKeyRequest(api_key="rb_live_nope"))
    assert (remote_error(unauthenticated.value).code, remote_error(unauthenticated.value).reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "unauthorized",
    )

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await billing.GetBatchSettlement(billing_pb2.GetBatchSettlementRequest(batch_id=str(uuid.uuid4())))
    assert remote_error(missing.value).code == grpc.StatusCode.NOT_FOUND

    register_demo_key = billing_pb2.CreateApiKeyRequest(tenant_id=tenant_id, api_key="same-key-123")
    await billing.CreateApiKey(register_demo_key)
    with pytest.raises(grpc.aio.AioRpcError) as duplicate_key:
        await billing.CreateApiKey(register_demo_key)
    assert remote_error(duplicate_key.value).code == grpc.StatusCode.ALREADY_EXISTS


async def test_reserve_many_decides_each_reservation_on_its_own_in_request_order(
    billing: billing_pb2_grpc.BillingServiceAsyncStub, database: Database
) -> None:
    tenant_id = (await billing.CreateTenant(billing_pb2.CreateTenantRequest(name="many"))).tenant_id
    await billing.TopUp(billing_pb2.TopUpRequest(tenant_id=tenant_id, credits=250, reference="r"))
    sora = [billing_pb2.QuoteLine(model="sora-2", count=10, unit_price=10)]
    first, second, third = (str(uuid.uuid4()) for _ in range(3))

    def ask(
        batch_id: str, lines: list[billing_pb2.QuoteLine], tenant: str = tenant_id
    ) -> billing_pb2.ReserveRequest:
        return billing_pb2.ReserveRequest(tenant_id=tenant, batch_id=batch_id, lines=lines)

    answer = await billing.ReserveMany(
        billing_pb2.ReserveManyRequest(
            reservations=[
                ask(first, sora),  # 100 of 250
                ask(second, [billing_pb2.QuoteLine(model="sora-2", count=20, unit_price=10)]),  # 200 of 150
                ask(third, sora),  # 100 of 150: what the refused one left
                ask(first, sora),  # asked twice: a replay of the first
                ask(str(uuid.uuid4()), [billing_pb2.QuoteLine(model="sora-2", count=1, unit_price=9)]),
                ask("not-a-batch-id", sora),
            ]
        )
    )

    kinds = [outcome.WhichOneof("outcome") for outcome in answer.outcomes]
    assert kinds == ["reserved", "refused", "reserved", "reserved", "refused", "refused"]
    reserved = [answer.outcomes[i].reserved for i in (0, 2, 3)]
    assert [(r.frozen_credits, r.available_before, r.available_after, r.replayed) for r in reserved] == [
        (100, 250, 150, False),
        (100, 150, 50, False),
        (100, 250, 150, True),
    ]
    insufficient, stale, malformed = (answer.outcomes[i].refused for i in (1, 4, 5))
    assert (insufficient.code, insufficient.reason) == ("FAILED_PRECONDITION", "insufficient_credits")
    assert dict(insufficient.details) == {"required_credits": "200", "available_credits": "150"}
    assert (stale.code, stale.reason) == ("FAILED_PRECONDITION", "stale_quote")
    assert (malformed.code, malformed.reason) == ("INVALID_ARGUMENT", "validation_error")
    balance = await billing.GetBalance(billing_pb2.GetBalanceRequest(tenant_id=tenant_id))
    assert (balance.available_credits, balance.held_credits) == (50, 200)
    await assert_ledger_invariants(database)


BatchContext = grpc.aio.ServicerContext[object, object]


class FakeBatchService(batch_pb2_grpc.BatchServiceServicer):
    """Serves ListTasks from a dict, two tasks per page, and records the requests it got."""

    def __init__(self) -> None:
        self.tasks: dict[str, list[batch_pb2.Task]] = {}
        self.requests: list[batch_pb2.ListTasksRequest] = []

    async def CreateBatch(
        self, request: batch_pb2.CreateBatchRequest, context: BatchContext
    ) -> batch_pb2.CreateBatchResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    async def GetBatch(self, request: batch_pb2.GetBatchRequest, context: BatchContext) -> batch_pb2.Batch:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    async def ListBatches(
        self, request: batch_pb2.ListBatchesRequest, context: BatchContext
    ) -> batch_pb2.ListBatchesResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    async def CancelBatch(
        self, request: batch_pb2.CancelBatchRequest, context: BatchContext
    ) -> batch_pb2.Batch:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    async def GetBatchBreakdown(
        self, request: batch_pb2.GetBatchRequest, context: BatchContext
    ) -> batch_pb2.BatchBreakdown:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    async def ListBatchTotals(
        self, request: batch_pb2.ListBatchTotalsRequest, context: BatchContext
    ) -> batch_pb2.ListBatchTotalsResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    async def ListTasks(
        self, request: batch_pb2.ListTasksRequest, context: BatchContext
    ) -> batch_pb2.ListTasksResponse:
        self.requests.append(request)
        start = int(request.cursor or 0)
        tasks = self.tasks.get(request.batch_id, [])
        more = start + 2 < len(tasks)
        return batch_pb2.ListTasksResponse(
            tasks=tasks[start : start + 2], next_cursor=str(start + 2) if more else ""
        )


@pytest.fixture
async def batch_service() -> AsyncIterator[tuple[FakeBatchService, GrpcServer]]:
    fake = FakeBatchService()  # type: ignore[abstract]  # RetryFailed is not used here

    def register(server: grpc.aio.Server) -> None:
        batch_pb2_grpc.add_BatchServiceServicer_to_server(fake, server)

    server = await start_grpc_server("127.0.0.1:0", [register], ["reelbatch.proto.batch.v1.BatchService"])
    yield fake, server
    await server.stop(0)


async def test_settle_pulls_missing_outcomes_from_the_batch_service_over_grpc(
    make_handlers: HandlersFactory,
    batch_service: tuple[FakeBatchService, GrpcServer],
    database: Database,
) -> None:
    fake, server = batch_service
    channel = open_channel(f"127.0.0.1:{server.port}")
    try:
        handlers = make_handlers(
            outcome_source=BatchServiceOutcomes(channel, deadline_seconds=5), chunk_size=2
        )
        tenant = await handlers.create_tenant("pulled")
        await handlers.top_up(tenant, 100, "r")
        batch = BatchId(uuid.uuid4())
        await handlers.reserve(tenant, batch, [QuoteLine("sora-2", 5)])
        statuses = ["succeeded", "failed", "cancelled", "succeeded", "running"]
        fake.tasks[str(batch)] = [
            batch_pb2.Task(task_id=f"{batch}-{n}", batch_id=str(batch), status=status, model="sora-2")
            for n, status in enumerate(statuses)
        ]

        with pytest.raises(OutcomesMissing):
            await handlers.settle(batch)
        assert {r.tenant_id for r in fake.requests} == {""}, "pulls use the admin scope"
        assert [r.cursor for r in fake.requests] == ["", "2", "4"]
        pending = await handlers.get_batch_settlement(batch)
        assert (pending.captured, pending.refunded, pending.outcomes_applied) == (20, 20, 4)

        fake.tasks[str(batch)][4].status = "succeeded"
        settled = await handlers.settle(batch)
        assert (settled.captured, settled.refunded, settled.settlement_status.value) == (30, 20, "refunded")
        assert (await handlers.get_balance(tenant)).available_credits == 70
        await assert_ledger_invariants(database)
    finally:
        await channel.close(grace=None)


async def test_other_services_changes_reach_the_tenants_activity_log_over_grpc(
    billing: billing_pb2_grpc.BillingServiceAsyncStub,
) -> None:
    tenant_id = (await billing.CreateTenant(billing_pb2.CreateTenantRequest(name="studio"))).tenant_id
    actor = billing_pb2.ConsoleActor(kind="user", id=str(uuid.uuid4()), label="dev@studio.example")
    recorded = await billing.RecordTenantActivity(
        billing_pb2.TenantActivity(
            tenant_id=tenant_id,
            actor=actor,
            action="webhook_endpoint.created",
            target_kind="webhook_endpoint",
            target_id="ep_1",
            detail="https://hooks.studio.example/reelbatch",
            client_address="10.1.2.3",
        )
    )
    page = await billing.ListTenantActivity(
        billing_pb2.ListTenantActivityRequest(tenant_id=tenant_id, action="webhook_endpoint.created")
    )
    [entry] = page.entries
    assert entry.activity_id == recorded.activity_id
    assert (entry.actor.label, entry.target_id, entry.client_address) == (
        "dev@studio.example",
        "ep_1",
        "10.1.2.3",
    )
    assert entry.HasField("occurred_at")
    other = await billing.ListTenantActivity(
        billing_pb2.ListTenantActivityRequest(tenant_id=tenant_id, action="member.removed")
    )
    assert list(other.entries) == []

    refusals = [
        billing_pb2.TenantActivity(tenant_id=tenant_id, actor=actor, action=""),
        billing_pb2.TenantActivity(
            tenant_id=tenant_id, actor=billing_pb2.ConsoleActor(kind="robot"), action="x.y"
        ),
    ]
    for refused in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await billing.RecordTenantActivity(refused)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await billing.RecordTenantActivity(
            billing_pb2.TenantActivity(tenant_id=str(uuid.uuid4()), actor=actor, action="x.y")
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    far = billing_pb2.ListTenantActivityRequest(tenant_id=tenant_id)
    far.occurred_from.seconds = 400_000_000_000  # past year 9999
    with pytest.raises(grpc.aio.AioRpcError) as out_of_calendar:
        await billing.ListTenantActivity(far)
    assert remote_error(out_of_calendar.value).violations[0].field == "occurred_from"


async def test_the_paged_export_streams_the_same_entries_as_the_row_stream_many_to_a_message(
    billing: billing_pb2_grpc.BillingServiceAsyncStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small pages and messages, so a few dozen entries cross every boundary (ADR-169).
    monkeypatch.setattr(finance, "FIRST_EXPORT_PAGE_ROWS", 5)
    monkeypatch.setattr(finance, "EXPORT_PAGE_ROWS", 20)
    monkeypatch.setattr(reporting, "EXPORT_MESSAGE_ROWS", 7)
    tenant_id = (await billing.CreateTenant(billing_pb2.CreateTenantRequest(name="books"))).tenant_id
    for n in range(31):
        await billing.TopUp(billing_pb2.TopUpRequest(tenant_id=tenant_id, credits=n + 1, reference=f"t{n}"))
    request = billing_pb2.ExportLedgerRequest(tenant_id=tenant_id)

    pages = [page async for page in billing.ExportLedgerPages(request)]
    rows = [row async for row in billing.ExportLedger(request)]

    # The first page read (5) is sent alone, then each page of 20 in messages of at most 7.
    assert [len(page.rows) for page in pages] == [5, 7, 7, 6, 6]
    assert [row for page in pages for row in page.rows] == rows
    assert [row.amount for row in rows] == list(range(1, 32))
    assert [int(row.entry_id) for row in rows] == sorted(int(row.entry_id) for row in rows)
    # A tenant with no entries: an empty stream, no empty message.
    empty = (await billing.CreateTenant(billing_pb2.CreateTenantRequest(name="new"))).tenant_id
    assert [
        page async for page in billing.ExportLedgerPages(billing_pb2.ExportLedgerRequest(tenant_id=empty))
    ] == []
