"""Receipts: a payment received, as the customer's console lists it and prints it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.billing.domain.ids import TenantId
from services.billing.domain.payments import PaymentProvider


@dataclass(frozen=True)
class PaymentReceipt:
    """One recorded payment: who paid what, for how many credits, when."""

    payment_id: int
    tenant_id: TenantId
    provider: PaymentProvider
    reference: str
    pack_id: str | None
    credits: int
    amount_usd_cents: int
    payment_intent: str | None
    created_at: datetime
