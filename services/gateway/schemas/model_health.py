"""Degraded models: those whose provider is down (their circuit breaker is open, ADR-113)."""

from __future__ import annotations

from typing import Self

from pydantic import AwareDatetime, Field
from reelbatch.proto.batch.v1 import batch_pb2

from services.gateway.schemas.fields import optional_time
from services.gateway.schemas.proto_views import ProtoView


class DegradedModelView(ProtoView):
    """A model whose tasks wait because its provider failed again and again."""

    model: str = Field(description="The model (price list name).")
    state: str = Field(description="`open` (its tasks wait) or `half_open` (one probe runs).")
    failures: int = Field(description="Consecutive transient failures counted.")
    opened_at: AwareDatetime | None = Field(description="When its breaker last opened.")
    outage_seconds: float = Field(description="How long the outage has lasted.")

    @classmethod
    def from_proto(cls, model: batch_pb2.DegradedModel) -> Self:
        """The view of one degraded model."""
        return cls(
            model=model.model,
            state=model.state,
            failures=model.failures,
            opened_at=optional_time(model.opened_at, model.HasField("opened_at")),
            outage_seconds=model.outage_seconds,
        )
