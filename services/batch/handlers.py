"""Use cases of the batch service: create, read, cancel, settle and recover batches."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from libs.errors import InvalidArgument, ServiceError
from libs.group_commit import GroupCommitter
from services.batch import metrics as batch_metrics
from services.batch.adapters.sql.intake import SMALL_BATCH_MAX_ITEMS
from services.batch.adapters.sql.queueing import QueuedBatches
from services.batch.adapters.sql.store import BatchStore
from services.batch.domain.batch import (
    BatchId,
    BatchRecord,
    BatchStatus,
    BatchView,
    CreateBatchResult,
    NewBatch,
    QuoteLine,
    RejectionReason,
    Reservation,
    Settlement,
    SettlementStatus,
    TaskStatus,
    TaskSummary,
    TenantId,
    accepted_result,
    common_unit_price,
    parse_batch_id,
    parse_tenant_id,
    quote_lines,
    required_credits,
)
from services.batch.domain.commands import CreateBatch, ListBatches, ListTasks, RetryFailed
from services.batch.domain.errors import (
    BatchNotFinished,
    BatchNotFound,
    BillingUnavailable,
    IdempotencyKeyReused,
    InsufficientCredits,
    ModelUnavailable,
    PriceChanged,
)
from services.batch.domain.fingerprint import request_fingerprint
from services.batch.domain.paging import BatchCursor, TaskCursor, page_size
from services.batch.domain.provider import FailureType
from services.batch.domain.reporting import BatchBreakdown, BatchTotals
from services.batch.domain.validation import retried_failure_types, validate_create
from services.batch.limits import create_limits

log = logging.getLogger(__name__)

# At most this many reserved batches are queued by one transaction.
DEFAULT_QUEUE_GROUP_SIZE = 64
# Re-pricings of one reserving batch in a row before it is left to the recovery loop.
_REPRICE_ATTEMPTS = 3


class Billing(Protocol):
    """What the batch service needs from billing."""

    async def quote(self, tenant_id: TenantId, lines: Sequence[tuple[str, int, int]]) -> list[QuoteLine]:
        """Prices (model, count, duration_seconds) lines in order; bad model or duration: InvalidArgument."""
        ...

    async def reserve(
        self, tenant_id: TenantId, batch_id: BatchId, lines: Sequence[QuoteLine]
    ) -> Reservation:
        """Freezes the batch's price (idempotent on batch_id); raises InsufficientCredits."""
        ...


@dataclass(frozen=True)
class RecoveryReport:
    """What one recovery round repaired."""

    reservations_resumed: int = 0
    tasks_requeued: int = 0
    tasks_lost: int = 0
    batches_finished: int = 0
    deadlines_expired: int = 0
    tasks_dispatched: int = 0


def _scope(tenant_id: str) -> TenantId | None:
    # An empty tenant is the admin scope; only the gateway's admin routes send it.
    return parse_tenant_id(tenant_id) if tenant_id else None


def _rejection(batch: BatchRecord) -> ServiceError:
    """The refusal a rejected batch answers with, the same on every replay."""
    if batch.rejection_reason == RejectionReason.MODEL_UNAVAILABLE:
        return ModelUnavailable(
            "a model of this batch is no longer offered; nothing was frozen", field="items"
        )
    return InsufficientCredits(batch.rejected_required or 0, batch.rejected_available or 0)


