"""The providers of 2026 (issue 26 item 5, ADR-146): no default points at a dead API, the price
list says which models are real, and the real Veo models carry Google's per-second prices."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from libs.config import Settings
from libs.price_list import DEFAULT_PRICING, ModelPricing, ModelSettings

# What the Gemini API charges a second of Veo 3.1 video (ADR-145), at its default and dearer resolutions.
GEMINI_VEO_PER_SECOND = {
    "veo-3.1": (400_000, {"4k": 600_000}),
    "veo-3.1-fast": (150_000, {"4k": 350_000}),
    "veo-3.1-lite": (50_000, {"1080p": 80_000}),
}


def test_no_default_model_is_made_by_the_shut_down_openai_videos_api() -> None:
    assert {price.provider for price in DEFAULT_PRICING.values()} == {"simulated", "veo"}
    assert Settings().openai_base_url is None
    # The seed demo's model stays, simulated.
    assert DEFAULT_PRICING["sora-2"].simulated and DEFAULT_PRICING["sora-2"].credits_per_video == 10


@pytest.mark.parametrize("url", ["https://api.openai.com", "https://API.openai.com/v1"])
def test_the_retired_openai_videos_api_cannot_be_configured(url: str) -> None:
    with pytest.raises(ValidationError, match="2026-09-24"):
        Settings(openai_base_url=url)
    assert (
        Settings(openai_base_url="https://videos.example.net").openai_base_url == "https://videos.example.net"
    )


def test_the_real_veo_models_are_priced_per_second_above_the_gemini_apis_price() -> None:
    for model, (per_second, dearer) in GEMINI_VEO_PER_SECOND.items():
        price = DEFAULT_PRICING[model]
        assert (price.provider, price.simulated) == ("veo", False)
        assert (price.min_seconds, price.max_seconds, price.default_seconds) == (4, 8, 8)
        assert price.provider_cost_usd_micros == 8 * per_second
        assert price.provider_cost_by_resolution_usd_micros == {
            resolution: 8 * cost for resolution, cost in dearer.items()
        }
        assert price.max_in_flight == 10 and not price.provider_bills_failures
        credits_per_second = price.credits_per_second
        assert credits_per_second is not None
        # A credit is $0.01: every resolution keeps a margin over what Google charges.
        for resolution, extra in price.settings.resolutions.items():
            cost = dearer.get(resolution, per_second)
            assert (credits_per_second + extra) * 10_000 > cost, (model, resolution)


def test_a_resolution_cost_must_name_a_resolution_the_model_offers() -> None:
    with pytest.raises(ValidationError, match="resolutions the model does not offer"):
        ModelPricing(
            credits_per_video=10,
            provider_cost_by_resolution_usd_micros={"8k": 1},
            settings=ModelSettings(resolutions={"720p": 0}),
        )
