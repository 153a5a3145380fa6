"""Pricing: turning requested lines (model x count) into a quote from the price list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from libs.errors import InvalidArgument
from services.billing.domain.errors import InsufficientCredits, StaleQuote, UnknownModel


@dataclass(frozen=True)
class ModelPrice:
    """What one video of `model` costs the customer, in credits."""

    model: str
    provider: str
    credits_per_video: int


@dataclass(frozen=True)
class QuoteLine:
    """`count` videos of `model`; `unit_price` 0 means "not quoted yet"."""

    model: str
    count: int
    unit_price: int = 0

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

    def per_model(self) -> dict[str, QuoteLine]:
        """The lines merged by model (one reserved line per model and batch)."""
        merged: dict[str, QuoteLine] = {}
        for line in self.lines:
            seen = merged.get(line.model)
            count = line.count + (seen.count if seen else 0)
            merged[line.model] = QuoteLine(model=line.model, count=count, unit_price=line.unit_price)
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
        priced.append(QuoteLine(model=line.model, count=line.count, unit_price=price.credits_per_video))
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
