"""Reads: one batch with its counters, pages of batches and of a batch's tasks, a tenant's count
of unfinished batches, a batch's outcome breakdown and per-batch totals."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from libs.errors import InvalidArgument
from services.batch.adapters.sql.breakers import DegradedModel
from services.batch.adapters.sql.store import BatchStore
from services.batch.domain.batch import (
    BatchStatus,
    BatchView,
    SettlementStatus,
    TaskStatus,
    TaskSummary,
    TenantId,
    parse_batch_id,
    parse_tenant_id,
)
from services.batch.domain.commands import ListBatches, ListTasks
from services.batch.domain.errors import BatchNotFound
from services.batch.domain.paging import BatchCursor, JobCursor, TaskCursor, page_size
from services.batch.domain.provider import FailureType
from services.batch.domain.provider_jobs import ProviderJobFinding, ProviderJobView
from services.batch.domain.reporting import BatchBreakdown, BatchTotals
from services.batch.domain.routing import RouteUsage

# Batch ids one ListBatchTotals request may name.
MAX_NAMED_BATCHES = 1000


def tenant_scope(tenant_id: str) -> TenantId | None:
    """The tenant a request is scoped to; None (an empty tenant) is the admin scope, which only
    the gateway's admin routes send."""
    return parse_tenant_id(tenant_id) if tenant_id else None


class Reads:
    """Answers the read requests from the read model (`reads` and `listings` of the SQL store)."""

    def __init__(self, store: BatchStore) -> None:
        self._store = store

    async def get_batch(self, tenant_id: str, batch_id: str) -> BatchView:
        """One batch with its counters; another tenant's batch is not found."""
        view = await self._store.reads.batch_view(parse_batch_id(batch_id), tenant_scope(tenant_id))
        if view is None:
            raise BatchNotFound("batch not found", batch_id=batch_id)
        return view

    async def provider_job_findings(self) -> list[ProviderJobFinding]:
        """Double provider jobs and jobs in doubt, for the operator's reconciliation (ADR-110)."""
        return await self._store.provider_jobs.audit()

    async def provider_jobs(
        self, batch_id: str, cursor: str, limit: int
    ) -> tuple[list[ProviderJobView], str]:
        """A page of the batch's provider jobs with what each is billed (ADR-144), and the next
        cursor ("" on the last page); an unknown batch is not found."""
        batch = parse_batch_id(batch_id)
        after = JobCursor.decode(cursor) if cursor else None
        if await self._store.reads.batch_view(batch, None) is None:
            raise BatchNotFound("batch not found", batch_id=batch_id)
        jobs, following = await self._store.provider_jobs.of_batch(batch, after, page_size(limit))
        return jobs, following.encode() if following is not None else ""

    async def degraded_models(self) -> list[DegradedModel]:
        """Models whose circuit breaker is open or probing (ADR-113), for the admin overview."""
        return await self._store.breakers.degraded()

    async def provider_routes(self) -> list[RouteUsage]:
        """What every provider route of every model did (ADR-149), for the admin overview."""
        return await self._store.provider_jobs.route_usage()

    async def count_open_batches(self, tenant_id: str, limit: int) -> int:
        """How many of the tenant's batches are unfinished, counted up to `limit` (positive)."""
        if limit < 1:
            raise InvalidArgument("limit must be positive", field="limit")
        return await self._store.reads.count_open_batches(parse_tenant_id(tenant_id), limit)

    async def list_batches(self, query: ListBatches) -> tuple[list[BatchView], str]:
        """A page of batches and the cursor of the next page ("" on the last one)."""
        scope = tenant_scope(query.tenant_id)
        if query.status and query.status not in {status.value for status in BatchStatus}:
            raise InvalidArgument("unknown batch status", field="status")
        if query.settlement_status and query.settlement_status not in {s.value for s in SettlementStatus}:
            raise InvalidArgument("unknown settlement status", field="settlement_status")
        if "\x00" in query.name:
            raise InvalidArgument("name must not contain NUL", field="name")
        if any("\x00" in text for pair in query.metadata for text in pair):
            # No stored name or label holds NUL (the create rules refuse control characters).
            raise InvalidArgument("metadata must not contain NUL", field="metadata")
        limit = page_size(query.limit)
        after = BatchCursor.decode(query.cursor) if query.cursor else None
        views = await self._store.listings.list_batches(
            scope,
            query.status,
            after,
            limit + 1,
            settlement_status=query.settlement_status,
            created_from=query.created_from,
            created_to=query.created_to,
            name=query.name,
            metadata=query.metadata,
        )
        if len(views) <= limit:
            return views, ""
        last = views[limit - 1].batch
        return views[:limit], BatchCursor(last.created_at, last.id).encode()

    async def list_tasks(self, query: ListTasks) -> tuple[list[TaskSummary], str]:
        """A page of a batch's tasks in batch order and the next cursor ("" on the last page)."""
        batch_id = parse_batch_id(query.batch_id)
        try:
            status = TaskStatus(query.status) if query.status else None
        except ValueError:
            raise InvalidArgument("unknown task status", field="status") from None
        try:
            failure_type = FailureType(query.failure_type) if query.failure_type else None
        except ValueError:
            raise InvalidArgument("unknown failure type", field="failure_type") from None
        try:
            statuses = tuple(TaskStatus(name) for name in dict.fromkeys(query.statuses))
        except ValueError:
            raise InvalidArgument("unknown task status", field="statuses") from None
        limit = page_size(query.limit)
        after = TaskCursor.decode(query.cursor).batch_index if query.cursor else None
        # The scope check and the page are one statement (one round trip per page); a malformed
        # question is refused before it, whoever owns the batch (the answer reveals nothing).
        found = await self._store.reads.list_tasks(
            batch_id,
            tenant_scope(query.tenant_id),
            status,
            after,
            limit + 1,
            failure_type=failure_type,
            statuses=statuses,
        )
        if found is None:
            raise BatchNotFound("batch not found", batch_id=query.batch_id)
        if len(found) <= limit:
            return found, ""
        return found[:limit], TaskCursor(found[limit - 1].batch_index).encode()

    async def batch_breakdown(self, tenant_id: str, batch_id: str) -> BatchBreakdown:
        """A batch's tasks grouped by outcome, failure type and model, with its timing."""
        breakdown = await self._store.listings.batch_breakdown(
            parse_batch_id(batch_id), tenant_scope(tenant_id)
        )
        if breakdown is None:
            raise BatchNotFound("batch not found", batch_id=batch_id)
        return breakdown

    async def list_batch_totals(
        self,
        cursor: str,
        limit: int,
        *,
        batch_ids: Sequence[str] = (),
        created_from: datetime | None = None,
    ) -> tuple[list[BatchTotals], str]:
        """Per-batch outcome totals in id order (every batch, or those named and/or created since),
        and the next cursor ("" at the end). A malformed id: NOT_FOUND; more than 1000: INVALID_ARGUMENT."""
        size = page_size(limit)
        after = parse_batch_id(cursor) if cursor else None
        if len(batch_ids) > MAX_NAMED_BATCHES:
            raise InvalidArgument(f"at most {MAX_NAMED_BATCHES} batch ids", field="batch_ids")
        named = [parse_batch_id(value) for value in batch_ids] if batch_ids else None
        found = await self._store.listings.batch_totals(after, size + 1, named, created_from)
        if len(found) <= size:
            return found, ""
        return found[:size], str(found[size - 1].batch_id)