class BatchHandlers:
    """The batch service's use cases, over its SQL store and billing."""

    def __init__(
        self,
        store: BatchStore,
        billing: Billing,
        *,
        max_batch_items: int,
        max_prompt_chars: int,
        queue_group_size: int = DEFAULT_QUEUE_GROUP_SIZE,
    ) -> None:
        self._store = store
        self._billing = billing
        self._limits = create_limits(max_batch_items=max_batch_items, max_prompt_chars=max_prompt_chars)
        # Reserved batches are queued by group commit: those reserved while one queueing
        # transaction runs share the next (one UPDATE, one window top-up per tenant, one outbox
        # insert), instead of each taking the tenant's window lock in turn.
        self._queueing: GroupCommitter[tuple[BatchId, Reservation], BatchRecord | None] = GroupCommitter(
            self._queue_group, max_group_size=queue_group_size, name="batch-queueing"
        )
        # Small batches are stored the same way: those created while one insert runs share the
        # next statement (one round trip and one commit), each still created or replayed alone.
        self._inserts: GroupCommitter[NewBatch, tuple[BatchRecord, bool]] = GroupCommitter(
            self._insert_group, max_group_size=queue_group_size, name="batch-inserts"
        )
        # First dispatches of large batches, run after their create answered (see `_dispatch_soon`).
        self._dispatching: set[asyncio.Task[int]] = set()

    async def create_batch(
        self, command: CreateBatch, *, retry_of: BatchId | None = None
    ) -> CreateBatchResult:
        """Validates, prices, stores, freezes credits and queues a batch; replays are identical."""
        tenant_id = parse_tenant_id(command.tenant_id)
        validate_create(command, self._limits)
        fingerprint = request_fingerprint(
            command.items,
            command.webhook_url,
            deadline_seconds=command.deadline_seconds,
            retry_of=str(retry_of) if retry_of else "",
        )
        request_id = command.request_id or None

        # A replay needs neither a quote nor billing at all once its batch was queued. A request
        # id generated for this very request cannot be a replay (and were it one, the insert
        # below would still find the batch holding it).
        batch: BatchRecord | None = None
        if request_id is not None and not command.request_id_generated:
            batch = await self._store.intake.find_by_request_id(tenant_id, request_id)
        created = False
        priced: list[QuoteLine] | None = None
        if batch is None:
            requested = quote_lines(command.items)
            priced = await self._billing.quote(tenant_id, requested)
            new = NewBatch(
                id=BatchId(uuid.uuid4()),
                tenant_id=tenant_id,
                request_id=request_id,
                request_fingerprint=fingerprint,
                items=command.items,
                prices={
                    (model, duration): line
                    for (model, _, duration), line in zip(requested, priced, strict=True)
                },
                required_credits=required_credits(priced),
                cost_per_video=common_unit_price(priced),
                webhook_url=command.webhook_url or None,
                deadline_seconds=command.deadline_seconds,
                retry_of=retry_of,
            )
            if len(new.items) <= SMALL_BATCH_MAX_ITEMS and retry_of is None:
                batch, created = await self._inserts.submit(new)
            else:
                batch, created = await self._store.intake.insert_batch(new)
        # The same key with another body is refused; a retry found by its source's place (it holds
        # another request id) answers whatever this call asked (ADR-048).
        if (
            request_id is not None
            and batch.request_id == request_id
            and batch.request_fingerprint != fingerprint
        ):
            raise IdempotencyKeyReused(
                "this request id was already used for a different batch", request_id=command.request_id
            )
        # The batch just stored is reserved with the lines just quoted (its tasks were priced from
        # them); a batch found by its request id is completed from what is stored.
        batch = await self._complete(batch, priced if created else None)
        return accepted_result(batch, replayed=not created)

    async def _insert_group(
        self, group: Sequence[NewBatch]
    ) -> Sequence[tuple[BatchRecord, bool] | BaseException]:
        try:
            return await self._store.intake.insert_small_batches(group)
        except Exception:
            if len(group) == 1:
                raise
            # One batch the database refuses must not fail the others: each is stored alone.
            return await asyncio.gather(*map(self._store.intake.insert_batch, group), return_exceptions=True)

    async def _queue_group(
        self, reserved: Sequence[tuple[BatchId, Reservation]]
    ) -> Sequence[BatchRecord | None]:
        """Queues a group of reserved batches in one transaction (the queueing group commit)."""
        queued: QueuedBatches = await self._store.queue.mark_queued_many(reserved)
        # Batches cancelled while they were reserving end here, their tasks cancelled.
        batch_metrics.batches_reached(queued.finished)
        return queued.batches

    async def retry_failed(self, command: RetryFailed) -> CreateBatchResult:
        """A new batch (new reservation) from the failed items of a finished batch, at most once.

        The source's first retry answers every later call, whatever its request id or failure
        types (replayed); only a rejected retry, which froze nothing, leaves the place to a new
        one. The place is a unique key (`retry_slot`), so concurrent calls on several replicas
        freeze once. A request id already used is honoured first, as CreateBatch does.
        """
        failure_types = retried_failure_types(command.failure_types)
        source_id = parse_batch_id(command.batch_id)
        source = await self._store.listings.get_batch(source_id, parse_tenant_id(command.tenant_id))
        if source is None:
            raise BatchNotFound("batch not found", batch_id=command.batch_id)
        if not source.is_finished:
            raise BatchNotFinished("the batch has not finished yet", batch_id=command.batch_id)
        if len(command.request_id) > self._limits.max_request_id_chars:
            raise InvalidArgument("request_id is too long", field="request_id")
        key_used = bool(command.request_id) and (
            await self._store.intake.find_by_request_id(source.tenant_id, command.request_id) is not None
        )
        if not key_used:
            # The common repeat, answered without a quote; the unique key decides the races.
            retry = await self._store.intake.live_retry(source_id)
            if retry is not None:
                return accepted_result(await self._complete(retry), replayed=True)
        items = await self._store.listings.failed_items(source_id, failure_types)
        if not items:
            raise InvalidArgument(
                "the batch has no failed items of these failure types to retry",
                field="batch_id",
                failure_types=",".join(sorted(failure_types)),
            )
        create = CreateBatch(
            tenant_id=command.tenant_id,
            request_id=command.request_id,
            items=tuple(items),
            webhook_url=source.webhook_url or "",
        )
        return await self.create_batch(create, retry_of=source_id)

    async def complete_reservation(self, batch_id: BatchId) -> BatchRecord:
        """Freezes the credits of a reserving batch and queues it (idempotent).

        Raises, for a rejected batch, InsufficientCredits or ModelUnavailable (every time, with
        the same details) and BillingUnavailable while billing cannot be reached (the batch
        stays reserving).
        """
        batch = await self._store.listings.get_batch(batch_id)
        if batch is None:
            raise BatchNotFound("batch not found", batch_id=str(batch_id))
        return await self._complete(batch)

    async def _complete(self, batch: BatchRecord, lines: Sequence[QuoteLine] | None = None) -> BatchRecord:
        """`complete_reservation` of a batch already read; `lines`: its quoted lines, when known."""
        if batch.status is BatchStatus.RESERVING:
            if lines is None:
                lines = await self._store.reservations.reservation_lines(batch.id)
            changed: BatchRecord | None
            try:
                reserved = await self._reserve_at_current_prices(batch, lines)
            except InsufficientCredits as refused:
                changed = await self._store.reservations.mark_rejected(
                    batch.id,
                    RejectionReason.INSUFFICIENT_CREDITS,
                    refused.required_credits,
                    refused.available_credits,
                )
                if changed is not None:
                    batch_metrics.batch_reached(BatchStatus.REJECTED)
            except ModelUnavailable:
                # Withdrawn from the price list since the quote: retrying cannot succeed.
                changed = await self._store.reservations.mark_rejected(
                    batch.id, RejectionReason.MODEL_UNAVAILABLE
                )
                if changed is not None:
                    batch_metrics.batch_reached(BatchStatus.REJECTED)
            else:
                changed = await self._queueing.submit((batch.id, reserved)) if reserved else None
                if changed is not None:
                    batch_metrics.batch_reached(BatchStatus.QUEUED)
                    if not changed.cancel_requested and not self._store.windows.dispatches_when_queued(
                        changed
                    ):
                        self._dispatch_soon(changed.tenant_id)
            if changed is None:
                # Someone else (a concurrent retry, the recovery loop) moved it on first.
                changed = await self._store.listings.get_batch(batch.id)
                assert changed is not None, "batches are never deleted"
            batch = changed
        if batch.status is BatchStatus.REJECTED:
            raise _rejection(batch)
        if batch.status is BatchStatus.RESERVING:
            raise BillingUnavailable("the credits of this batch could not be frozen yet; retry")
        return batch

    def _dispatch_soon(self, tenant_id: TenantId) -> None:
        """Tops up the tenant's windows in the background: the answer does not wait for it."""
        top_up = asyncio.create_task(self._store.queue.top_up_tenant(tenant_id), name="batch-first-dispatch")
        self._dispatching.add(top_up)
        top_up.add_done_callback(self._dispatched)

    def _dispatched(self, top_up: asyncio.Task[int]) -> None:
        self._dispatching.discard(top_up)
        if not top_up.cancelled() and top_up.exception() is not None:
            # The recovery loop's top-up dispatches the batch instead, within its period.
            log.error("first dispatch of a large batch failed", exc_info=top_up.exception())

    async def _reserve_at_current_prices(
        self, batch: BatchRecord, lines: Sequence[QuoteLine]
    ) -> Reservation | None:
        """Billing's Reserve. When a price changed since the quote (a price list deployed in
        between), the batch, still reserving, is re-priced and reserved again: nothing was frozen
        for it yet, so the customer pays the price in force when its credits are frozen, which the
        answer shows. None when the batch stopped reserving meanwhile."""
        for _ in range(_REPRICE_ATTEMPTS):
            try:
                return await self._billing.reserve(batch.tenant_id, batch.id, lines)
            except PriceChanged:
                current = await self._billing.quote(
                    batch.tenant_id, [(line.model, line.count, line.duration_seconds) for line in lines]
                )
                if await self._store.intake.reprice_reserving(batch.id, lines, current) is None:
                    return None
                lines = current
        raise BillingUnavailable("prices keep changing; the batch stays reserving and is retried")

    async def get_batch(self, tenant_id: str, batch_id: str) -> BatchView:
        """One batch with its counters; another tenant's batch is not found."""
        view = await self._store.reads.batch_view(parse_batch_id(batch_id), _scope(tenant_id))
        if view is None:
            raise BatchNotFound("batch not found", batch_id=batch_id)
        return view

    async def count_open_batches(self, tenant_id: str, limit: int) -> int:
        """How many of the tenant's batches are unfinished, counted up to `limit` (positive)."""
        if limit < 1:
            raise InvalidArgument("limit must be positive", field="limit")
        return await self._store.reads.count_open_batches(parse_tenant_id(tenant_id), limit)

    async def list_batches(self, query: ListBatches) -> tuple[list[BatchView], str]:
        """A page of batches and the cursor of the next page ("" on the last one)."""
        scope = _scope(query.tenant_id)
        if query.status and query.status not in {status.value for status in BatchStatus}:
            raise InvalidArgument("unknown batch status", field="status")
        if query.settlement_status and query.settlement_status not in {s.value for s in SettlementStatus}:
            raise InvalidArgument("unknown settlement status", field="settlement_status")
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
        limit = page_size(query.limit)
        after = TaskCursor.decode(query.cursor).batch_index if query.cursor else None
        # The scope check and the page are one statement (one round trip per page); a malformed
        # question is refused before it, whoever owns the batch (the answer reveals nothing).
        found = await self._store.reads.list_tasks(
            batch_id, _scope(query.tenant_id), status, after, limit + 1, failure_type=failure_type
        )
        if found is None:
            raise BatchNotFound("batch not found", batch_id=query.batch_id)
        if len(found) <= limit:
            return found, ""
        return found[:limit], TaskCursor(found[limit - 1].batch_index).encode()

    async def batch_breakdown(self, tenant_id: str, batch_id: str) -> BatchBreakdown:
        """A batch's tasks grouped by outcome, failure type and model, with its timing."""
        breakdown = await self._store.listings.batch_breakdown(parse_batch_id(batch_id), _scope(tenant_id))
        if breakdown is None:
            raise BatchNotFound("batch not found", batch_id=batch_id)
        return breakdown

    async def list_batch_totals(self, cursor: str, limit: int) -> tuple[list[BatchTotals], str]:
        """Per-batch outcome totals of every batch in id order, and the next cursor ("" at the end)."""
        size = page_size(limit)
        after = parse_batch_id(cursor) if cursor else None
        found = await self._store.listings.batch_totals(after, size + 1)
        if len(found) <= size:
            return found, ""
        return found[:size], str(found[size - 1].batch_id)

    async def cancel_batch(self, tenant_id: str, batch_id: str) -> BatchView:
        """Cancels the batch: queued tasks at once, running ones by their workers; all refunded."""
        parsed = parse_batch_id(batch_id)
        scope = _scope(tenant_id)
        finished = await self._store.cancels.cancel_batch(parsed, scope)
        if finished is None:
            raise BatchNotFound("batch not found", batch_id=batch_id)
        batch_metrics.batches_reached(finished)
        view = await self._store.reads.batch_view(parsed, scope)
        assert view is not None, "batches are never deleted"
        return view

    async def record_settlements(self, settlements: Sequence[Settlement]) -> int:
        """Applies billing's settlements (idempotent); returns how many batches changed."""
        return await self._store.settlements.record_settlements(settlements)

    async def recover_once(self, *, reserving_grace_seconds: float, limit: int = 500) -> RecoveryReport:
        """One round of repairs after crashes and outages; safe to run on several replicas."""
        resumed = 0
        for batch_id in await self._store.recovery.stale_reserving_batches(reserving_grace_seconds, limit):
            try:
                await self.complete_reservation(batch_id)
            except (InsufficientCredits, ModelUnavailable):
                resumed += 1  # rejected: settled for good
            except ServiceError as refused:
                # Billing is down or refused: the batch stays reserving and the next round retries.
                log.warning("reservation of batch %s not completed: %s", batch_id, refused.message)
            else:
                resumed += 1
        recovery = self._store.recovery
        expired = await recovery.expire_deadlines(limit)
        batch_metrics.batches_reached(expired.finished)
        leases = await recovery.recover_expired_leases(limit)
        batch_metrics.batches_reached(leases.finished)
        forgotten = await recovery.finish_forgotten_batches(limit)
        batch_metrics.batches_reached(forgotten.finished)
        dispatched = await recovery.top_up_windows(limit)
        return RecoveryReport(
            resumed, leases.requeued, leases.failed, forgotten.count, expired.count, dispatched
        )
