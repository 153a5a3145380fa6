"""SQL of automatic top-up (ADR-135): a tenant's settings, and the purchases its crossings asked for
(the top-up loop's outbox: claimed with a lease, `FOR UPDATE SKIP LOCKED`, by any replica).

The reservation group writes purchases itself (`sql.reservations`); this module holds the rest.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text

from libs.field_mapping import to_record
from services.billing.adapters.sql.base import TransactionQueries
from services.billing.domain.auto_top_up import AUTO_TOP_UP_OFF, AutoTopUpSettings, PurchaseStatus
from services.billing.domain.ids import TenantId

_SETTINGS = """
SELECT enabled, threshold_credits, pack_id, max_per_month, stripe_customer_id, payment_method_id,
       payment_method_label, disabled_reason, disabled_at
FROM billing.auto_top_up_settings WHERE tenant_id = :tenant_id"""
_UPSERT_SETTINGS = """
INSERT INTO billing.auto_top_up_settings
    (tenant_id, enabled, threshold_credits, pack_id, max_per_month, stripe_customer_id, payment_method_id,
     payment_method_label, disabled_reason, disabled_at)
VALUES (:tenant_id, :enabled, :threshold_credits, :pack_id, :max_per_month, :stripe_customer_id,
        :payment_method_id, :payment_method_label, :disabled_reason, :disabled_at)
ON CONFLICT (tenant_id) DO UPDATE SET enabled = EXCLUDED.enabled,
    threshold_credits = EXCLUDED.threshold_credits, pack_id = EXCLUDED.pack_id,
    max_per_month = EXCLUDED.max_per_month, stripe_customer_id = EXCLUDED.stripe_customer_id,
    payment_method_id = EXCLUDED.payment_method_id, payment_method_label = EXCLUDED.payment_method_label,
    disabled_reason = EXCLUDED.disabled_reason, disabled_at = EXCLUDED.disabled_at, updated_at = now()"""
_DISABLE = """
UPDATE billing.auto_top_up_settings SET enabled = false, disabled_reason = :reason, disabled_at = now(),
    updated_at = now()
WHERE tenant_id = :tenant_id"""
_CLAIM = """
UPDATE billing.auto_top_ups AS u
SET lease_until = now() + make_interval(secs => :lease_seconds), attempts = u.attempts + 1, updated_at = now()
WHERE u.id IN (
    SELECT id FROM billing.auto_top_ups
    WHERE status = 'pending' AND (lease_until IS NULL OR lease_until < now())
    ORDER BY created_at LIMIT :limit FOR UPDATE SKIP LOCKED
)
RETURNING u.id, u.tenant_id, u.crossing_key, u.pack_id, u.credits, u.amount_usd_cents, u.attempts"""
_SET_STATUS = """
UPDATE billing.auto_top_ups
SET status = :status, payment_intent = COALESCE(:payment_intent, payment_intent), failure_code = :code,
    failure_message = :message, lease_until = NULL, updated_at = now()
WHERE id = :id AND status = ANY(CAST(:from_statuses AS text[]))
RETURNING tenant_id"""
_PURCHASES = """
SELECT id, status, pack_id, credits, amount_usd_cents, payment_intent, failure_code, failure_message,
       created_at
FROM billing.auto_top_ups WHERE tenant_id = :tenant_id ORDER BY created_at DESC LIMIT :limit"""
_BOUGHT = """
SELECT count(*) FROM billing.auto_top_ups
WHERE tenant_id = :tenant_id AND period = :period AND status <> 'failed'"""


@dataclass(frozen=True)
class ClaimedPurchase:
    """A pending purchase the loop leased: buy `pack_id` for `amount_usd_cents`, once per key."""

    purchase_id: uuid.UUID
    tenant_id: TenantId
    crossing_key: str
    pack_id: str
    credits: int
    amount_usd_cents: int
    attempts: int


@dataclass(frozen=True)
class PurchaseLine:
    """One purchase as the API and the console list it."""

    purchase_id: uuid.UUID
    status: PurchaseStatus
    pack_id: str
    credits: int
    amount_usd_cents: int
    payment_intent: str
    failure_code: str
    failure_message: str
    created_at: datetime


class AutoTopUpQueries(TransactionQueries):
    """Auto top-up settings and purchases, inside one transaction."""

    async def settings(self, tenant_id: TenantId) -> AutoTopUpSettings:
        row = (await self._conn.execute(text(_SETTINGS), {"tenant_id": tenant_id})).first()
        if row is None:
            return AUTO_TOP_UP_OFF
        # The Stripe ids are NULL until a card is saved; the settings hold "" then.
        return to_record(
            AutoTopUpSettings,
            row,
            stripe_customer_id=row.stripe_customer_id or "",
            payment_method_id=row.payment_method_id or "",
        )

    async def store_settings(self, tenant_id: TenantId, settings: AutoTopUpSettings) -> None:
        values: dict[str, Any] = {
            **dataclasses.asdict(settings),
            "tenant_id": tenant_id,
            "stripe_customer_id": settings.stripe_customer_id or None,
            "payment_method_id": settings.payment_method_id or None,
        }
        await self._conn.execute(text(_UPSERT_SETTINGS), values)

    async def disable(self, tenant_id: TenantId, reason: str) -> None:
        """Turns the tenant's auto top-up off, saying why (a declined payment)."""
        await self._conn.execute(text(_DISABLE), {"tenant_id": tenant_id, "reason": reason})

    async def claim_pending(self, limit: int, lease_seconds: float) -> list[ClaimedPurchase]:
        """Leases up to `limit` pending purchases (skipping those another replica holds)."""
        rows = await self._conn.execute(text(_CLAIM), {"limit": limit, "lease_seconds": lease_seconds})
        return [to_record(ClaimedPurchase, row, purchase_id=row.id) for row in rows]

    async def set_status(
        self,
        purchase_id: uuid.UUID,
        status: PurchaseStatus,
        from_statuses: tuple[PurchaseStatus, ...],
        *,
        payment_intent: str | None = None,
        failure_code: str = "",
        failure_message: str = "",
    ) -> TenantId | None:
        """Moves a purchase on from one of `from_statuses`; its tenant, or None if it was elsewhere."""
        row = (
            await self._conn.execute(
                text(_SET_STATUS),
                {
                    "id": purchase_id,
                    "status": status.value,
                    "from_statuses": [s.value for s in from_statuses],
                    "payment_intent": payment_intent,
                    "code": failure_code,
                    "message": failure_message[:500],
                },
            )
        ).first()
        return TenantId(row.tenant_id) if row is not None else None

    async def purchases(self, tenant_id: TenantId, limit: int) -> list[PurchaseLine]:
        rows = await self._conn.execute(text(_PURCHASES), {"tenant_id": tenant_id, "limit": limit})
        return [
            to_record(PurchaseLine, row, purchase_id=row.id, payment_intent=row.payment_intent or "")
            for row in rows
        ]

    async def bought_in(self, tenant_id: TenantId, period: date) -> int:
        """Purchases of the month that did not fail."""
        found = await self._conn.execute(text(_BOUGHT), {"tenant_id": tenant_id, "period": period})
        return int(found.scalar_one())
