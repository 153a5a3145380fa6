"""What billing's use cases run on: the repository, the price list and the outside services."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from services.billing.adapters.repository import BillingRepository
from services.billing.adapters.stripe_checkout import OpenedCheckout
from services.billing.adapters.stripe_payments import ChargeAttempt, OffSessionCharge, SavedCard
from services.billing.domain.console_access import ConsolePolicy
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import TaskOutcome
from services.billing.domain.packs import CreditPack
from services.billing.domain.pricing import ModelPrice
from services.billing.domain.reconciliation import BatchOutcomeTotals


class TaskOutcomeSource(Protocol):
    """Where settlement fetches outcomes it has not received as events (the batch service)."""

    async def terminal_outcomes(self, batch_id: BatchId) -> list[TaskOutcome]: ...


class BatchTotalsSource(Protocol):
    """Where reconciliation reads what batches' task outcomes are worth (the batch service): every
    batch's, or (incremental runs) those of `batch_ids` and of the batches created since
    `created_from`."""

    async def batch_totals(
        self, batch_ids: Collection[BatchId] | None = None, created_from: datetime | None = None
    ) -> dict[BatchId, BatchOutcomeTotals]: ...


class StripeEventVerifier(Protocol):
    """Verifies a Stripe webhook delivery and decodes its event (InvalidSignature otherwise)."""

    def verify(self, payload: bytes, signature_header: str) -> Mapping[str, object]: ...


class CheckoutOpener(Protocol):
    """Opens a payment provider's hosted checkout for a pack (Stripe Checkout); with a customer, the
    card paid with is saved to it for automatic top-ups."""

    async def open(
        self, tenant_id: TenantId, pack: CreditPack, success_url: str, cancel_url: str, customer_id: str = ""
    ) -> OpenedCheckout: ...


class OffSessionPayments(Protocol):
    """Stripe Customers, their saved cards and off-session PaymentIntents (automatic top-ups)."""

    async def ensure_customer(self, tenant_id: TenantId, customer_id: str) -> str: ...

    async def saved_card(self, customer_id: str) -> SavedCard | None: ...

    async def charge(self, charge: OffSessionCharge) -> ChargeAttempt: ...


@dataclass(frozen=True)
class Dependencies:
    """Everything a billing use case may need; built once per service by `BillingHandlers`."""

    repository: BillingRepository
    prices: Mapping[str, ModelPrice]
    # Outcomes applied per transaction (`settlement.apply_task_outcomes`).
    chunk_size: int
    clock: Callable[[], datetime]
    packs: Mapping[str, CreditPack]
    # What one credit sells for (revenue in margin reports).
    credit_value_usd_micros: int
    outcome_source: TaskOutcomeSource | None = None
    totals_source: BatchTotalsSource | None = None
    stripe_verifier: StripeEventVerifier | None = None
    # None: no Stripe secret key, so no online purchases.
    checkout: CheckoutOpener | None = None
    # None: no Stripe secret key, so no automatic top-ups.
    stripe_payments: OffSessionPayments | None = None
    # Invite and session lifetimes, sign-in lock-out (console access).
    console_policy: ConsolePolicy = field(default_factory=ConsolePolicy)
