"""Spend control: monthly budgets and their use, spend alert thresholds, stored quotes (issue 29)."""

from __future__ import annotations

from typing import Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

from services.gateway.schemas.proto_views import MessageView, ProtoView

# The largest cap billing accepts (billing's MAX_MONTHLY_CREDITS).
MAX_MONTHLY_CREDITS = 10**15


class BudgetUpdate(BaseModel):
    """A monthly budget to set, or `null` to remove it."""

    model_config = ConfigDict(extra="forbid")

    monthly_credits: int | None = Field(
        strict=True,
        ge=0,
        le=MAX_MONTHLY_CREDITS,
        description=(
            "Credits that may be frozen per UTC calendar month (0 stops every new batch); `null` "
            "removes the budget. A batch over it is refused with 402 `budget_exceeded`."
        ),
    )


# Billing's bounds of alert thresholds (`domain.alerts`).
MAX_LOW_BALANCE_CREDITS = MAX_MONTHLY_CREDITS
_LOW_BALANCE_DESCRIPTION = (
    "Send `credits.low` when a batch's freeze takes the available credits below this many; `null` "
    "(or omitted) turns the alert off."
)
_PERCENT_DESCRIPTION = (
    "Send `budget.threshold` when a batch's freeze takes a capped budget's use this month to this "
    "percent of its cap (each budget: the tenant's, keys', projects'); `null` (or omitted) turns it off."
)


class AlertThresholdsUpdate(BaseModel):
    """The tenant's spend alert thresholds, replacing the current ones."""

    model_config = ConfigDict(extra="forbid")

    low_balance_credits: int | None = Field(
        default=None, strict=True, ge=1, le=MAX_LOW_BALANCE_CREDITS, description=_LOW_BALANCE_DESCRIPTION
    )
    budget_percent: int | None = Field(
        default=None, strict=True, ge=1, le=100, description=_PERCENT_DESCRIPTION
    )


class AlertThresholdsView(BaseModel):
    """The tenant's spend alert thresholds (null: that alert is off)."""

    low_balance_credits: int | None = Field(description=_LOW_BALANCE_DESCRIPTION)
    budget_percent: int | None = Field(description=_PERCENT_DESCRIPTION)

    @classmethod
    def from_proto(cls, thresholds: billing_pb2.AlertThresholds) -> Self:
        """The view of billing's AlertThresholds."""
        return cls(
            low_balance_credits=(
                thresholds.low_balance_credits if thresholds.HasField("low_balance_credits") else None
            ),
            budget_percent=thresholds.budget_percent if thresholds.HasField("budget_percent") else None,
        )

    def to_request(self, tenant_id: str) -> billing_pb2.SetAlertThresholdsRequest:
        """Billing's request setting these thresholds for the tenant."""
        return billing_pb2.SetAlertThresholdsRequest(
            tenant_id=tenant_id,
            low_balance_credits=self.low_balance_credits,
            budget_percent=self.budget_percent,
        )


class BudgetView(ProtoView):
    """A budget and its use in the current UTC calendar month."""

    scope: str = Field(description="`tenant`, `api_key` or `project`.")
    scope_id: str | None = Field(description="The key id or the project; null for the tenant's budget.")
    monthly_credits: int | None = Field(description="The cap; null when there is none.")
    used_credits: int = Field(
        description=(
            "Net credits frozen this month (frozen minus refunded and released): spend counts in the "
            "month of its freeze, and a refund gives that month's budget back."
        )
    )
    remaining_credits: int | None = Field(
        description="What can still be frozen this month; null without a cap."
    )
    period_start: AwareDatetime = Field(description="The month's first instant (UTC).")
    period_end: AwareDatetime = Field(
        description="The next month's first instant (UTC): the use resets then."
    )

    @classmethod
    def from_proto(cls, status: billing_pb2.BudgetStatus) -> Self:
        """The view of billing's BudgetStatus."""
        return cls.by_name(
            status,
            monthly_credits=status.monthly_credits if status.HasField("monthly_credits") else None,
            remaining_credits=status.remaining_credits if status.HasField("remaining_credits") else None,
        )


class BudgetList(BaseModel):
    """The tenant's budgets: its own first (always listed, capped or not), then keys', projects'."""

    items: list[BudgetView]


class QuoteView(MessageView[batch_pb2.BatchQuote]):
    """A stored quote: cite `quote_id` in a create of the same body to be charged exactly this."""

    ok: bool = True
    quote_id: str = Field(description="Cite it as `quote_id` in `POST /api/enterprise/video-batch`.")
    required_credits: int = Field(description="What the batch will be charged (nothing is frozen yet).")
    total_count: int = Field(description="Items in the batch.")
    item_prices: list[int] = Field(description="Each item's price in credits, in item order.")
    expires_at: AwareDatetime = Field(description="Until when a create may cite it (UTC); single use.")
