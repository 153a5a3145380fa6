"""Pricing: turning requested lines (model x count, and duration where a model prices by it) into a quote."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from libs.errors import InvalidArgument
from libs.model_capabilities import ModelCapabilities as SharedCapabilities
from services.billing.domain.errors import InsufficientCredits, StaleQuote, UnknownModel
from services.billing.domain.margins import MarginEstimate

# The default money value of one credit, in US dollar micros ($0.01; the setting
# REELBATCH_CREDIT_VALUE_USD_MICROS overrides it): the seed's 76% margin on sora-2 is
# (10 credits x $0.01 - $0.024 provider cost) / $0.10.
DEFAULT_CREDIT_VALUE_USD_MICROS = 10_000


@dataclass(frozen=True)
class ModelCapabilities(SharedCapabilities):
    """The price list's declaration of a model's settings (libs.model_capabilities), with what its
    priced choices add; the batch service validates items against the same declaration."""

    def surcharge(self, model: str, options: Sequence[tuple[str, str]]) -> int:
        """Extra credits of the priced options (per video, or per second); InvalidArgument for
        an option or value the model does not price."""
        extra = 0
        for name, value in options:
            if name == "resolution" and value in self.resolutions:
                extra += self.resolutions[value]
            elif name == "audio" and self.audio_credits is not None and value in ("on", "off"):
                extra += self.audio_credits if value == "on" else 0
            else:
                raise InvalidArgument(f"{model} does not price {name}={value}", field="options", model=model)
        return extra


@dataclass(frozen=True)
class ModelPrice:
    """What one video of `model` costs the customer (credits) and us (provider, USD micros).

    A model with `credits_per_second` prices an item by its duration (`credits_per_video` is
    then the price of a video of `default_seconds`, used by margin estimates).
    """

    model: str
    provider: str
    credits_per_video: int
    provider_cost_usd_micros: int = 0
    credits_per_second: int | None = None
    min_seconds: int = 1
    max_seconds: int = 60
    default_seconds: int = 8
    capabilities: ModelCapabilities = field(default_factory=ModelCapabilities)

    @property
    def per_second(self) -> bool:
        return self.credits_per_second is not None

    def item_price(self, duration_seconds: int, options: Sequence[tuple[str, str]] = ()) -> tuple[int, int]:
        """(price, duration) of one item; duration 0 means "not given" (the default, per second).

        A duration outside [min_seconds, max_seconds], or any duration for a per-video model,
        is an InvalidArgument; so is an option the model does not price. Priced options add their
        extra credits once per video, or once per second for a model priced per second.
        """
        extra = self.capabilities.surcharge(self.model, options) if options else 0
        if self.credits_per_second is None:
            if duration_seconds:
                raise InvalidArgument(
                    "this model is priced per video and takes no duration_seconds",
                    field="duration_seconds",
                    model=self.model,
                )
            return self.credits_per_video + extra, 0
        seconds = duration_seconds or self.default_seconds
        if not self.min_seconds <= seconds <= self.max_seconds:
            raise InvalidArgument(
                f"duration_seconds must be between {self.min_seconds} and {self.max_seconds}",
                field="duration_seconds",
                model=self.model,
            )
        return (self.credits_per_second + extra) * seconds, seconds


@dataclass(frozen=True)
class QuoteLine:
    """`count` videos of `model` of `duration_seconds` (0: per video) with the priced `options`;
    `unit_price` 0: not quoted yet."""

    model: str
    count: int
    unit_price: int = 0
    duration_seconds: int = 0
    options: tuple[tuple[str, str], ...] = ()

    @property
    def total(self) -> int:
        return self.count * self.unit_price


@dataclass(frozen=True)
class Quote:
    """Priced lines in request order, and their total."""

    lines: tuple[QuoteLine, ...]

    @property
    def total(self) -> int:
        return sum(line.total for line in self.lines)

    @property
    def item_count(self) -> int:
        return sum(line.count for line in self.lines)

    def per_model(self) -> dict[tuple[str, int, int], QuoteLine]:
        """The lines merged by (model, duration, unit price): one reserved line for each (lines
        whose priced options differ but cost the same are one line: a capture is matched by price)."""
        merged: dict[tuple[str, int, int], QuoteLine] = {}
        for line in self.lines:
            key = (line.model, line.duration_seconds, line.unit_price)
            seen = merged.get(key)
            count = line.count + (seen.count if seen else 0)
            merged[key] = QuoteLine(
                model=line.model,
                count=count,
                unit_price=line.unit_price,
                duration_seconds=line.duration_seconds,
            )
        return merged


def quote(lines: Sequence[QuoteLine], price_list: Mapping[str, ModelPrice]) -> Quote:
    """Prices `lines` at today's prices. Unknown model or a non-positive count -> InvalidArgument."""
    if not lines:
        raise InvalidArgument("at least one line is required", field="lines")
    priced: list[QuoteLine] = []
    for line in lines:
        if line.count <= 0:
            raise InvalidArgument("count must be positive", field="count", model=line.model)
        price = price_list.get(line.model)
        if price is None:
            raise UnknownModel(line.model)
        unit_price, duration = price.item_price(line.duration_seconds, line.options)
        priced.append(
            QuoteLine(
                model=line.model,
                count=line.count,
                unit_price=unit_price,
                duration_seconds=duration,
                options=line.options,
            )
        )
    return Quote(lines=tuple(priced))


def ensure_quote_is_current(requested: Sequence[QuoteLine], current: Quote) -> None:
    """Refuses a line whose quoted (non-zero) unit price differs from today's price."""
    for asked, priced in zip(requested, current.lines, strict=True):
        if asked.unit_price and asked.unit_price != priced.unit_price:
            raise StaleQuote(asked.model, asked.unit_price, priced.unit_price)


def ensure_affordable(required_credits: int, available_credits: int) -> None:
    """Refuses a freeze the available balance does not cover."""
    if required_credits > available_credits:
        raise InsufficientCredits(required_credits, available_credits)


def estimate_margin(
    delivered: Mapping[str, int],
    price_list: Mapping[str, ModelPrice],
    credit_value_usd_micros: int = DEFAULT_CREDIT_VALUE_USD_MICROS,
) -> MarginEstimate:
    """What `{model: videos delivered}` earned and cost at today's prices (only delivered videos cost us)."""
    revenue = 0
    cost = 0
    for model, videos in delivered.items():
        if videos < 0:
            raise InvalidArgument("videos must not be negative", field="videos", model=model)
        price = price_list.get(model)
        if price is None:
            raise UnknownModel(model)
        revenue += videos * price.credits_per_video
        cost += videos * price.provider_cost_usd_micros
    return MarginEstimate(
        revenue_credits=revenue,
        revenue_usd_micros=revenue * credit_value_usd_micros,
        provider_cost_usd_micros=cost,
    )
