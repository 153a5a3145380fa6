"""Gross margin of delivered videos: revenue (captured credits at their money value) against the
provider cost frozen with each batch's price."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CapturedVolume:
    """Captured videos of one model: credits earned and what the provider charged (frozen prices)."""

    model: str
    videos: int
    credits: int
    provider_cost_usd_micros: int


@dataclass(frozen=True)
class MarginEstimate:
    """Revenue, provider cost and margin of delivered videos: the one place the margin rule lives
    (today's estimate and the monthly report per model both use it)."""

    revenue_credits: int
    revenue_usd_micros: int
    provider_cost_usd_micros: int

    @property
    def margin_usd_micros(self) -> int:
        return self.revenue_usd_micros - self.provider_cost_usd_micros

    @property
    def margin_basis_points(self) -> int:
        """Margin over revenue in basis points (7600 = 76%), rounded down; 0 without revenue."""
        if self.revenue_usd_micros == 0:
            return 0
        return self.margin_usd_micros * 10_000 // self.revenue_usd_micros


@dataclass(frozen=True, kw_only=True)
class ModelMargin(MarginEstimate):
    """Revenue, cost and margin of one model's delivered videos ("" for the total)."""

    model: str
    videos: int


@dataclass(frozen=True)
class MarginReport:
    """Per-model margins, by model name, and their total."""

    models: tuple[ModelMargin, ...]
    total: ModelMargin


def margin_report(captured: Sequence[CapturedVolume], credit_value_usd_micros: int) -> MarginReport:
    """The margin of `captured` volumes when one credit is worth `credit_value_usd_micros`."""
    lines = tuple(
        ModelMargin(
            model=volume.model,
            videos=volume.videos,
            revenue_credits=volume.credits,
            revenue_usd_micros=volume.credits * credit_value_usd_micros,
            provider_cost_usd_micros=volume.provider_cost_usd_micros,
        )
        for volume in sorted(captured, key=lambda volume: volume.model)
    )
    total = ModelMargin(
        model="",
        videos=sum(line.videos for line in lines),
        revenue_credits=sum(line.revenue_credits for line in lines),
        revenue_usd_micros=sum(line.revenue_usd_micros for line in lines),
        provider_cost_usd_micros=sum(line.provider_cost_usd_micros for line in lines),
    )
    return MarginReport(models=lines, total=total)
