"""Prepaid packs: credits sold once for a fixed price; bigger packs give more credits per dollar."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from libs.errors import InvalidArgument

USD_MICROS_PER_CENT = 10_000


class UnknownPack(InvalidArgument):
    """A pack id that is not in the catalog."""

    def __init__(self, pack_id: str) -> None:
        super().__init__(f"unknown pack {pack_id!r}", field="pack_id", pack_id=pack_id)


@dataclass(frozen=True)
class CreditPack:
    """`credits` for `price_usd_cents`, credited once per payment; credits never expire."""

    pack_id: str
    name: str
    price_usd_cents: int
    credits: int

    def list_price_credits(self, credit_value_usd_micros: int) -> int:
        """What the price buys at the per-credit list price (pay as you go), rounded down."""
        return self.price_usd_cents * USD_MICROS_PER_CENT // credit_value_usd_micros

    def bonus_basis_points(self, credit_value_usd_micros: int) -> int:
        """How many more credits than list price the pack gives, in basis points (1200 = 12%), down."""
        price_micros = self.price_usd_cents * USD_MICROS_PER_CENT
        worth_micros = self.credits * credit_value_usd_micros
        return (worth_micros - price_micros) * 10_000 // price_micros


def find_pack(catalog: Mapping[str, CreditPack], pack_id: str) -> CreditPack:
    """The pack `pack_id` of the catalog; UnknownPack otherwise."""
    pack = catalog.get(pack_id)
    if pack is None:
        raise UnknownPack(pack_id)
    return pack


def packs_by_price(catalog: Mapping[str, CreditPack]) -> list[CreditPack]:
    """The catalog cheapest first (how customers compare packs)."""
    return sorted(catalog.values(), key=lambda pack: (pack.price_usd_cents, pack.pack_id))
