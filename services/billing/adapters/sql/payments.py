"""SQL of payments and payment-provider deliveries (SQLAlchemy Core)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.billing.adapters.sql.base import TransactionQueries, record_values
from services.billing.adapters.tables import payment_events, payments
from services.billing.domain.ids import TenantId
from services.billing.domain.payments import EventOutcome, Payment, PaymentProvider


@dataclass(frozen=True)
class PaymentEventRecord:
    """One payment-provider delivery as recorded (event_id None when it did not verify)."""

    provider: PaymentProvider
    event_id: str | None
    event_type: str
    outcome: EventOutcome
    detail: str = ""
    tenant_id: TenantId | None = None
    payment_reference: str | None = None


class PaymentQueries(TransactionQueries):
    """Payments and the deliveries that credit them, inside one transaction."""

    async def insert_payment_event(self, event: PaymentEventRecord) -> bool:
        """Records one payment-provider delivery; False when its (verified) event id is already recorded.

        A concurrent transaction recording the same event id makes this one wait for its outcome.
        """
        inserted = await self._conn.execute(
            pg_insert(payment_events)
            .values(
                provider=event.provider.value,
                event_id=event.event_id,
                event_type=event.event_type,
                outcome=event.outcome.value,
                detail=event.detail,
                tenant_id=event.tenant_id,
                payment_reference=event.payment_reference,
            )
            .on_conflict_do_nothing()
            .returning(payment_events.c.id)
        )
        return inserted.first() is not None

    async def set_payment_event_outcome(self, event: PaymentEventRecord) -> None:
        """Stores what was finally done with a recorded (verified) event."""
        await self._conn.execute(
            update(payment_events)
            .where(
                payment_events.c.provider == event.provider.value, payment_events.c.event_id == event.event_id
            )
            .values(
                outcome=event.outcome.value,
                detail=event.detail,
                tenant_id=event.tenant_id,
                payment_reference=event.payment_reference,
            )
        )

    async def insert_payment(self, payment: Payment) -> int | None:
        """Records a payment; None when this payment (reference or payment intent) is already recorded."""
        inserted = await self._conn.execute(
            pg_insert(payments)
            .values(record_values(payments, payment, provider=payment.provider.value))
            .on_conflict_do_nothing()
            .returning(payments.c.id)
        )
        payment_id = inserted.scalar_one_or_none()
        return int(payment_id) if payment_id is not None else None

    async def link_payment_transfer(self, payment_id: int, transfer_id: int) -> None:
        await self._conn.execute(
            update(payments).where(payments.c.id == payment_id).values(transfer_id=transfer_id)
        )
