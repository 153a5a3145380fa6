"""Fakes of the finance and reporting RPCs behind the admin API and dashboard (no tests here).

They extend the shared gateway fakes with the seed demo batch: 20 sora-2 videos, 19 delivered,
one refused by the provider's content policy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

from libs.errors import NotFound
from tests.unit.gateway.gateway_fakes import (
    BATCH_ID,
    CREATED_AT,
    TENANT_ID,
    FakeBatch,
    FakeBilling,
    rpc_error,
    timestamp,
)

FINISHED_AT = CREATED_AT.replace(minute=1)


def seed_demo_batch() -> batch_pb2.Batch:
    """The seed's partial batch: 20 items, 19 succeeded, 1 failed, refunded 10 of 200."""
    return batch_pb2.Batch(
        batch_id=BATCH_ID,
        tenant_id=TENANT_ID,
        status="partial",
        total_count=20,
        success_count=19,
        failed_count=1,
        frozen_credits=200,
        credits_spent=190,
        refunded_credits=10,
        settlement_status="refunded",
        created_at=timestamp(CREATED_AT),
        finished_at=timestamp(FINISHED_AT),
        request_id="demo-1",
    )


class ReportingBatch(FakeBatch):
    """Batch with the breakdown and reconciliation totals of the seed demo batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batch = seed_demo_batch()
        self.provider_job_findings: list[batch_pb2.ProviderJobFinding] = []

    async def AuditProviderJobs(
        self, request: batch_pb2.AuditProviderJobsRequest, timeout: float | None = None
    ) -> batch_pb2.AuditProviderJobsResponse:
        self._record("AuditProviderJobs", request, timeout)
        return batch_pb2.AuditProviderJobsResponse(findings=self.provider_job_findings)

    async def GetBatchBreakdown(
        self, request: batch_pb2.GetBatchRequest, timeout: float | None = None
    ) -> batch_pb2.BatchBreakdown:
        self._record("GetBatchBreakdown", request, timeout)
        self._owned(request.tenant_id, request.batch_id)
        return batch_pb2.BatchBreakdown(
            batch_id=BATCH_ID,
            groups=[
                batch_pb2.OutcomeGroup(status="succeeded", model="sora-2", count=19, credits=190),
                batch_pb2.OutcomeGroup(
                    status="failed", failure_type="content_policy", model="sora-2", count=1, credits=10
                ),
            ],
            created_at=timestamp(CREATED_AT),
            queued_at=timestamp(CREATED_AT),
            first_started_at=timestamp(CREATED_AT),
            finished_at=timestamp(FINISHED_AT),
            total_attempts=21,
        )


class FinanceBilling(FakeBilling):
    """Billing with the seed batch's ledger, one tenant, a margin estimate and a ledger export."""

    def __init__(self) -> None:
        super().__init__()
        self.discrepancies: list[billing_pb2.Discrepancy] = []
        self.export: list[billing_pb2.LedgerExportRow] = []

    async def GetBatchLedger(
        self, request: billing_pb2.GetBatchLedgerRequest, timeout: float | None = None
    ) -> billing_pb2.BatchLedger:
        self._record("GetBatchLedger", request, timeout)
        if request.batch_id != BATCH_ID:
            raise rpc_error(NotFound("no credits were reserved for this batch"))
        return billing_pb2.BatchLedger(
            batch_id=BATCH_ID,
            tenant_id=TENANT_ID,
            upfront_total=200,
            capture_total=190,
            refund_total=10,
            net_spent=190,
            settlement_status="refunded",
            entries=[
                billing_pb2.BatchTransfer(
                    transfer_id="1",
                    ref_type="batch_upfront",
                    ref_id=BATCH_ID,
                    amount=200,
                    from_account="available",
                    to_account="hold",
                    available_delta=-200,
                    created_at=timestamp(CREATED_AT),
                ),
                billing_pb2.BatchTransfer(
                    transfer_id="2",
                    ref_type="batch_refund",
                    ref_id="task-<7>",
                    amount=10,
                    from_account="hold",
                    to_account="available",
                    available_delta=10,
                    created_at=timestamp(FINISHED_AT),
                ),
            ],
        )

    async def EstimateMargin(
        self, request: billing_pb2.EstimateMarginRequest, timeout: float | None = None
    ) -> billing_pb2.MarginEstimate:
        self._record("EstimateMargin", request, timeout)
        # The seed batch's real margin: 19 videos, each one billed sora-2 job (ADR-144).
        videos = 19 if request.batch_id else sum(volume.videos for volume in request.delivered)
        revenue = videos * 10 * 10_000
        cost = videos * 24_000
        return billing_pb2.MarginEstimate(
            revenue_credits=videos * 10,
            revenue_usd_micros=revenue,
            provider_cost_usd_micros=cost,
            margin_usd_micros=revenue - cost,
            margin_basis_points=7600 if videos else 0,
            credit_value_usd_micros=10_000,
            provider_jobs=videos if request.batch_id else 0,
        )

    async def ListTenants(
        self, request: billing_pb2.ListTenantsRequest, timeout: float | None = None
    ) -> billing_pb2.ListTenantsResponse:
        self._record("ListTenants", request, timeout)
        return billing_pb2.ListTenantsResponse(
            tenants=[
                billing_pb2.TenantSummary(
                    tenant_id=TENANT_ID,
                    name="Acme <Studios>",
                    available_credits=4810,
                    held_credits=0,
                    created_at=timestamp(CREATED_AT),
                )
            ],
            next_cursor="",
        )

    async def Reconcile(
        self, request: billing_pb2.ReconcileRequest, timeout: float | None = None
    ) -> billing_pb2.ReconcileResponse:
        self._record("Reconcile", request, timeout)
        return billing_pb2.ReconcileResponse(
            discrepancies=self.discrepancies,
            accounts_checked=3,
            batches_checked=1,
            checked_at=timestamp(FINISHED_AT),
        )

    def ExportLedgerPages(
        self, request: billing_pb2.ExportLedgerRequest, timeout: float | None = None
    ) -> AsyncIterator[billing_pb2.LedgerExportPage]:
        self._record("ExportLedgerPages", request, timeout)
        rows = list(self.export)

        async def stream() -> AsyncIterator[billing_pb2.LedgerExportPage]:
            for start in range(0, len(rows), 1000):
                yield billing_pb2.LedgerExportPage(rows=rows[start : start + 1000])

        return stream()
