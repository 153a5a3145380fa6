"""What operators read, gathered from the backends once for both the admin API and the dashboard."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2
from reelbatch.proto.webhook.v1 import webhook_pb2

from services.gateway.adapters.backends import Backends
from services.gateway.schemas.admin_batches import AdminBatchDetail, AdminBatchPage, AdminBatchView
from services.gateway.schemas.admin_webhooks import DeliveryPage, DeliveryView
from services.gateway.schemas.credits import BatchBillingView, CreditsView, LedgerPage
from services.gateway.schemas.fields import json_bytes, optional_timestamp
from services.gateway.schemas.model_health import DegradedModelView, ProviderRouteView
from services.gateway.schemas.provider_jobs import ProviderJobPage, ProviderJobView
from services.gateway.schemas.reconciliation import ReconciliationView
from services.gateway.schemas.tasks import TaskPage, TaskView
from services.gateway.schemas.tenants import TenantPage, TenantSummaryView

# Admin scope on batch and webhook reads: no tenant filter (see batch.proto).
ALL_TENANTS = ""

# Reconciliation reads everything; it gets more time than an ordinary call.
RECONCILIATION_DEADLINE_FACTOR = 6


@dataclass(frozen=True)
class BatchListQuery:
    """Which batches an operator lists: every tenant's (or one's), by status, settlement status
    and creation time, one page at a time."""

    tenant_id: str = ""
    status: str = ""
    settlement_status: str = ""
    created_from: datetime | None = None
    created_to: datetime | None = None
    cursor: str = ""
    limit: int = 50


class AdminReads:
    """Admin-scope reads over billing, batch and webhook, returning the REST views."""

    def __init__(self, backends: Backends, deadline_seconds: float) -> None:
        self._backends = backends
        self._deadline = deadline_seconds

    async def batches(self, query: BatchListQuery) -> AdminBatchPage:
        """Batches of every tenant (or one), newest first."""
        response = await self._batch_list(query)
        return AdminBatchPage.of(
            [AdminBatchView.from_proto(batch) for batch in response.batches], response.next_cursor
        )

    async def batches_json(self, query: BatchListQuery) -> bytes:
        """`batches` as the admin API answers it: the page's JSON, written from the messages'
        fields without validating each view twice (ADR-164; the same document, tested equal)."""
        response = await self._batch_list(query)
        return json_bytes(
            {
                "items": [AdminBatchView.fields_of(batch) for batch in response.batches],
                "next_cursor": response.next_cursor or None,
            }
        )

    async def _batch_list(self, query: BatchListQuery) -> batch_pb2.ListBatchesResponse:
        response: batch_pb2.ListBatchesResponse = await self._backends.batch.ListBatches(
            batch_pb2.ListBatchesRequest(
                tenant_id=query.tenant_id or ALL_TENANTS,
                status=query.status,
                settlement_status=query.settlement_status,
                created_from=optional_timestamp(query.created_from),
                created_to=optional_timestamp(query.created_to),
                cursor=query.cursor,
                limit=query.limit,
            ),
            timeout=self._deadline,
        )
        return response

    async def batch(self, batch_id: str) -> AdminBatchDetail:
        """The overview: the batch, where its tasks ended up, and its margin: its captures against
        what the providers billed us for its tasks (ADR-144)."""
        request = batch_pb2.GetBatchRequest(tenant_id=ALL_TENANTS, batch_id=batch_id)
        batch = await self._backends.batch.GetBatch(request, timeout=self._deadline)
        breakdown = await self._backends.batch.GetBatchBreakdown(request, timeout=self._deadline)
        margin = await self._backends.billing.EstimateMargin(
            billing_pb2.EstimateMarginRequest(batch_id=batch_id), timeout=self._deadline
        )
        return AdminBatchDetail.assemble(batch, breakdown, margin)

    async def tasks(
        self,
        batch_id: str,
        *,
        status: str = "",
        failure_type: str = "",
        cursor: str = "",
        limit: int = 50,
        tenant_id: str = ALL_TENANTS,
    ) -> TaskPage:
        """A batch's tasks in batch order (of one tenant's batch when `tenant_id` is given)."""
        response = await self._backends.batch.ListTasks(
            batch_pb2.ListTasksRequest(
                tenant_id=tenant_id,
                batch_id=batch_id,
                status=status,
                failure_type=failure_type,
                cursor=cursor,
                limit=limit,
            ),
            timeout=self._deadline,
        )
        return TaskPage.of([TaskView.from_proto(task) for task in response.tasks], response.next_cursor)

    async def billing(self, batch_id: str, *, cursor: str = "", limit: int = 100) -> BatchBillingView:
        """A batch's money: totals and ledger entries."""
        ledger = await self._backends.billing.GetBatchLedger(
            billing_pb2.GetBatchLedgerRequest(batch_id=batch_id, cursor=cursor, limit=limit),
            timeout=self._deadline,
        )
        return BatchBillingView.from_proto(ledger)

    async def webhooks(
        self, batch_id: str, *, cursor: str = "", limit: int = 50, tenant_id: str = ALL_TENANTS
    ) -> DeliveryPage:
        """A batch's webhook deliveries with their attempts, newest first (of one tenant's batch
        when `tenant_id` is given)."""
        response = await self._backends.webhook.ListDeliveries(
            webhook_pb2.ListDeliveriesRequest(
                tenant_id=tenant_id, batch_id=batch_id, cursor=cursor, limit=limit
            ),
            timeout=self._deadline,
        )
        return DeliveryPage.of(
            [DeliveryView.from_proto(delivery) for delivery in response.deliveries], response.next_cursor
        )

    async def tenants(self, *, cursor: str = "", limit: int = 50) -> TenantPage:
        """Tenants with their balances, oldest first."""
        response = await self._backends.billing.ListTenants(
            billing_pb2.ListTenantsRequest(cursor=cursor, limit=limit), timeout=self._deadline
        )
        return TenantPage.of(
            [TenantSummaryView.from_proto(tenant) for tenant in response.tenants], response.next_cursor
        )

    async def tenant_credits(self, tenant_id: str) -> CreditsView:
        """One tenant's balances."""
        balance = await self._backends.billing.GetBalance(
            billing_pb2.GetBalanceRequest(tenant_id=tenant_id), timeout=self._deadline
        )
        return CreditsView.from_proto(balance)

    async def tenant_ledger(self, tenant_id: str, *, cursor: str = "", limit: int = 50) -> LedgerPage:
        """Changes of one tenant's available balance, newest first."""
        response = await self._backends.billing.ListLedgerEntries(
            billing_pb2.ListLedgerEntriesRequest(tenant_id=tenant_id, cursor=cursor, limit=limit),
            timeout=self._deadline,
        )
        return LedgerPage.from_proto(response)

    async def provider_jobs(self, batch_id: str, *, cursor: str = "", limit: int = 200) -> ProviderJobPage:
        """A page of the batch's provider jobs with what each is billed (ADR-144)."""
        response = await self._backends.batch.ListProviderJobs(
            batch_pb2.ListProviderJobsRequest(batch_id=batch_id, cursor=cursor, limit=limit),
            timeout=self._deadline,
        )
        return ProviderJobPage(
            items=[ProviderJobView.from_proto(job) for job in response.jobs],
            next_cursor=response.next_cursor or None,
        )

    async def degraded_models(self) -> list[DegradedModelView]:
        """Models whose provider is down (circuit breaker open or probing), by name."""
        response = await self._backends.batch.ListDegradedModels(
            batch_pb2.ListDegradedModelsRequest(), timeout=self._deadline
        )
        return [DegradedModelView.from_proto(model) for model in response.models]

    async def provider_routes(self) -> list[ProviderRouteView]:
        """What each provider route of each model did: share of videos, jobs, failures, cost."""
        response = await self._backends.batch.ListProviderRoutes(
            batch_pb2.ListProviderRoutesRequest(), timeout=self._deadline
        )
        return [ProviderRouteView.from_proto(route) for route in response.routes]

    async def reconciliation(self) -> ReconciliationView:
        """Every discrepancy in the books (an empty list when they balance)."""
        deadline = self._deadline * RECONCILIATION_DEADLINE_FACTOR
        report, provider_jobs = await asyncio.gather(
            self._backends.billing.Reconcile(billing_pb2.ReconcileRequest(), timeout=deadline),
            self._backends.batch.AuditProviderJobs(batch_pb2.AuditProviderJobsRequest(), timeout=deadline),
        )
        return ReconciliationView.from_proto(report, provider_jobs)
