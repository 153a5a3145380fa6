"""Gross margin of delivered videos: revenue (captured credits at their money value) against what
the providers bill us (ADR-144): the spend each task outcome reported (every billed provider job,
failed and doubled ones included, refunded tasks too), or, for a capture that reported none, the
provider cost frozen with its batch's price."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class CapturedVolume:
    """Captured videos of one model: credits earned and what the provider charged (frozen prices)."""

    model: str
    videos: int
    credits: int
    provider_cost_usd_micros: int


@dataclass(frozen=True)
class ProviderSpend:
    """What the providers bill us for some tasks, and for how many jobs."""

    cost_usd_micros: int = 0
    jobs: int = 0


def with_reported_spend(
    captured: Sequence[CapturedVolume], reported: Mapping[str, ProviderSpend]
) -> list[CapturedVolume]:
    """`captured` (whose cost is the frozen estimate of captures that reported no spend) plus each
    model's reported spend; a model with spend and no capture (every task refunded) gets a line
    of its own: spend without revenue."""
    by_model = {volume.model: volume for volume in captured}
    for model, spend in reported.items():
        volume = by_model.get(model, CapturedVolume(model, 0, 0, 0))
        by_model[model] = replace(
            volume, provider_cost_usd_micros=volume.provider_cost_usd_micros + spend.cost_usd_micros
        )
    return list(by_model.values())


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


@dataclass(frozen=True)
class BatchMargin(MarginEstimate):
    """A batch's real margin: its captures against the spend its task outcomes reported."""

    provider_jobs: int = 0
    # Part of the cost is the frozen estimate (captures that reported no spend).
    provider_cost_estimated: bool = False


def batch_margin(
    captured_credits: int,
    reported: ProviderSpend,
    estimated: ProviderSpend,
    credit_value_usd_micros: int,
) -> BatchMargin:
    """The margin of a batch that captured `captured_credits`, at the reported spend plus the
    frozen estimate of its captures that reported none."""
    return BatchMargin(
        revenue_credits=captured_credits,
        revenue_usd_micros=captured_credits * credit_value_usd_micros,
        provider_cost_usd_micros=reported.cost_usd_micros + estimated.cost_usd_micros,
        provider_jobs=reported.jobs + estimated.jobs,
        provider_cost_estimated=estimated.jobs > 0,
    )


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
