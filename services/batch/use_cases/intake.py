"""Intake: a batch validated, priced, stored, its credits frozen and queued; replays of a
request answer identically, and a batch billing refuses is rejected for good."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from libs.errors import MAX_FIELD_VIOLATIONS, ErrorCategory, FieldViolation, InvalidArgument, ServiceError
from libs.group_commit import GroupCommitter
from services.batch import metrics as batch_metrics
from services.batch.adapters.sql.intake import SMALL_BATCH_MAX_ITEMS
from services.batch.adapters.sql.queueing import QueuedBatches
from services.batch.adapters.sql.store import BatchStore
from services.batch.domain.batch import (
    BatchId,
    BatchItem,
    BatchRecord,
    BatchStatus,
    CreateBatchResult,
    NewBatch,
    QuoteLine,
    RejectionReason,
    RequestedLine,
    Reservation,
    ReservationTerms,
    StoredQuote,
    TenantId,
    accepted_result,
    common_unit_price,
    month_end,
    parse_tenant_id,
    price_keys,
    project_of,
    quote_lines,
    recorded_terms,
    required_credits,
)
from services.batch.domain.commands import CreateBatch
from services.batch.domain.errors import (
    BATCH_REJECTIONS,
    BatchNotFound,
    BatchRejection,
    BillingUnavailable,
    BudgetExceeded,
    DebtOutstanding,
    IdempotencyKeyReused,
    InsufficientCredits,
    ModelUnavailable,
    PriceChanged,
    QuoteRefused,
)
from services.batch.domain.fingerprint import request_fingerprint
from services.batch.domain.validation import CreateLimits, create_violations, priced_line_violations
from services.batch.use_cases.item_settings import ItemSettings

log = logging.getLogger(__name__)


# At most this many reserved batches are queued by one transaction.
DEFAULT_QUEUE_GROUP_SIZE = 64
# Re-pricings of one reserving batch in a row before it is left to the recovery loop.
_REPRICE_ATTEMPTS = 3


class Billing(Protocol):
    """What the batch service needs from billing."""

    async def quote(self, tenant_id: TenantId, lines: Sequence[RequestedLine]) -> list[QuoteLine]:
        """Prices the lines in order; bad model, duration or option: InvalidArgument."""
        ...

    async def reserve(
        self, tenant_id: TenantId, batch_id: BatchId, lines: Sequence[QuoteLine], terms: ReservationTerms
    ) -> Reservation:
        """Freezes the batch's price (idempotent on batch_id); raises InsufficientCredits,
        BudgetExceeded, QuoteRefused."""
        ...

    async def create_quote(
        self, tenant_id: TenantId, lines: Sequence[QuoteLine], fingerprint: str, api_key_id: str
    ) -> StoredQuote:
        """Stores a quote of priced lines (nothing frozen)."""
        ...

    async def stored_quote(
        self, tenant_id: TenantId, quote_id: str, asked: Sequence[RequestedLine]
    ) -> StoredQuote:
        """One of the tenant's quotes; QuoteRefused(quote_not_found) otherwise."""
        ...


def _rejection(batch: BatchRecord) -> ServiceError:
    """The refusal a rejected batch answers with, the same on every replay."""
    if batch.rejection_reason == RejectionReason.MODEL_UNAVAILABLE:
        return ModelUnavailable(
            "a model of this batch is no longer offered; nothing was frozen", field="items"
        )
    if batch.rejection_reason == RejectionReason.BUDGET_EXCEEDED:
        # The budget period is the batch's month (billing froze, or refused, within its request).
        return BudgetExceeded(
            batch.rejected_required or 0,
            batch.rejected_available or 0,
            month_end(batch.created_at).isoformat(),
        )
    if batch.rejection_reason == RejectionReason.DEBT_OUTSTANDING:
        # Stored as (required, debt) in the columns of (required, available).
        return DebtOutstanding(batch.rejected_available or 0, batch.rejected_required or 0)
    if batch.rejection_reason in QuoteRefused.MESSAGES:
        return QuoteRefused(batch.rejection_reason or "")
    return InsufficientCredits(batch.rejected_required or 0, batch.rejected_available or 0)


