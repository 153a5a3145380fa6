"""What the customer console shows of a batch: the customer's own figures, never vendor data
(no margin, no provider cost, no other tenant)."""

from __future__ import annotations

from typing import Self

from pydantic import Field
from reelbatch.proto.batch.v1 import batch_pb2

from services.gateway.schemas.admin_batches import FailureGroupView, TimingView, failure_groups
from services.gateway.schemas.batches import BatchView


class ConsoleBatchDetail(BatchView):
    """A batch as its tenant sees it: counts, frozen / spent / refunded / net, timing and whose
    fault each kind of failure was."""

    net_spent: int = Field(description="What the batch cost: frozen minus refunded.")
    timing: TimingView = Field(description="When the batch moved.")
    failures: list[FailureGroupView] = Field(description="Failed and cancelled tasks by failure type.")

    @classmethod
    def assemble(cls, batch: batch_pb2.Batch, breakdown: batch_pb2.BatchBreakdown) -> Self:
        """Combines the batch and its breakdown."""
        return cls(
            **BatchView.from_proto(batch).model_dump(),
            net_spent=batch.frozen_credits - batch.refunded_credits,
            timing=TimingView.from_proto(breakdown),
            failures=failure_groups(breakdown),
        )
