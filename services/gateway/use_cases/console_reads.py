"""What the customer console reads, always scoped to the signed-in user's tenant.

Every call names the tenant: the backends treat an empty tenant as the operators' scope (every
tenant), so an empty one is refused here before anything is asked. Billing's batch ledger has no
tenant filter: the batch is first read through the batch service with the tenant (NOT_FOUND for
another tenant's) and the ledger's own tenant is checked as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import grpc
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

from services.gateway.adapters.backends import Backends
from services.gateway.schemas.admin_webhooks import DeliveryPage
from services.gateway.schemas.batches import BatchView
from services.gateway.schemas.console import ConsoleBatchDetail
from services.gateway.schemas.credits import BatchBillingView
from services.gateway.schemas.fields import optional_timestamp
from services.gateway.schemas.tasks import TaskPage
from services.gateway.use_cases.admin_reads import AdminReads


class NotTheTenants(Exception):
    """The object is not the tenant's (or does not exist): answered as a 404."""


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
        name: str = "",
        metadata: Mapping[str, str] | None = None,
        cursor: str = "",
        limit: int = 50,
    ) -> tuple[list[BatchView], str | None]:
        """The tenant's batches, newest first, and the next page's cursor; `name` and each pair of
        `metadata` must match when given (as the API's list)."""
        response = await self._backends.batch.ListBatches(
            batch_pb2.ListBatchesRequest(
                tenant_id=_scope(tenant_id),
                status=status,
                created_from=optional_timestamp(created_from),
                created_to=optional_timestamp(created_to),
                name=name,
                metadata=dict(metadata or {}),
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
