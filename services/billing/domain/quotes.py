"""Stored quotes (ADR-123): a batch priced without freezing, honoured exactly once.

A quote is honoured at its own prices, whatever the price list says when the batch is frozen
(unlike a reserving batch's lines, re-priced under ADR-028), by the first reservation that cites
it within its validity with the same lines and the same create-body fingerprint; any other is
refused with a reason the customer can act on. Pure rules, no I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from libs.errors import FailedPrecondition, NotFound
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.pricing import Quote, QuoteLine

# How long a quote may be cited: long enough to review a price, short enough that a price list
# change is not dodged for days.
QUOTE_VALIDITY = timedelta(minutes=15)


class QuoteNotFound(NotFound):
    """No such quote for this tenant (another tenant's is not found either)."""

    reason = "quote_not_found"

    def __init__(self, quote_id: object) -> None:
        super().__init__("quote not found", quote_id=quote_id)


class QuoteExpired(FailedPrecondition):
    """The quote's validity ended: quote again (nothing was frozen)."""

    reason = "quote_expired"

    def __init__(self, quote_id: object, expires_at: datetime) -> None:
        super().__init__(
            f"quote {quote_id} expired at {expires_at.isoformat()}; request a new quote",
            quote_id=quote_id,
            expires_at=expires_at.isoformat(),
        )


class QuoteUsed(FailedPrecondition):
    """The quote was already honoured by another batch (a quote is single-use)."""

    reason = "quote_used"

    def __init__(self, quote_id: object, batch_id: object) -> None:
        super().__init__(
            f"quote {quote_id} was already used by batch {batch_id}", quote_id=quote_id, batch_id=batch_id
        )


class QuoteMismatch(FailedPrecondition):
    """The create's body is not the one quoted (another fingerprint or other lines)."""

    reason = "quote_mismatch"

    def __init__(self, quote_id: object) -> None:
        super().__init__(
            f"this request's body differs from the one quote {quote_id} priced; quote this body",
            quote_id=quote_id,
        )


@dataclass(frozen=True)
class StoredQuote:
    """A quote as stored: its priced lines, the body's fingerprint, its validity and its use."""

    quote_id: uuid.UUID
    tenant_id: TenantId
    lines: tuple[QuoteLine, ...]
    fingerprint: str
    created_at: datetime
    expires_at: datetime
    batch_id: BatchId | None = None

    @property
    def total(self) -> int:
        return sum(line.total for line in self.lines)


def new_quote(tenant_id: TenantId, priced: Quote, fingerprint: str, now: datetime) -> StoredQuote:
    """A fresh quote of `priced`, valid for QUOTE_VALIDITY from `now`."""
    return StoredQuote(
        quote_id=uuid.uuid4(),
        tenant_id=tenant_id,
        lines=priced.lines,
        fingerprint=fingerprint,
        created_at=now,
        expires_at=now + QUOTE_VALIDITY,
    )


def _line_key(line: QuoteLine) -> tuple[str, int, int, int, tuple[tuple[str, str], ...]]:
    return (line.model, line.count, line.unit_price, line.duration_seconds, tuple(sorted(line.options)))


def redeem(
    stored: StoredQuote | None,
    tenant_id: TenantId,
    batch_id: BatchId,
    requested: Sequence[QuoteLine],
    fingerprint: str,
    now: datetime,
) -> Quote:
    """The price a reservation citing `stored` freezes; refuses an unknown, used, expired or
    mismatched quote. The caller records `batch_id` on the quote in the same transaction."""
    if stored is None or stored.tenant_id != tenant_id:
        raise QuoteNotFound(stored.quote_id if stored else "")
    if stored.batch_id is not None:
        raise QuoteUsed(stored.quote_id, stored.batch_id)
    if now >= stored.expires_at:
        raise QuoteExpired(stored.quote_id, stored.expires_at)
    if fingerprint != stored.fingerprint or sorted(map(_line_key, requested)) != sorted(
        map(_line_key, stored.lines)
    ):
        raise QuoteMismatch(stored.quote_id)
    return Quote(lines=stored.lines)
