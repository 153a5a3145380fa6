"""Batches as operators see them: with tenant and idempotency key, and the overview of one batch
(margin, timing, and whose fault each kind of failure was)."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any, Self

from pydantic import AwareDatetime, BaseModel, Field
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

from libs import vocabulary
from libs.rpc.timestamps import optional_time
from libs.vocabulary import fault_of, listed, one_of
from services.gateway.schemas.batches import BatchView
from services.gateway.schemas.fields import none_if_empty
from services.gateway.schemas.pages import CursorPage
from services.gateway.schemas.proto_views import ProtoView


class AdminBatchView(BatchView):
    """A batch as operators see it: with its tenant and idempotency key."""

    tenant_id: str = Field(description="Owner of the batch.")
    request_id: str | None = Field(description="The client's X-Request-ID; null if none.")

    @staticmethod
    def fields_of(batch: batch_pb2.Batch) -> dict[str, Any]:
        """The admin view's fields from batch's Batch message, unvalidated: `json_bytes` of them is
        the view's JSON (the admin API's list answers them without building the model: a page of
        50 batches validated twice cost more than the page's query, ADR-164)."""
        return {
            **BatchView.fields_of(batch),
            "tenant_id": batch.tenant_id,
            "request_id": none_if_empty(batch.request_id),
        }


class AdminBatchPage(CursorPage[AdminBatchView]):
    """One page of batches across tenants."""


if TYPE_CHECKING:
    FailureType = str
    SettlementStatus = str
    Fault = str
else:
    # The REST filters accept the shared vocabulary's values (libs/vocabulary.py).
    FailureType = one_of(vocabulary.FailureType)
    SettlementStatus = one_of(vocabulary.SettlementStatus)
    Fault = one_of(vocabulary.Fault)


class FailureGroupView(BaseModel):
    """Failed or cancelled tasks of one failure type."""

    failure_type: str = Field(description=f"{listed(vocabulary.FailureType)}.")
    fault: Fault = Field(description=f"Whose fault: {listed(vocabulary.Fault)}.")
    count: int = Field(description="Tasks that ended this way.")
    refunded_credits: int = Field(description="Credits refunded for them.")


class MarginView(ProtoView):
    """What the delivered videos earned against what the providers billed us (USD micros)."""

    revenue_credits: int = Field(description="Credits captured for delivered videos.")
    revenue_usd_micros: int = Field(description="Revenue in US dollar micros.")
    provider_cost_usd_micros: int = Field(
        description="What the providers bill us for the batch's tasks: every billed provider job, "
        "failed and doubled ones and those of refunded tasks included."
    )
    margin_usd_micros: int = Field(description="Revenue minus provider cost.")
    margin_percent: float = Field(description="Margin over revenue, in percent (two decimals).")
    provider_jobs: int = Field(default=0, description="Provider jobs the batch's tasks were billed for.")
    provider_cost_estimated: bool = Field(
        default=False,
        description="Part of the cost is the estimate frozen with the batch "
        "(for outcomes that reported no spend).",
    )

    @classmethod
    def from_proto(cls, estimate: billing_pb2.MarginEstimate) -> Self:
        """Builds the view from billing's estimate."""
        return cls.by_name(estimate, margin_percent=estimate.margin_basis_points / 100)


class TimingView(BaseModel):
    """When the batch moved."""

    created_at: AwareDatetime = Field(description="Accepted.")
    queued_at: AwareDatetime | None = Field(description="Credits frozen and tasks queued.")
    first_started_at: AwareDatetime | None = Field(description="First task picked up by a worker.")
    finished_at: AwareDatetime | None = Field(description="Last task finished.")
    settled_at: AwareDatetime | None = Field(description="Billing settled the batch.")
    duration_seconds: float | None = Field(
        description="From acceptance to the last task; null while running."
    )
    total_attempts: int = Field(description="Provider attempts over all tasks (retries included).")

    @classmethod
    def from_proto(cls, breakdown: batch_pb2.BatchBreakdown) -> Self:
        """Builds the view from batch's breakdown."""
        created_at = breakdown.created_at.ToDatetime(tzinfo=UTC)
        finished_at = optional_time(breakdown.finished_at, breakdown.HasField("finished_at"))
        return cls(
            created_at=created_at,
            queued_at=optional_time(breakdown.queued_at, breakdown.HasField("queued_at")),
            first_started_at=optional_time(
                breakdown.first_started_at, breakdown.HasField("first_started_at")
            ),
            finished_at=finished_at,
            settled_at=optional_time(breakdown.settled_at, breakdown.HasField("settled_at")),
            duration_seconds=(finished_at - created_at).total_seconds() if finished_at else None,
            total_attempts=breakdown.total_attempts,
        )


class AdminBatchDetail(AdminBatchView):
    """The admin overview of a batch: progress, money, margin, timing and whose fault failures were."""

    net_spent: int = Field(description="What the customer pays for the batch: frozen minus refunded.")
    margin: MarginView = Field(description="Earnings of the delivered videos against provider cost.")
    timing: TimingView = Field(description="When the batch moved.")
    failures: list[FailureGroupView] = Field(description="Failed and cancelled tasks by failure type.")

    @classmethod
    def assemble(
        cls, batch: batch_pb2.Batch, breakdown: batch_pb2.BatchBreakdown, estimate: billing_pb2.MarginEstimate
    ) -> Self:
        """Combines the batch, its breakdown and billing's margin estimate."""
        return cls(
            **AdminBatchView.from_proto(batch).model_dump(),
            net_spent=batch.frozen_credits - batch.refunded_credits,
            margin=MarginView.from_proto(estimate),
            timing=TimingView.from_proto(breakdown),
            failures=failure_groups(breakdown),
        )


def failure_groups(breakdown: batch_pb2.BatchBreakdown) -> list[FailureGroupView]:
    """Failed and cancelled tasks by failure type, most frequent first, each with whose fault it was."""
    failures: dict[str, tuple[int, int]] = {}
    for group in breakdown.groups:
        if group.failure_type:
            count, credits = failures.get(group.failure_type, (0, 0))
            failures[group.failure_type] = (count + group.count, credits + group.credits)
    return [
        FailureGroupView(
            failure_type=failure_type,
            fault=fault_of(failure_type),
            count=count,
            refunded_credits=credits,
        )
        for failure_type, (count, credits) in sorted(failures.items(), key=lambda item: -item[1][0])
    ]
