"""The batch server's use cases, one attribute per topic: what its entrypoints (the gRPC
servicer, the settlement consumer, the recovery loop) call. Each topic lives in its own module
of `services/batch/use_cases/`."""

from __future__ import annotations

from dataclasses import dataclass

from services.batch.adapters.sql.store import BatchStore
from services.batch.limits import create_limits
from services.batch.use_cases.cancel import Cancellation
from services.batch.use_cases.input_files import InputFileUploads
from services.batch.use_cases.intake import DEFAULT_QUEUE_GROUP_SIZE, Billing, Intake
from services.batch.use_cases.item_settings import ItemSettings
from services.batch.use_cases.reads import Reads
from services.batch.use_cases.recovery import Recovery
from services.batch.use_cases.retries import Retries
from services.batch.use_cases.settlement import Settlements


@dataclass(frozen=True)
class BatchHandlers:
    """The batch server's use cases over its SQL store and billing."""

    intake: Intake
    retries: Retries
    reads: Reads
    cancellation: Cancellation
    settlements: Settlements
    recovery: Recovery
    # None where no file storage is wired (unit tests of other use cases).
    input_files: InputFileUploads | None = None

    @classmethod
    def build(
        cls,
        store: BatchStore,
        billing: Billing,
        *,
        max_batch_items: int,
        max_prompt_chars: int,
        queue_group_size: int = DEFAULT_QUEUE_GROUP_SIZE,
        item_settings: ItemSettings | None = None,
        input_files: InputFileUploads | None = None,
    ) -> BatchHandlers:
        """The use cases over `store` and `billing`, with the configured create limits (and the
        generation settings' checks and input file uploads, when wired)."""
        limits = create_limits(max_batch_items=max_batch_items, max_prompt_chars=max_prompt_chars)
        intake = Intake(
            store, billing, limits, queue_group_size=queue_group_size, item_settings=item_settings
        )
        return cls(
            intake=intake,
            retries=Retries(store, intake, limits),
            reads=Reads(store),
            cancellation=Cancellation(store),
            settlements=Settlements(store),
            recovery=Recovery(store, intake),
            input_files=input_files,
        )
