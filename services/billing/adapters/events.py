"""Billing's outgoing events, encoded as the protobuf contracts of `events.v1`."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from reelbatch.proto.events.v1 import events_pb2

from libs.messaging.contract import Envelope
from services.billing.domain.alerts import Crossing
from services.billing.domain.auto_top_up import AUTO_TOP_UP_FAILED, AutoTopUpSettings
from services.billing.domain.budgets import Period
from services.billing.domain.ids import TenantId
from services.billing.domain.settlement import BatchHold

BATCH_SETTLED = "batch.settled"


def batch_settled_event(hold: BatchHold) -> Envelope:
    """`batch.settled`: the hold of a batch was released and its settlement is final."""
    occurred_at = Timestamp()
    if hold.settled_at is not None:
        occurred_at.FromDatetime(hold.settled_at)
    return Envelope.of(
        BATCH_SETTLED,
        events_pb2.BatchSettled(**hold.credit_totals(), occurred_at=occurred_at),
    )


BILLING_ALERT = "billing.alert"


def spend_alert_event(
    alert_id: str, tenant_id: TenantId, crossing: Crossing, period: Period, occurred_at: datetime
) -> Envelope:
    """`billing.alert`: a freeze crossed one of the tenant's alert thresholds (ADR-125)."""
    moment = Timestamp()
    moment.FromDatetime(occurred_at)
    budget = crossing.budget
    return Envelope.of(
        BILLING_ALERT,
        events_pb2.SpendAlert(
            alert_id=alert_id,
            tenant_id=str(tenant_id),
            alert_type=crossing.kind.value,
            threshold_credits=crossing.threshold_credits,
            value_credits=crossing.value_credits,
            budget_scope=budget.scope.value if budget is not None else "",
            budget_scope_id=budget.scope_id if budget is not None else "",
            monthly_credits=crossing.monthly_credits,
            threshold_percent=crossing.percent,
            period_end=period.end_at.isoformat() if budget is not None else "",
            occurred_at=moment,
        ),
    )


def auto_top_up_failed_event(
    alert_id: str,
    tenant_id: TenantId,
    settings: AutoTopUpSettings,
    failure_code: str,
    failure_message: str,
    occurred_at: datetime,
) -> Envelope:
    """`billing.alert` of type `auto_top_up.failed`: the saved payment method refused an automatic
    top-up, which turned itself off (ADR-135); one per purchase (`alert_id` is the purchase's id)."""
    moment = Timestamp()
    moment.FromDatetime(occurred_at)
    return Envelope.of(
        BILLING_ALERT,
        events_pb2.SpendAlert(
            alert_id=alert_id,
            tenant_id=str(tenant_id),
            alert_type=AUTO_TOP_UP_FAILED,
            threshold_credits=settings.threshold_credits,
            pack_id=settings.pack_id,
            failure_code=failure_code,
            failure_message=failure_message,
            occurred_at=moment,
        ),
    )
