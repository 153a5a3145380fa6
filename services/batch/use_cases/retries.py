"""Retries: a new batch (a new reservation) from the failed items of a finished batch, at most
one per source batch (ADR-048)."""

from __future__ import annotations

from libs.errors import InvalidArgument
from services.batch.adapters.sql.store import BatchStore
from services.batch.domain.batch import CreateBatchResult, accepted_result, parse_batch_id, parse_tenant_id
from services.batch.domain.commands import CreateBatch, RetryFailed
from services.batch.domain.errors import BatchNotFinished, BatchNotFound
from services.batch.domain.validation import CreateLimits, request_id_violation, retried_failure_types
from services.batch.use_cases.intake import Intake


class Retries:
    """Retries the failed tasks of finished batches as new batches, through intake."""

    def __init__(self, store: BatchStore, intake: Intake, limits: CreateLimits) -> None:
        self._store = store
        self._intake = intake
        self._limits = limits

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
        # Checked before the key is looked up, as a create checks it (one rule for both).
        too_long = request_id_violation(command.request_id, self._limits)
        if too_long is not None:
            raise InvalidArgument.of([too_long])
        key_used = bool(command.request_id) and (
            await self._store.intake.find_by_request_id(source.tenant_id, command.request_id) is not None
        )
        if not key_used:
            # The common repeat, answered without a quote; the unique key decides the races.
            retry = await self._store.intake.live_retry(source_id)
            if retry is not None:
                return accepted_result(await self._intake.complete(retry), replayed=True)
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
        return await self._intake.create_batch(create, retry_of=source_id)
