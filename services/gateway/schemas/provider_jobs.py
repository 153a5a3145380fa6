"""A batch's provider jobs as the operator sees them (ADR-144): per task and attempt, the
provider's job id, its status and what the provider bills us for it."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, Field
from reelbatch.proto.batch.v1 import batch_pb2

from services.gateway.schemas.proto_views import MessageView


class ProviderJobView(MessageView[batch_pb2.ProviderJob]):
    """One submission of a task's attempt to a provider."""

    task_id: str = Field(description="The task.")
    batch_index: int = Field(description="The task's position in the batch, from 0.")
    attempt: int = Field(description="The attempt (from 1).")
    provider: str = Field(description="The provider (`veo`, `replicate`, `fal`, `openai`).")
    status: str = Field(description="The job's status in our journal.")
    provider_job_id: str = Field(description="The provider's job id (empty while unknown).")
    billed_usd_micros: int = Field(description="What the provider bills us for it (0: not billed).")
    submitted_at: AwareDatetime | None = Field(description="When its intent was written.")
    finished_at: AwareDatetime | None = Field(description="When it ended.")
    failure_type: str = Field(description="Its failure type when it failed.")
    error_message: str = Field(description="What the provider said when it failed.")


class ProviderJobPage(BaseModel):
    """A page of a batch's provider jobs, in task order."""

    items: list[ProviderJobView]
    next_cursor: str | None = Field(description="Cursor of the next page; null on the last.")

    @property
    def billed_usd_micros(self) -> int:
        """What the page's jobs are billed, together."""
        return sum(job.billed_usd_micros for job in self.items)
