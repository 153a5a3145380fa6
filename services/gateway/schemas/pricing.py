"""Buying credits: the price list, prepaid packs, monthly statements (with their CSV), offline
payments, monthly margins and the answer to Stripe's webhook."""

from __future__ import annotations

import csv
import io
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field
from reelbatch.proto.billing.v1 import billing_pb2

from services.gateway.schemas.fields import MAX_CREDITS_PER_REQUEST, SINGLE_LINE_TEXT_PATTERN
from services.gateway.schemas.generation import ModelSettingsView
from services.gateway.schemas.proto_views import MessageView, ProtoView
from services.gateway.schemas.spend_control import BudgetView


class ModelPriceView(BaseModel):
    """What one video of a model costs, in credits (the quote of every batch uses these prices)."""

    model: str
    credits_per_video: int = Field(
        description="Price of one video; for a model priced per second, of a video of `default_seconds`."
    )
    pricing_unit: str = Field(
        default="video", description="`video`, or `second`: an item costs credits_per_second x its duration."
    )
    credits_per_second: int | None = None
    min_seconds: int | None = None
    max_seconds: int | None = None
    default_seconds: int | None = None


class ModelView(ModelPriceView):
    """A model of the price list: its price, its length limits and the settings it takes (with
    what each priced choice adds)."""

    settings: ModelSettingsView = Field(description="What an item of this model may set.")
    provider: str = Field(
        default="simulated",
        description="Who makes its videos: `simulated` (a demo model: no provider is called), `veo` "
        "(Google Veo through the Gemini API), `replicate`, `fal`, or `openai` (a service that still "
        "serves OpenAI's retired Videos API contract).",
    )
    simulated: bool = Field(
        default=True, description="True for a demo model whose videos no real provider makes."
    )


class PriceList(BaseModel):
    """Today's price list, every model with its settings; a batch keeps the prices it was accepted at."""

    items: list[ModelView]
    next_cursor: str | None = Field(default=None, description="Always null: the whole list is one page.")


class PackView(BaseModel):
    """A prepaid pack: credits never expire."""

    pack_id: str
    name: str
    price_usd_cents: int
    credits: int
    bonus_percent: float = Field(description="Credits beyond what the price buys at list price, in percent.")


class PackCatalog(BaseModel):
    """The packs, cheapest first, and what a credit costs at list price."""

    items: list[PackView]
    next_cursor: str | None = None
    credit_value_usd_micros: int

    @classmethod
    def from_proto(cls, catalog: billing_pb2.ListPacksResponse) -> PackCatalog:
        """Builds the catalog from billing's packs."""
        return cls(
            items=[
                PackView(
                    pack_id=pack.pack_id,
                    name=pack.name,
                    price_usd_cents=pack.price_usd_cents,
                    credits=pack.credits,
                    bonus_percent=pack.bonus_basis_points / 100,
                )
                for pack in catalog.packs
            ],
            credit_value_usd_micros=catalog.credit_value_usd_micros,
        )


class ModelUsageView(MessageView[billing_pb2.ModelUsage]):
    """One model's task outcomes applied in the month."""

    model: str
    videos_delivered: int
    videos_refunded: int
    credits_captured: int
    credits_refunded: int