def _rejection_record(refused: BatchRejection) -> tuple[RejectionReason, int | None, int | None]:
    """What a rejected batch stores of billing's refusal: its reason and the credits compared (the
    required, and the available balance or the budget's remaining) that `_rejection` answers again."""
    if isinstance(refused, InsufficientCredits):
        return RejectionReason.INSUFFICIENT_CREDITS, refused.required_credits, refused.available_credits
    if isinstance(refused, BudgetExceeded):
        return RejectionReason.BUDGET_EXCEEDED, refused.required_credits, refused.remaining_credits
    if isinstance(refused, DebtOutstanding):
        return RejectionReason.DEBT_OUTSTANDING, refused.required_credits, refused.debt_credits
    if isinstance(refused, QuoteRefused):
        return RejectionReason(refused.reason), None, None
    # A model withdrawn from the price list since the quote.
    return RejectionReason.MODEL_UNAVAILABLE, None, None


class Intake:
    """Creates batches and completes their reservations, over the SQL store and billing."""

    def __init__(
        self,
        store: BatchStore,
        billing: Billing,
        limits: CreateLimits,
        *,
        queue_group_size: int = DEFAULT_QUEUE_GROUP_SIZE,
        item_settings: ItemSettings | None = None,
    ) -> None:
        self._store = store
        self._billing = billing
        self._limits = limits
        # None: items' settings are not checked against capabilities (unit tests of other rules).
        self._item_settings = item_settings
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
        options = await self._validated_options(tenant_id, command)
        fingerprint = self._fingerprint(command, retry_of)
        request_id = command.request_id or None
        terms = ReservationTerms(
            api_key_id=command.api_key_id,
            project=project_of(command.metadata),
            quote_id=command.quote_id,
            fingerprint=fingerprint if command.quote_id else "",
        )

        # A replay needs neither a quote nor billing at all once its batch was queued. A request
        # id generated for this very request cannot be a replay (and were it one, the insert
        # below would still find the batch holding it).
        batch: BatchRecord | None = None
        if request_id is not None and not command.request_id_generated:
            batch = await self._store.intake.find_by_request_id(tenant_id, request_id)
        created = False
        priced: list[QuoteLine] | None = None
        if batch is None:
            requested = quote_lines(price_keys(command.items, options))
            if command.quote_id:
                priced = await self._quoted_lines(tenant_id, command.quote_id, requested, fingerprint)
            else:
                priced = await self._quote_items(tenant_id, requested, command.items)
            new = NewBatch(
                id=BatchId(uuid.uuid4()),
                tenant_id=tenant_id,
                request_id=request_id,
                request_fingerprint=fingerprint,
                items=command.items,
                prices={
                    (asked.model, asked.duration_seconds, asked.options): line
                    for asked, line in zip(requested, priced, strict=True)
                },
                required_credits=required_credits(priced),
                cost_per_video=common_unit_price(priced),
                webhook_url=command.webhook_url or None,
                deadline_seconds=command.deadline_seconds,
                retry_of=retry_of,
                options=options,
                name=command.name or None,
                metadata=command.metadata,
                open_batch_limit=max(0, command.open_batch_limit),
                api_key_id=command.api_key_id,
                quote_id=command.quote_id,
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
                f"this idempotency key was already used for batch {batch.id}, with another body",
                request_id=command.request_id,
                batch_id=batch.id,
            )
        # The batch just stored is reserved with the lines just quoted (its tasks were priced from
        # them); a batch found by its request id is completed from what is stored.
        batch = await self.complete(batch, priced if created else None, terms if created else None)
        return accepted_result(batch, replayed=not created)

    async def quote_batch(self, command: CreateBatch) -> tuple[StoredQuote, list[int]]:
        """Validates and prices a batch as `create_batch` would and stores the price as a quote a
        create of the same body may cite; answers it with each item's price. Nothing is frozen."""
        tenant_id = parse_tenant_id(command.tenant_id)
        options = await self._validated_options(tenant_id, command)
        keys = price_keys(command.items, options)
        requested = quote_lines(keys)
        priced = await self._quote_items(tenant_id, requested, command.items)
        stored = await self._billing.create_quote(
            tenant_id, priced, self._fingerprint(command), command.api_key_id
        )
        by_key = {
            (asked.model, asked.duration_seconds, asked.options): line.unit_price
            for asked, line in zip(requested, stored.lines, strict=True)
        }
        return stored, [by_key[key] for key in keys]

    async def _validated_options(self, tenant_id: TenantId, command: CreateBatch) -> tuple[str, ...]:
        """Each item's priced options, once the request is valid; every problem at once otherwise
        (the request's own rules, then each item's settings, then the price list's), as one 422."""
        violations = create_violations(command, self._limits)
        options: tuple[str, ...] = ()
        if self._item_settings is not None and len(violations) < MAX_FIELD_VIOLATIONS:
            checked = await self._item_settings.check(tenant_id, command.items)
            violations += checked.violations
            options = checked.options
        if violations:
            if len(violations) < MAX_FIELD_VIOLATIONS:
                violations += await self._price_list_violations(tenant_id, command.items, violations)
            raise InvalidArgument.of(violations[:MAX_FIELD_VIOLATIONS])
        return options

    @staticmethod
    def _fingerprint(command: CreateBatch, retry_of: BatchId | None = None) -> str:
        """The fingerprint of a create body: its idempotency check and its quote's match."""
        return request_fingerprint(
            command.items,
            command.webhook_url,
            deadline_seconds=command.deadline_seconds,
            retry_of=str(retry_of) if retry_of else "",
            name=command.name,
            metadata=command.metadata,
        )

    async def _quoted_lines(
        self, tenant_id: TenantId, quote_id: str, requested: Sequence[RequestedLine], fingerprint: str
    ) -> list[QuoteLine]:
        """The cited quote's priced lines, refused at once (nothing stored) when it is used, expired
        or of another body; billing checks all of it again in the freeze's transaction."""
        stored = await self._billing.stored_quote(tenant_id, quote_id, requested)
        if stored.batch_id:
            raise QuoteRefused("quote_used", quote_id=quote_id, batch_id=stored.batch_id)
        if datetime.now(UTC) >= stored.expires_at:
            raise QuoteRefused("quote_expired", quote_id=quote_id, expires_at=stored.expires_at.isoformat())
        asked = [(line.model, line.count) for line in requested]
        if stored.fingerprint != fingerprint or [(line.model, line.count) for line in stored.lines] != asked:
            raise QuoteRefused("quote_mismatch", quote_id=quote_id)
        return list(stored.lines)

    async def _quote_items(
        self, tenant_id: TenantId, lines: Sequence[RequestedLine], items: Sequence[BatchItem]
    ) -> list[QuoteLine]:
        """Billing's quote of the lines; a refused quote is answered as every item it concerns.

        Billing stops at the first bad line, so on a refusal each line is asked about alone (only
        then: a valid batch costs one call) and every item of every refused line is named.
        """
        try:
            return await self._billing.quote(tenant_id, lines)
        except ServiceError as refused:
            if refused.category is not ErrorCategory.INVALID_ARGUMENT:
                raise
        answers = await asyncio.gather(
            *(self._billing.quote(tenant_id, [line]) for line in lines), return_exceptions=True
        )
        refusals: dict[tuple[str, int], ServiceError] = {}
        for line, answer in zip(lines, answers, strict=True):
            if isinstance(answer, ServiceError) and answer.category is ErrorCategory.INVALID_ARGUMENT:
                refusals[(line.model, line.duration_seconds)] = answer
            elif isinstance(answer, BaseException):
                raise answer
        violations = priced_line_violations(items, refusals)
        if not violations:
            # The lines priced alone but not together (a price list deployed in between): ask again.
            return await self._billing.quote(tenant_id, lines)
        raise InvalidArgument.of(violations)

    async def _price_list_violations(
        self, tenant_id: TenantId, items: Sequence[BatchItem], found: Sequence[FieldViolation]
    ) -> list[FieldViolation]:
        """The price list's refusals of a request already refused for other problems, so that one
        422 names every problem (ADR-088): each distinct (model, duration) line of the items whose
        model and duration broke no rule of their own is asked about, on this error path only.
        Nothing is added while billing cannot answer: the other problems are answered alone."""
        # Items whose model or duration already broke a rule are not asked about again.
        broken = {
            violation.location[1:2]
            for violation in found
            if violation.location[:1] == ("items",)
            and violation.location[2:3] in (("model",), ("duration_seconds",))
        }
        asked = [item for index, item in enumerate(items) if (index,) not in broken]
        if not asked:
            return []
        try:
            await self._quote_items(tenant_id, quote_lines(price_keys(asked)), items)
        except InvalidArgument as refused:
            return [violation for violation in refused.violations if violation.location[1:2] not in broken]
        except ServiceError:
            return []
        return []

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

    async def complete_reservation(self, batch_id: BatchId) -> BatchRecord:
        """Freezes the credits of a reserving batch and queues it (idempotent).

        Raises, for a rejected batch, its refusal (one of `BATCH_REJECTIONS`, every time, with
        the same details) and BillingUnavailable while billing cannot be reached (the batch
        stays reserving).
        """
        batch = await self._store.listings.get_batch(batch_id)
        if batch is None:
            raise BatchNotFound("batch not found", batch_id=str(batch_id))
        return await self.complete(batch)

    async def complete(
        self,
        batch: BatchRecord,
        lines: Sequence[QuoteLine] | None = None,
        terms: ReservationTerms | None = None,
    ) -> BatchRecord:
        """`complete_reservation` of a batch already read; `lines`: its quoted lines, when known;
        `terms`: its key, project and quote, when known (otherwise its project, from its metadata)."""
        if batch.status is BatchStatus.RESERVING:
            if lines is None:
                lines = await self._store.reservations.reservation_lines(batch.id)
            if terms is None:
                terms = recorded_terms(batch)
            changed: BatchRecord | None
            try:
                reserved = await self._reserve_at_current_prices(batch, lines, terms)
            except BATCH_REJECTIONS as refused:
                # Refused for good (retrying cannot succeed): the batch owes nothing and never runs.
                changed = await self._store.reservations.mark_rejected(batch.id, *_rejection_record(refused))
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
        self, batch: BatchRecord, lines: Sequence[QuoteLine], terms: ReservationTerms
    ) -> Reservation | None:
        """Billing's Reserve. When a price changed since the quote (a price list deployed in
        between), the batch, still reserving, is re-priced and reserved again: nothing was frozen
        for it yet, so the customer pays the price in force when its credits are frozen, which the
        answer shows. None when the batch stopped reserving meanwhile."""
        for _ in range(_REPRICE_ATTEMPTS):
            try:
                return await self._billing.reserve(batch.tenant_id, batch.id, lines, terms)
            except PriceChanged:
                current = await self._billing.quote(
                    batch.tenant_id,
                    [
                        RequestedLine(line.model, line.count, line.duration_seconds, line.options)
                        for line in lines
                    ],
                )
                if await self._store.intake.reprice_reserving(batch.id, lines, current) is None:
                    return None
                lines = current
        raise BillingUnavailable("prices keep changing; the batch stays reserving and is retried")
