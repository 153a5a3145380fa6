"""Model health for operators: degraded models (their circuit breaker is open, ADR-113) and what
each provider route of a model did (failover, ADR-149)."""

from __future__ import annotations

from pydantic import AwareDatetime, Field
from reelbatch.proto.batch.v1 import batch_pb2

from services.gateway.schemas.proto_views import MessageView, ProtoView


class DegradedModelView(MessageView[batch_pb2.DegradedModel]):
    """A model whose tasks wait because its provider failed again and again."""

    model: str = Field(description="The model (price list name).")
    state: str = Field(description="`open` (its tasks wait) or `half_open` (one probe runs).")
    failures: int = Field(description="Consecutive transient failures counted.")
    opened_at: AwareDatetime | None = Field(description="When its breaker last opened.")
    outage_seconds: float = Field(description="How long the outage has lasted.")


class ProviderRouteView(MessageView[batch_pb2.ProviderRouteUsage]):
    """One provider route of a model: its share of the model's videos, its jobs and their cost."""

    model: str = Field(description="The model (price list name).")
    provider: str = Field(description="The route's provider (veo, replicate, fal, openai).")
    tasks: int = Field(description="Tasks with at least one job sent to (or refused by) this route.")
    jobs: int = Field(description="Jobs sent to this route, every attempt's submission.")
    succeeded_jobs: int = Field(description="Jobs that gave a video.")
    failed_jobs: int = Field(description="Jobs that failed, were refused at create, lost or are in doubt.")
    video_share: float = Field(description="Share of the model's videos made on this route, 0..1.")
    cost_usd_micros: int = Field(description="What the route's recorded jobs cost us, US dollar micros.")


class ProviderRoutePage(ProtoView):
    """Every provider route that received jobs, by model then provider."""

    items: list[ProviderRouteView] = Field(description="The routes.")
