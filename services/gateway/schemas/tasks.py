"""Tasks: one video of a batch, and a page of them (the polled read answers `fields_of` as JSON)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from pydantic import AwareDatetime, BaseModel, Field
from reelbatch.proto.batch.v1 import batch_pb2

from libs import vocabulary
from libs.ledger_keys import task_transfer_id
from libs.rpc.timestamps import optional_time
from libs.vocabulary import listed, one_of
from services.gateway.schemas.fields import none_if_empty
from services.gateway.schemas.generation import GenerationSettingsIn, settings_view
from services.gateway.schemas.pages import CursorPage

if TYPE_CHECKING:
    TaskStatus = str
else:
    # The REST filter accepts the shared vocabulary's values (libs/vocabulary.py).
    TaskStatus = one_of(vocabulary.TaskStatus)


class TaskView(BaseModel):
    """One video of a batch."""

    task_id: str = Field(description="Identifier of the task.")
    batch_index: int = Field(description="Position of the item in the submitted `items` (0-based).")
    status: str = Field(description=f"{listed(vocabulary.TaskStatus)}.")
    model: str = Field(description="Model used.")
    prompt: str = Field(description="The prompt as submitted.")
    video_url: str | None = Field(description="Where the video can be downloaded; null unless succeeded.")
    error_message: str | None = Field(description="Why the task failed; null unless failed or cancelled.")
    failure_type: str | None = Field(
        description=(f"{listed(vocabulary.FailureType)}; null unless failed or cancelled.")
    )
    attempts: int = Field(description="Provider attempts made so far.")
    finished_at: AwareDatetime | None = Field(description="When the task finished; null until then.")
    custom_id: str | None = Field(default=None, description="Your id of the item; null if none.")
    metadata: dict[str, str] = Field(default_factory=dict, description="Your labels of the item.")
    settings: GenerationSettingsIn | None = Field(
        default=None, description="The item's generation settings as submitted; null when it set none."
    )
    duration_seconds: int | None = Field(
        default=None, description="The video length priced, for a model priced per second; null otherwise."
    )
    started_at: AwareDatetime | None = Field(
        default=None, description="When a worker first started it; null while queued."
    )
    current_attempt: int | None = Field(
        default=None,
        description="While running: the attempt under way or waited for (1 = the first); null otherwise.",
    )
    next_attempt_at: AwareDatetime | None = Field(
        default=None, description="While waiting to retry a transient failure: when the next attempt starts."
    )
    last_error: str | None = Field(
        default=None, description="What the last failed attempt said (a retried failure); null if none."
    )
    credits_charged: int = Field(default=0, description="Credits captured for it (its price once succeeded).")
    credits_refunded: int = Field(
        default=0, description="Credits refunded for it (its price once failed or cancelled)."
    )
    ledger_transfer_id: str | None = Field(
        default=None,
        description=(
            "Once finished: its receipt, the id of its capture or refund in the ledger "
            "(`ledger_transfer_id` of the batch's billing entries and of its task webhook); null before."
        ),
    )

    @classmethod
    def from_proto(cls, task: batch_pb2.Task) -> Self:
        """Builds the view from batch's Task message."""
        return cls(**cls.fields_of(task))

    @staticmethod
    def fields_of(task: batch_pb2.Task) -> dict[str, Any]:
        """The view's fields from batch's Task message, unvalidated (see `BatchView.fields_of`)."""
        return {
            "task_id": task.task_id,
            "batch_index": task.batch_index,
            "status": task.status,
            "model": task.model,
            "prompt": task.prompt,
            "video_url": none_if_empty(task.video_url),
            "error_message": none_if_empty(task.error_message),
            "failure_type": none_if_empty(task.failure_type),
            "attempts": task.attempts,
            "finished_at": optional_time(task.finished_at, task.HasField("finished_at")),
            "custom_id": none_if_empty(task.custom_id),
            "metadata": dict(task.metadata),
            "settings": settings_view(task.settings),
            "duration_seconds": task.duration_seconds or None,
            "started_at": optional_time(task.started_at, task.HasField("started_at")),
            "current_attempt": task.current_attempt or None,
            "next_attempt_at": optional_time(task.next_attempt_at, task.HasField("next_attempt_at")),
            "last_error": none_if_empty(task.last_error),
            "credits_charged": task.credits_charged,
            "credits_refunded": task.credits_refunded,
            "ledger_transfer_id": (
                task_transfer_id(task.task_id) if task.status in vocabulary.TERMINAL_TASK_STATUSES else None
            ),
        }


class TaskPage(CursorPage[TaskView]):
    """One page of a batch's tasks, in batch order."""