class StatementView(ProtoView):
    """A month of the available balance: opening + purchases + grants - spent + refunded + released
    - reversed - debt_paid + reinstated = closing."""

    month: str
    opening_balance: int
    purchases: int = Field(description="Paid credits (packs, invoices).")
    grants: int = Field(description="Promotional credits granted.")
    spent: int = Field(description="Credits frozen for batches accepted in the month.")
    refunded: int = Field(description="Failed or cancelled videos given back.")
    released: int = Field(description="Remainders released when batches settled.")
    reversed: int = Field(
        default=0, description="Credits taken back from available by refunded or disputed payments."
    )
    debt_paid: int = Field(default=0, description="Credits of payments that paid a debt first.")
    reinstated: int = Field(default=0, description="Credits returned by disputes won.")
    closing_balance: int
    closing_debt: int = Field(default=0, description="Credits owed at the end of the month.")
    closing_paid_credits: int = Field(description="Part of the closing balance that was paid for.")
    closing_granted_credits: int = Field(
        description="Part of the closing balance that was granted (spent first)."
    )
    models: list[ModelUsageView]
    budgets: list[BudgetView] = Field(
        default_factory=list,
        description="The tenant's budgets (today's caps) with their use in this month (issue 29).",
    )

    proto_names: ClassVar[dict[str, str]] = {
        "closing_paid_credits": "closing_paid",
        "closing_granted_credits": "closing_granted",
    }

    @classmethod
    def from_proto(cls, statement: billing_pb2.Statement) -> StatementView:
        """Builds the view from billing's statement."""
        return cls.by_name(
            statement,
            models=[ModelUsageView.from_proto(usage) for usage in statement.models],
            budgets=[BudgetView.from_proto(status) for status in statement.budgets],
        )

    def to_csv(self) -> str:
        """One line per movement, then one per model and outcome: `month,line,model,credits,videos`."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["month", "line", "model", "credits", "videos"])
        for line in (
            "opening_balance",
            "purchases",
            "grants",
            "spent",
            "refunded",
            "released",
            "reversed",
            "debt_paid",
            "reinstated",
            "closing_balance",
            "closing_debt",
        ):
            writer.writerow([self.month, line, "", getattr(self, line), ""])
        for usage in self.models:
            writer.writerow(
                [self.month, "captured", usage.model, usage.credits_captured, usage.videos_delivered]
            )
            writer.writerow(
                [self.month, "refunded", usage.model, usage.credits_refunded, usage.videos_refunded]
            )
        for budget in self.budgets:
            # The model column names the budget (`tenant`, `api_key:<id>`, `project:<name>`).
            scope = budget.scope if budget.scope_id is None else f"{budget.scope}:{budget.scope_id}"
            writer.writerow([self.month, "budget_used", scope, budget.used_credits, ""])
            if budget.monthly_credits is not None:
                writer.writerow([self.month, "budget_cap", scope, budget.monthly_credits, ""])
        return out.getvalue()


class AdminPaymentRequest(BaseModel):
    """An offline payment (invoice): a pack, or custom credits with the amount paid."""

    model_config = ConfigDict(extra="forbid")

    reference: str = Field(
        min_length=1,
        max_length=200,
        pattern=SINGLE_LINE_TEXT_PATTERN,
        description="Invoice number: credited once.",
    )
    pack_id: str | None = Field(default=None, max_length=64, pattern=SINGLE_LINE_TEXT_PATTERN)
    # Bounded so a huge number is a 422, never an int64 overflow deeper down.
    credits: int = Field(default=0, strict=True, ge=0, le=MAX_CREDITS_PER_REQUEST)
    amount_usd_cents: int = Field(default=0, strict=True, ge=0, le=MAX_CREDITS_PER_REQUEST)


class PaymentRecorded(BaseModel):
    """The balance after the payment; `replayed` when the reference was already credited."""

    balance: int
    credits: int
    replayed: bool


class ModelMarginView(ProtoView):
    """Revenue of captured videos against the provider cost frozen with their batches."""

    model: str
    videos: int
    revenue_credits: int
    revenue_usd_micros: int
    provider_cost_usd_micros: int
    margin_usd_micros: int
    margin_percent: float

    @classmethod
    def from_proto(cls, line: billing_pb2.ModelMargin) -> ModelMarginView:
        """Builds the view from billing's margin line."""
        return cls.by_name(line, margin_percent=line.margin_basis_points / 100)


class MonthlyMarginsView(BaseModel):
    """The month's margins per model, and their total."""

    month: str
    credit_value_usd_micros: int
    items: list[ModelMarginView]
    total: ModelMarginView


class StripeEventReceived(BaseModel):
    """What billing did with the event (Stripe only needs the 2xx)."""

    received: bool = True
    event_id: str
    outcome: str
