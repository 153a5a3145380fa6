"""SQL of payments that go back (ADR-134): the payment a refund or dispute names (locked), the
reversals recorded per source, and the tenant's debt as read by pages (SQLAlchemy Core text).

A reversal locks its payment row first, then the tenant's accounts (`ledger.lock_wallet`): only
reversals lock payment rows, so this order cannot deadlock with the ledger's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from libs.field_mapping import to_record
from services.billing.adapters.sql.base import TransactionQueries
from services.billing.adapters.sql.ledger import ROW_LOCK
from services.billing.domain.ids import TenantId
from services.billing.domain.reversals import ReversalKind, ReversalSplit

_LOCK_PAYMENT = f"""
SELECT id, tenant_id, provider, reference, pack_id, credits, amount_usd_cents, refunded_usd_cents,
       reversed_credits
FROM billing.payments WHERE provider = :provider AND payment_intent = :payment_intent
{ROW_LOCK}"""
_SET_PAYMENT_REVERSED = """
UPDATE billing.payments SET refunded_usd_cents = :refunded, reversed_credits = :reversed WHERE id = :id"""
_INSERT_REVERSAL = """
INSERT INTO billing.payment_reversals
    (payment_id, tenant_id, kind, source_id, credits, from_available, to_debt)
VALUES (:payment_id, :tenant_id, :kind, :source_id, :credits, :from_available, :to_debt)
ON CONFLICT ON CONSTRAINT uq_payment_reversals_source DO NOTHING
RETURNING id"""
_FIND_REVERSAL = f"""
SELECT id, credits, status FROM billing.payment_reversals
WHERE payment_id = :payment_id AND kind = :kind AND source_id = :source_id
{ROW_LOCK}"""
_MARK_REINSTATED = """
UPDATE billing.payment_reversals
SET status = 'reinstated', reinstated_to_debt = :to_debt, reinstated_to_available = :to_available,
    reinstated_at = now()
WHERE id = :id AND status = 'reversed'"""
_DEBT = "SELECT -balance FROM billing.accounts WHERE kind = 'debt' AND tenant_id = :tenant_id"
_DEBT_AT = """
SELECT COALESCE(-sum(e.amount), 0) FROM billing.ledger_entries e
JOIN billing.accounts a ON a.id = e.account_id
WHERE a.kind = 'debt' AND a.tenant_id = :tenant_id AND e.created_at < :before"""
_TENANT_REVERSALS = """
SELECT r.kind, r.source_id, p.reference, r.credits, r.from_available, r.to_debt, r.status,
       r.reinstated_to_debt + r.reinstated_to_available AS reinstated, r.created_at
FROM billing.payment_reversals r JOIN billing.payments p ON p.id = r.payment_id
WHERE r.tenant_id = :tenant_id ORDER BY r.id DESC LIMIT :limit"""


@dataclass(frozen=True)
class LockedPayment:
    """A payment a reversal acts on, locked until the transaction ends."""

    payment_id: int
    tenant_id: TenantId
    provider: str
    reference: str
    credits: int
    amount_usd_cents: int
    refunded_usd_cents: int
    reversed_credits: int

    @property
    def remaining(self) -> int:
        """Credits of the payment not taken back yet."""
        return self.credits - self.reversed_credits


@dataclass(frozen=True)
class StoredReversal:
    """A recorded reversal (locked when found for a reinstatement)."""

    reversal_id: int
    credits: int
    status: str


@dataclass(frozen=True)
class ReversalLine:
    """One reversal as the console and the API list it."""

    kind: str
    source_id: str
    payment_reference: str
    credits: int
    from_available: int
    to_debt: int
    status: str
    reinstated: int
    created_at: datetime


class ReversalQueries(TransactionQueries):
    """Payments' reversals and debts, inside one transaction."""

    async def lock_payment(self, provider: str, payment_intent: str) -> LockedPayment | None:
        """The payment of a Stripe PaymentIntent, locked (None: no payment of ours)."""
        if not payment_intent:
            return None
        row = (
            await self._conn.execute(
                text(_LOCK_PAYMENT), {"provider": provider, "payment_intent": payment_intent}
            )
        ).first()
        return to_record(LockedPayment, row, payment_id=row.id) if row is not None else None

    async def set_payment_reversed(
        self, payment_id: int, refunded_usd_cents: int, reversed_credits: int
    ) -> None:
        await self._conn.execute(
            text(_SET_PAYMENT_REVERSED),
            {"id": payment_id, "refunded": refunded_usd_cents, "reversed": reversed_credits},
        )

    async def insert_reversal(
        self, payment: LockedPayment, kind: ReversalKind, source_id: str, split: ReversalSplit
    ) -> bool:
        """Records a reversal; False when this source was already reversed."""
        inserted = await self._conn.execute(
            text(_INSERT_REVERSAL),
            {
                "payment_id": payment.payment_id,
                "tenant_id": payment.tenant_id,
                "kind": kind.value,
                "source_id": source_id,
                "credits": split.credits,
                "from_available": split.from_available,
                "to_debt": split.to_debt,
            },
        )
        return inserted.first() is not None

    async def lock_reversal(
        self, payment_id: int, kind: ReversalKind, source_id: str
    ) -> StoredReversal | None:
        row = (
            await self._conn.execute(
                text(_FIND_REVERSAL), {"payment_id": payment_id, "kind": kind.value, "source_id": source_id}
            )
        ).first()
        return StoredReversal(row.id, row.credits, row.status) if row is not None else None

    async def mark_reinstated(self, reversal_id: int, to_debt: int, to_available: int) -> None:
        await self._conn.execute(
            text(_MARK_REINSTATED), {"id": reversal_id, "to_debt": to_debt, "to_available": to_available}
        )

    async def debt(self, tenant_id: TenantId) -> int:
        """What the tenant owes (0 when it never owed), without locking."""
        owed = (await self._conn.execute(text(_DEBT), {"tenant_id": tenant_id})).scalar_one_or_none()
        return int(owed) if owed is not None else 0

    async def debt_at(self, tenant_id: TenantId, before: datetime) -> int:
        """What the tenant owed just before `before` (a statement's month end)."""
        owed = await self._conn.execute(text(_DEBT_AT), {"tenant_id": tenant_id, "before": before})
        return int(owed.scalar_one())

    async def recent(self, tenant_id: TenantId, limit: int) -> list[ReversalLine]:
        """The tenant's latest reversals, newest first."""
        rows = await self._conn.execute(text(_TENANT_REVERSALS), {"tenant_id": tenant_id, "limit": limit})
        return [ReversalLine(**row._asdict()) for row in rows]
