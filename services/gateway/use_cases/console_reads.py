"""What the customer console reads, always scoped to the signed-in user's tenant.

Every call names the tenant: the backends treat an empty tenant as the operators' scope (every
tenant), so an empty one is refused here before anything is asked. Billing's batch ledger has no
tenant filter: the batch is first read through the batch service with the tenant (NOT_FOUND for
another tenant's) and the ledger's own tenant is checked as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import grpc
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

from libs.vocabulary import fault_of
from services.gateway.adapters.backends import Backends
from services.gateway.schemas.admin_webhooks import DeliveryPage
from services.gateway.schemas.batches import BatchView
from services.gateway.schemas.console import ConsoleBatchDetail
from services.gateway.schemas.credits import BatchBillingView
from services.gateway.schemas.fields import optional_timestamp
from services.gateway.schemas.tasks import TaskPage, TaskView
from services.gateway.use_cases.admin_reads import AdminReads

# Pages read in full for an export (the ledger's and the task list's largest pages).
EXPORT_LEDGER_PAGE = 500
EXPORT_TASK_PAGE = 1000


class NotTheTenants(Exception):
    """The object is not the tenant's (or does not exist): answered as a 404."""


@dataclass(frozen=True)
class ResultRow:
    """One line of a batch's results export: the task, and what it cost and gave back."""

    task: TaskView
    fault: str
    credits_charged: int
    credits_refunded: int


def _scope(tenant_id: str) -> str:
    if not tenant_id:
        raise NotTheTenants("no tenant")
    return tenant_id


def _not_found(error: grpc.aio.AioRpcError) -> bool:
    return error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


class ConsoleReads:
    """Tenant-scoped reads over batch, billing and webhook for the console's pages."""

    def __init__(self, backends: Backends, deadline_seconds: float) -> None:
        self._backends = backends
        self._deadline = deadline_seconds
        # The operators' reads, always called here with the tenant.
        self._reads = AdminReads(backends, deadline_seconds)

    async def batches(
        self,
        tenant_id: str,
        *,
        status: str = "",
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        cursor: str = "",
        limit: int = 50,
    ) -> tuple[list[BatchView], str | None]:
        """The tenant's batches, newest first, and the next page's cursor."""
        response = await self._backends.batch.ListBatches(
            batch_pb2.ListBatchesRequest(
                tenant_id=_scope(tenant_id),
                status=status,
                created_from=optional_timestamp(created_from),
                created_to=optional_timestamp(created_to),
                cursor=cursor,
                limit=limit,
            ),
            timeout=self._deadline,
        )
        return [BatchView.from_proto(batch) for batch in response.batches], response.next_cursor or None

    async def batch_view(self, tenant_id: str, batch_id: str) -> BatchView:
        """The batch's figures (NotTheTenants for another tenant's)."""
        try:
            batch = await self._backends.batch.GetBatch(
                batch_pb2.GetBatchRequest(tenant_id=_scope(tenant_id), batch_id=batch_id),
                timeout=self._deadline,
            )
        except grpc.aio.AioRpcError as error:
            if _not_found(error):
                raise NotTheTenants(batch_id) from None
            raise
        return BatchView.from_proto(batch)

    async def batch(self, tenant_id: str, batch_id: str) -> ConsoleBatchDetail:
        """The overview of one of the tenant's batches (NotTheTenants otherwise)."""
        request = batch_pb2.GetBatchRequest(tenant_id=_scope(tenant_id), batch_id=batch_id)
        try:
            batch = await self._backends.batch.GetBatch(request, timeout=self._deadline)
            breakdown = await self._backends.batch.GetBatchBreakdown(request, timeout=self._deadline)
        except grpc.aio.AioRpcError as error:
            if _not_found(error):
                raise NotTheTenants(batch_id) from None
            raise
        return ConsoleBatchDetail.assemble(batch, breakdown)

    async def tasks(
        self,
        tenant_id: str,
        batch_id: str,
        *,
        status: str = "",
        failure_type: str = "",
        cursor: str = "",
        limit: int = 50,
    ) -> TaskPage:
        """A page of the batch's tasks in batch order."""
        return await self._reads.tasks(
            batch_id,
            status=status,
            failure_type=failure_type,
            cursor=cursor,
            limit=limit,
            tenant_id=_scope(tenant_id),
        )

    async def ledger(
        self, tenant_id: str, batch_id: str, *, cursor: str = "", limit: int = 100
    ) -> BatchBillingView:
        """The batch's ledger lines and totals; the caller has read the batch with the tenant."""
        ledger = await self._backends.billing.GetBatchLedger(
            billing_pb2.GetBatchLedgerRequest(batch_id=batch_id, cursor=cursor, limit=limit),
            timeout=self._deadline,
        )
        if ledger.tenant_id and ledger.tenant_id != _scope(tenant_id):
            raise NotTheTenants(batch_id)
        return BatchBillingView.from_proto(ledger)

    async def webhooks(
        self, tenant_id: str, batch_id: str, *, cursor: str = "", limit: int = 50
    ) -> DeliveryPage:
        """The batch's webhook deliveries with their attempts, newest first."""
        return await self._reads.webhooks(batch_id, cursor=cursor, limit=limit, tenant_id=_scope(tenant_id))

    async def results(self, tenant_id: str, batch_id: str) -> AsyncIterator[ResultRow]:
        """Every task of the batch with the credits the ledger charged and refunded for it, so the
        export's sums are the ledger's (captures and refunds are keyed by task id)."""
        await self.batch_view(tenant_id, batch_id)
        charged: dict[str, int] = {}
        refunded: dict[str, int] = {}
        cursor = ""
        while True:
            page = await self.ledger(tenant_id, batch_id, cursor=cursor, limit=EXPORT_LEDGER_PAGE)
            for entry in page.entries:
                if entry.ref_type == "batch_capture":
                    charged[entry.ref_id] = charged.get(entry.ref_id, 0) + entry.amount
                elif entry.ref_type == "batch_refund":
                    refunded[entry.ref_id] = refunded.get(entry.ref_id, 0) + entry.amount
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        cursor = ""
        while True:
            tasks = await self.tasks(tenant_id, batch_id, cursor=cursor, limit=EXPORT_TASK_PAGE)
            for task in tasks.items:
                yield ResultRow(
                    task=task,
                    fault=fault_of(task.failure_type).value if task.failure_type else "",
                    credits_charged=charged.get(task.task_id, 0),
                    credits_refunded=refunded.get(task.task_id, 0),
                )
            if not tasks.next_cursor:
                return
            cursor = tasks.next_cursor
