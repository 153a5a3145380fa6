"""The payment rules of the billing state machine (`test_billing_stateful.py`, ADR-136): packs paid
through signed Stripe events, refunds and disputes that take credits back (debt included), disputes
won or lost, and automatic top-ups bought by the crossings of freezes, each compared with a model.

Events are built and signed here as Stripe sends them (the shapes of `tests.fakes.stripe_payments`);
the off-session charge is a stub that answers per Idempotency-Key, like Stripe, and counts charges.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from services.billing.adapters.stripe_payments import ChargeAttempt, OffSessionCharge, SavedCard
from services.billing.domain.auto_top_up import PURPOSE
from services.billing.domain.ids import TenantId
from services.billing.domain.packs import CreditPack
from services.billing.domain.payments import EventOutcome
from services.billing.domain.reversals import credits_for_cents

SECRET = "whsec_stateful"
# A small pack, so that the model's amounts stay in the range of its batches.
MINI = CreditPack(pack_id="mini", name="Mini", price_usd_cents=1_000, credits=100)


def signed(event_type: str, obj: dict[str, Any]) -> tuple[bytes, str]:
    """A Stripe event of `obj`, signed as Stripe signs deliveries."""
    payload = json.dumps(
        {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": event_type, "data": {"object": obj}}
    ).encode()
    stamp = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, f"t={stamp},v1={digest}"


class StubCharges:
    """Off-session charges as Stripe answers them: one PaymentIntent per Idempotency-Key."""

    def __init__(self) -> None:
        self.intents: dict[str, OffSessionCharge] = {}
        self.undelivered: list[tuple[str, OffSessionCharge]] = []

    async def ensure_customer(self, tenant_id: TenantId, customer_id: str) -> str:
        return customer_id or f"cus_{tenant_id.hex[:12]}"

    async def saved_card(self, customer_id: str) -> SavedCard | None:
        return SavedCard("pm_stateful", "visa •••• 4242")

    async def charge(self, charge: OffSessionCharge) -> ChargeAttempt:
        intent = f"pi_{hashlib.sha256(charge.idempotency_key.encode()).hexdigest()[:24]}"
        if charge.idempotency_key not in self.intents:
            self.intents[charge.idempotency_key] = charge
            self.undelivered.append((intent, charge))
        return ChargeAttempt(intent, "succeeded")


@dataclass
class ModelPayment:
    tenant: TenantId
    intent: str
    refunded_cents: int = 0
    reversed: int = 0
    # dispute id -> (credits taken, closed)
    disputes: dict[str, tuple[int, bool]] = field(default_factory=dict)


class PaymentRules(RuleBasedStateMachine):
    """Rules mixed into the billing state machine; it provides `run`, `handlers`, `tenants`,
    `available`, and calls `after_freeze` from its reservations."""

    tenants: list[TenantId]
    available: dict[TenantId, int]
    stub: StubCharges

    def init_payments(self) -> None:
        self.debt: dict[TenantId, int] = dict.fromkeys(self.tenants, 0)
        self.payments: list[ModelPayment] = []
        self.auto: dict[TenantId, int | None] = dict.fromkeys(self.tenants)
        self.open_purchase: dict[TenantId, bool] = dict.fromkeys(self.tenants, False)
        self.bought: dict[TenantId, int] = dict.fromkeys(self.tenants, 0)
        self.delivered: list[tuple[bytes, str]] = []

    def run(self, work: Any) -> Any:
        raise NotImplementedError

    def _deliver(self, event: tuple[bytes, str]) -> Any:
        self.delivered.append(event)
        return self.run(self.handlers.handle_stripe_event(*event))  # type: ignore[attr-defined]

    def _receive(self, tenant: TenantId, credits: int) -> None:
        """A payment's credits pay the debt first (ADR-134)."""
        paid = min(credits, self.debt[tenant])
        self.debt[tenant] -= paid
        self.available[tenant] += credits - paid

    def _take_back(self, tenant: TenantId, credits: int) -> None:
        taken = min(credits, self.available[tenant])
        self.available[tenant] -= taken
        self.debt[tenant] += credits - taken

    def debt_outstanding(self, tenant: TenantId) -> bool:
        return self.debt[tenant] > 0

    def after_freeze(self, tenant: TenantId, before: int, after: int) -> None:
        """A freeze that crosses the auto top-up line opens one purchase (within the month's limit)."""
        line = self.auto[tenant]
        open_to_buy = line is not None and not self.open_purchase[tenant] and self.bought[tenant] < 2
        if open_to_buy and line is not None and before >= line > after:
            self.open_purchase[tenant] = True

    @initialize(line=st.integers(20, 90))
    def start_with_a_pack_each_and_auto_top_up(self, line: int) -> None:
        """Every example starts with money bought through Stripe (so refunds and disputes can make
        debt) and with the first tenant's auto top-up on (so freezes can cross its line)."""
        for tenant in range(len(self.tenants)):
            self.buy_a_pack(tenant)
        self.set_auto_top_up(0, line)

    @rule(tenant=st.integers(0, 1))
    def buy_a_pack(self, tenant: int) -> None:
        tenant_id = self.tenants[tenant]
        intent = f"pi_{uuid.uuid4().hex}"
        session = {
            "id": f"cs_{uuid.uuid4().hex}",
            "object": "checkout.session",
            "payment_intent": intent,
            "payment_status": "paid",
            "amount_total": MINI.price_usd_cents,
            "currency": "usd",
            "metadata": {"tenant_id": str(tenant_id), "pack_id": MINI.pack_id},
        }
        assert self._deliver(signed("checkout.session.completed", session)).outcome is EventOutcome.CREDITED
        self.payments.append(ModelPayment(tenant_id, intent))
        self._receive(tenant_id, MINI.credits)

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), cents=st.integers(1, 1_000))
    def refund_part_of_a_payment(self, data: st.DataObject, cents: int) -> None:
        payment = data.draw(st.sampled_from(self.payments))
        level = min(MINI.price_usd_cents, payment.refunded_cents + cents)
        charge = {
            "id": f"ch_{payment.intent[3:]}",
            "object": "charge",
            "payment_intent": payment.intent,
            "amount": MINI.price_usd_cents,
            "amount_refunded": level,
            "currency": "usd",
        }
        self._deliver(signed("charge.refunded", charge))
        more = credits_for_cents(MINI.credits, MINI.price_usd_cents, level) - credits_for_cents(
            MINI.credits, MINI.price_usd_cents, payment.refunded_cents
        )
        credits = max(0, min(more, MINI.credits - payment.reversed))
        payment.refunded_cents = level
        payment.reversed += credits
        self._take_back(payment.tenant, credits)

    @precondition(lambda self: self.payments)
    @rule(data=st.data())
    def dispute_a_payment(self, data: st.DataObject) -> None:
        payment = data.draw(st.sampled_from(self.payments))
        dispute_id = f"dp_{uuid.uuid4().hex}"
        self._deliver(signed("charge.dispute.created", self._dispute(dispute_id, payment, "needs_response")))
        credits = MINI.credits - payment.reversed
        payment.disputes[dispute_id] = (credits, False)
        payment.reversed += credits
        self._take_back(payment.tenant, credits)

    @precondition(lambda self: any(not closed for p in self.payments for _, closed in p.disputes.values()))
    @rule(data=st.data(), won=st.booleans())
    def close_a_dispute(self, data: st.DataObject, won: bool) -> None:
        open_ones = [(p, d) for p in self.payments for d, (_, closed) in p.disputes.items() if not closed]
        payment, dispute_id = data.draw(st.sampled_from(open_ones))
        status = "won" if won else "lost"
        self._deliver(signed("charge.dispute.closed", self._dispute(dispute_id, payment, status)))
        credits, _ = payment.disputes[dispute_id]
        payment.disputes[dispute_id] = (credits, True)
        if won:
            payment.reversed -= credits
            back = min(credits, self.debt[payment.tenant])
            self.debt[payment.tenant] -= back
            self.available[payment.tenant] += credits - back

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def deliver_an_event_again(self, data: st.DataObject) -> None:
        """Stripe delivers at least once: a repeat changes nothing."""
        again = data.draw(st.sampled_from(self.delivered))
        assert self.run(self.handlers.handle_stripe_event(*again)).outcome is EventOutcome.DUPLICATE_EVENT  # type: ignore[attr-defined]

    @rule(tenant=st.integers(0, 1), line=st.none() | st.integers(1, 150))
    def set_auto_top_up(self, tenant: int, line: int | None) -> None:
        tenant_id = self.tenants[tenant]
        status = self.run(
            self.handlers.set_auto_top_up(tenant_id, line is not None, line or 1, MINI.pack_id, 2)  # type: ignore[attr-defined]
        )
        assert status.settings.enabled is (line is not None)
        self.auto[tenant_id] = line

    def settle_the_purchases(self) -> None:
        """Charges and credits what is still open (at the end of an example: the database is shared
        by the examples, and a purchase left open would be charged by the next one's loop)."""
        self.run(self.handlers.charge_due_top_ups(100, 60.0))  # type: ignore[attr-defined]
        for intent, charge in self.stub.undelivered:
            self.run(self.handlers.handle_stripe_event(*self._succeeded(intent, charge)))  # type: ignore[attr-defined]
        self.stub.undelivered.clear()

    @staticmethod
    def _succeeded(intent: str, charge: OffSessionCharge) -> tuple[bytes, str]:
        obj = {
            "id": intent,
            "object": "payment_intent",
            "status": "succeeded",
            "amount": charge.amount_usd_cents,
            "currency": "usd",
            "metadata": {
                "tenant_id": str(charge.tenant_id),
                "pack_id": charge.pack_id,
                "auto_top_up_id": charge.purchase_id,
                "purpose": PURPOSE,
            },
        }
        return signed("payment_intent.succeeded", obj)

    @rule()
    def run_the_top_up_loop(self) -> None:
        """One round charges every open purchase once; the webhook credits it (debt first)."""
        self.run(self.handlers.charge_due_top_ups(100, 60.0))  # type: ignore[attr-defined]
        for intent, charge in self.stub.undelivered:
            assert self._deliver(self._succeeded(intent, charge)).outcome is EventOutcome.CREDITED
        self.stub.undelivered.clear()
        for tenant_id in self.tenants:
            if self.open_purchase[tenant_id] and self.auto[tenant_id] is not None:
                self.open_purchase[tenant_id] = False
                self.bought[tenant_id] += 1
                self._receive(tenant_id, MINI.credits)
            elif self.open_purchase[tenant_id]:
                # Turned off before the loop charged it: nothing bought.
                self.open_purchase[tenant_id] = False

    @staticmethod
    def _dispute(dispute_id: str, payment: ModelPayment, status: str) -> dict[str, Any]:
        return {
            "id": dispute_id,
            "object": "dispute",
            "amount": MINI.price_usd_cents,
            "charge": f"ch_{payment.intent[3:]}",
            "payment_intent": payment.intent,
            "status": status,
            "reason": "fraudulent",
        }


def refused_for_debt(machine: PaymentRules, tenant: TenantId) -> Any:
    """The exception a reservation of a tenant in debt raises."""
    from services.billing.domain.reversals import DebtOutstanding

    return pytest.raises(DebtOutstanding) if machine.debt_outstanding(tenant) else None
