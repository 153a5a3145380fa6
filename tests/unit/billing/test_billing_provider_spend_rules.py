"""Margins on real provider spend (ADR-144): reported spend joins the captured volumes, and a
batch's margin says when part of its cost is still the frozen estimate."""

from __future__ import annotations

from services.billing.domain.margins import (
    CapturedVolume,
    ProviderSpend,
    batch_margin,
    margin_report,
    with_reported_spend,
)


def test_reported_spend_adds_to_each_models_line_and_a_model_with_only_refunds_gets_one() -> None:
    captured = [CapturedVolume("veo-3.1", videos=2, credits=960, provider_cost_usd_micros=0)]
    spend = {"veo-3.1": ProviderSpend(9_600_000, 3), "veo-3.1-lite": ProviderSpend(400_000, 1)}

    report = margin_report(with_reported_spend(captured, spend), credit_value_usd_micros=10_000)

    lines = {line.model: line for line in report.models}
    assert (lines["veo-3.1"].revenue_usd_micros, lines["veo-3.1"].provider_cost_usd_micros) == (
        9_600_000,
        9_600_000,
    )
    # Every task of the model was refunded, one job was billed: spend without revenue.
    assert (lines["veo-3.1-lite"].videos, lines["veo-3.1-lite"].margin_usd_micros) == (0, -400_000)
    assert report.total.provider_cost_usd_micros == 10_000_000


def test_a_batch_margin_is_its_captures_against_reported_spend_plus_the_estimate_of_the_rest() -> None:
    margin = batch_margin(
        190, ProviderSpend(456_000, 20), ProviderSpend(0, 0), credit_value_usd_micros=10_000
    )
    assert (margin.revenue_usd_micros, margin.provider_cost_usd_micros) == (1_900_000, 456_000)
    assert (margin.margin_basis_points, margin.provider_jobs, margin.provider_cost_estimated) == (
        7_600,
        20,
        False,
    )
    estimated = batch_margin(10, ProviderSpend(), ProviderSpend(24_000, 1), credit_value_usd_micros=10_000)
    assert (estimated.provider_cost_usd_micros, estimated.provider_cost_estimated) == (24_000, True)
