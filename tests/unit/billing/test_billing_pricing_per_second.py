"""Per-second pricing: an item of a model priced by duration costs credits_per_second x its length."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from libs.errors import InvalidArgument
from libs.price_list import ModelPricing
from services.billing.domain.errors import ModelNotReserved
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.pricing import ModelCapabilities, ModelPrice, QuoteLine, quote
from services.billing.domain.settlement import BatchHold

PRICES = {
    "sora-2": ModelPrice("sora-2", "simulated", credits_per_video=10),
    "veo-3-fast": ModelPrice(
        "veo-3-fast",
        "simulated",
        credits_per_video=12,
        credits_per_second=2,
        min_seconds=4,
        max_seconds=8,
        default_seconds=6,
    ),
}


def test_items_of_one_per_second_model_are_priced_by_their_own_duration() -> None:
    priced = quote(
        [QuoteLine("veo-3-fast", 2, duration_seconds=4), QuoteLine("veo-3-fast", 1, duration_seconds=8)],
        PRICES,
    )

    assert [line.unit_price for line in priced.lines] == [8, 16]
    assert priced.total == 2 * 8 + 16
    assert set(priced.per_model()) == {("veo-3-fast", 4, 8), ("veo-3-fast", 8, 16)}


def test_a_per_second_item_without_duration_is_priced_at_the_default_length() -> None:
    (line,) = quote([QuoteLine("veo-3-fast", 1)], PRICES).lines

    assert (line.unit_price, line.duration_seconds) == (12, 6)


@pytest.mark.parametrize("seconds", [3, 9])
def test_a_duration_outside_the_model_limits_is_refused(seconds: int) -> None:
    with pytest.raises(InvalidArgument) as refused:
        quote([QuoteLine("veo-3-fast", 1, duration_seconds=seconds)], PRICES)
    assert refused.value.details["field"] == "duration_seconds"


def test_a_duration_for_a_model_priced_per_video_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        quote([QuoteLine("sora-2", 1, duration_seconds=5)], PRICES)


def test_the_price_list_setting_derives_the_default_length_price_of_a_per_second_model() -> None:
    row = ModelPricing(credits_per_second=3, min_seconds=2, max_seconds=10, default_seconds=5)

    assert row.credits_per_video == 15
    with pytest.raises(ValueError, match="default_seconds"):
        ModelPricing(credits_per_second=3, min_seconds=6, max_seconds=10, default_seconds=5)
    with pytest.raises(ValueError, match="credits_per_video"):
        ModelPricing()


def test_a_hold_prices_each_task_at_the_frozen_line_of_its_own_price() -> None:
    hold = BatchHold(
        batch_id=BatchId(uuid.uuid4()),
        tenant_id=TenantId(uuid.uuid4()),
        hold_account_id=1,
        item_count=3,
        frozen=32,
        available_before=100,
        available_after=68,
        unit_prices={},
        line_prices=frozenset({("veo-3-fast", 8), ("veo-3-fast", 16)}),
    )

    assert hold.unit_price("veo-3-fast", 16) == 16
    assert hold.unit_price("veo-3-fast", 8) == 8
    # A price the batch never froze for that model moves nothing.
    with pytest.raises(ModelNotReserved):
        hold.unit_price("veo-3-fast", 12)


def test_priced_options_add_their_extra_credits_per_video_or_per_second() -> None:
    capabilities = ModelCapabilities(resolutions={"720p": 0, "1080p": 1}, audio_credits=1)
    per_second = replace(PRICES["veo-3-fast"], capabilities=capabilities)
    per_video = ModelPrice(
        model="veo-3",
        provider="simulated",
        credits_per_video=20,
        capabilities=ModelCapabilities(resolutions={"720p": 0, "1080p": 5}),
    )
    prices = {"veo-3-fast": per_second, "veo-3": per_video}

    priced = quote(
        [
            QuoteLine(
                "veo-3-fast", 1, duration_seconds=6, options=(("audio", "on"), ("resolution", "1080p"))
            ),
            QuoteLine(
                "veo-3-fast", 1, duration_seconds=6, options=(("audio", "off"), ("resolution", "720p"))
            ),
            QuoteLine("veo-3", 2, options=(("resolution", "1080p"),)),
        ],
        prices,
    )

    assert [line.unit_price for line in priced.lines] == [(2 + 1 + 1) * 6, 2 * 6, 25]
    assert priced.per_model()[("veo-3", 0, 25)].count == 2


def test_an_option_a_model_does_not_price_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        quote([QuoteLine("veo-3-fast", 1, options=(("resolution", "8k"),))], PRICES)
    with pytest.raises(InvalidArgument):
        quote([QuoteLine("veo-3-fast", 1, options=(("audio", "on"),))], PRICES)
