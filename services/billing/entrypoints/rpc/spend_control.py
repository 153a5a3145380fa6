"""gRPC calls of budgets, spend alert thresholds and stored quotes."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

from reelbatch.proto.billing.v1 import billing_pb2

from services.billing.domain.alerts import AlertStatus
from services.billing.domain.budgets import BudgetStatus
from services.billing.domain.ids import parse_tenant_id
from services.billing.domain.quotes import StoredQuote
from services.billing.entrypoints.rpc.base import BillingRpcs, Context, timestamp
from services.billing.entrypoints.rpc.reservations import lines_of, quote_line_messages


class SpendControlRpcs(BillingRpcs):
    """GetBudgets, SetBudget, CreateQuote and GetQuote."""

    async def GetBudgets(
        self, request: billing_pb2.GetBudgetsRequest, context: Context
    ) -> billing_pb2.GetBudgetsResponse:
        statuses = await self._handlers.get_budgets(
            parse_tenant_id(request.tenant_id), request.scope, request.scope_id
        )
        return billing_pb2.GetBudgetsResponse(budgets=[budget_status(status) for status in statuses])

    async def SetBudget(
        self, request: billing_pb2.SetBudgetRequest, context: Context
    ) -> billing_pb2.BudgetStatus:
        status = await self._handlers.set_budget(
            parse_tenant_id(request.tenant_id),
            request.scope,
            request.scope_id,
            request.monthly_credits if request.HasField("monthly_credits") else None,
        )
        return budget_status(status)

    async def GetAlertThresholds(
        self, request: billing_pb2.GetAlertThresholdsRequest, context: Context
    ) -> billing_pb2.AlertThresholds:
        return alert_thresholds(await self._handlers.get_alert_thresholds(parse_tenant_id(request.tenant_id)))

    async def SetAlertThresholds(
        self, request: billing_pb2.SetAlertThresholdsRequest, context: Context
    ) -> billing_pb2.AlertThresholds:
        thresholds = await self._handlers.set_alert_thresholds(
            parse_tenant_id(request.tenant_id),
            request.low_balance_credits if request.HasField("low_balance_credits") else None,
            request.budget_percent if request.HasField("budget_percent") else None,
        )
        return alert_thresholds(thresholds)

    async def CreateQuote(
        self, request: billing_pb2.CreateQuoteRequest, context: Context
    ) -> billing_pb2.StoredQuote:
        stored = await self._handlers.create_quote(
            parse_tenant_id(request.tenant_id),
            lines_of(request.lines),
            request.fingerprint,
            request.api_key_id,
        )
        return _stored_quote(stored)

    async def GetQuote(
        self, request: billing_pb2.GetQuoteRequest, context: Context
    ) -> billing_pb2.StoredQuote:
        stored = await self._handlers.get_quote(parse_tenant_id(request.tenant_id), request.quote_id)
        return _stored_quote(stored)


def budget_status(status: BudgetStatus) -> billing_pb2.BudgetStatus:
    """A budget and its use as the message (statements carry them too)."""
    return billing_pb2.BudgetStatus(
        scope=status.key.scope.value,
        scope_id=status.key.scope_id,
        monthly_credits=status.monthly_credits,
        used_credits=status.used_credits,
        remaining_credits=status.remaining_credits,
        period_start=timestamp(status.period.start_at),
        period_end=timestamp(status.period.end_at),
    )


def _stored_quote(stored: StoredQuote) -> billing_pb2.StoredQuote:
    return billing_pb2.StoredQuote(
        quote_id=str(stored.quote_id),
        lines=quote_line_messages(stored.lines),
        total_credits=stored.total,
        fingerprint=stored.fingerprint,
        created_at=timestamp(stored.created_at),
        expires_at=timestamp(stored.expires_at),
        batch_id=str(stored.batch_id) if stored.batch_id else "",
    )


def alert_thresholds(status: AlertStatus) -> billing_pb2.AlertThresholds:
    """The thresholds as answered (unset fields: that alert is off), with the tenant's state."""
    return billing_pb2.AlertThresholds(
        low_balance_credits=status.thresholds.low_balance_credits,
        budget_percent=status.thresholds.budget_percent,
        credits_low=status.credits_low,
        budgets_reached=[
            key.scope.value + (f":{key.scope_id}" if key.scope_id else "") for key in status.budgets_reached
        ],
    )
