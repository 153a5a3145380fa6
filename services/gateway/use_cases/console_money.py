"""What the customer console reads of one tenant's money, from billing and batch: the overview's
figures, usage, the ledger with each refund's reason, statements, packs, receipts and checkout.

Every call names the signed-in member's tenant: billing and batch scope each query by it, so
another tenant's batch, payment or ledger line is NOT_FOUND (the pages answer 404).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

from libs.rpc.timestamps import optional_time
from libs.vocabulary import OPEN_BATCH_STATUSES, TaskStatus, values_of
from services.gateway.adapters.backends import Backends
from services.gateway.schemas.auto_top_up import AutoTopUpUpdate, AutoTopUpView, update_request
from services.gateway.schemas.batches import BatchView
from services.gateway.schemas.console_money import (
    Balances,
    FailureReason,
    LedgerLine,
    LedgerLines,
    MonthMoney,
    Receipt,
    RecentFailure,
    UsageReport,
)
from services.gateway.schemas.fields import optional_timestamp
from services.gateway.schemas.pricing import PackCatalog, StatementView
from services.gateway.schemas.spend_control import AlertThresholdsView, BudgetView

# The overview's last failures: from this many recent batches with failures, this many in all.
FAILURE_BATCHES = 5
RECENT_FAILURES = 10
# Failed and cancelled tasks read per batch when explaining a page of refunds (a refund of a task
# beyond them is still listed and linked, without its reason).
REASON_TASKS_PER_BATCH = 1000
# A ledger CSV is read from billing a page at a time.
EXPORT_PAGE = 500


@dataclass(frozen=True)
class LedgerQuery:
    """The ledger filters of the books page (empty: all)."""

    batch_id: str = ""
    ref_type: str = ""
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclass(frozen=True)
class Overview:
    """The console's first page."""

    balances: Balances
    month: MonthMoney
    open_batches: tuple[BatchView, ...]
    failures: tuple[RecentFailure, ...]


def month_label(moment: datetime) -> str:
    """`YYYY-MM` of a UTC moment."""
    return f"{moment.astimezone(UTC):%Y-%m}"


class ConsoleMoney:
    """One tenant's money, as its console members read it."""

    def __init__(self, backends: Backends, deadline_seconds: float) -> None:
        self._backends = backends
        self._deadline = deadline_seconds

    async def overview(self, tenant_id: str, now: datetime) -> Overview:
        """Balances by source, this month's spend and refunds, open batches and the last failures."""
        balance, statement, open_batches, failures = await asyncio.gather(
            self._backends.billing.GetBalance(
                billing_pb2.GetBalanceRequest(tenant_id=tenant_id), timeout=self._deadline
            ),
            self._backends.billing.GetStatement(
                billing_pb2.GetStatementRequest(tenant_id=tenant_id, month=month_label(now)),
                timeout=self._deadline,
            ),
            self.open_batches(tenant_id),
            self.recent_failures(tenant_id),
        )
        return Overview(
            balances=Balances(
                available=balance.available_credits,
                held=balance.held_credits,
                paid=statement.closing_paid,
                granted=statement.closing_granted,
            ),
            month=MonthMoney(
                month=statement.month,
                spent=statement.spent,
                refunded=statement.refunded + statement.released,
            ),
            open_batches=open_batches,
            failures=failures,
        )

    async def open_batches(self, tenant_id: str) -> tuple[BatchView, ...]:
        """The tenant's batches still running, newest first."""
        pages = await asyncio.gather(
            *(
                self._backends.batch.ListBatches(
                    batch_pb2.ListBatchesRequest(tenant_id=tenant_id, status=status, limit=20),
                    timeout=self._deadline,
                )
                for status in values_of(OPEN_BATCH_STATUSES)
            )
        )
        batches = [BatchView.from_proto(batch) for page in pages for batch in page.batches]
        return tuple(sorted(batches, key=lambda batch: batch.created_at, reverse=True))

    async def recent_failures(self, tenant_id: str) -> tuple[RecentFailure, ...]:
        """The last failed or cancelled tasks of the tenant's most recent batches that had any."""
        recent = await self._backends.batch.ListBatches(
            batch_pb2.ListBatchesRequest(tenant_id=tenant_id, limit=50), timeout=self._deadline
        )
        with_failures = [
            batch.batch_id for batch in recent.batches if batch.failed_count or batch.cancelled_count
        ][:FAILURE_BATCHES]
        found: list[RecentFailure] = []
        for tasks in await asyncio.gather(
            *(self._failed_tasks(tenant_id, batch_id, RECENT_FAILURES) for batch_id in with_failures)
        ):
            found.extend(
                RecentFailure(
                    batch_id=task.batch_id,
                    task_id=task.task_id,
                    batch_index=task.batch_index,
                    model=task.model,
                    reason=FailureReason.of(task.failure_type, task.error_message),
                    finished_at=optional_time(task.finished_at, task.HasField("finished_at")),
                )
                for task in tasks
            )
        oldest = datetime.min.replace(tzinfo=UTC)
        found.sort(key=lambda failure: failure.finished_at or oldest, reverse=True)
        return tuple(found[:RECENT_FAILURES])

    async def _failed_tasks(self, tenant_id: str, batch_id: str, limit: int) -> list[batch_pb2.Task]:
        """A batch's failed and cancelled tasks (up to `limit` of each)."""
        pages = await asyncio.gather(
            *(
                self._backends.batch.ListTasks(
                    batch_pb2.ListTasksRequest(
                        tenant_id=tenant_id, batch_id=batch_id, status=status, limit=limit
                    ),
                    timeout=self._deadline,
                )
                for status in (TaskStatus.FAILED, TaskStatus.CANCELLED)
            )
        )
        return [task for page in pages for task in page.tasks]

    async def usage(self, tenant_id: str, start: date, end: date) -> UsageReport:
        """Spend and refunds per UTC day and model over [start, end), priced at the average paid price."""
        usage = await self._backends.billing.GetUsage(
            billing_pb2.GetUsageRequest(
                tenant_id=tenant_id,
                created_from=optional_timestamp(datetime.combine(start, datetime.min.time(), UTC)),
                created_to=optional_timestamp(datetime.combine(end, datetime.min.time(), UTC)),
            ),
            timeout=self._deadline,
        )
        return UsageReport.from_proto(usage, start, end)

    async def ledger(
        self, tenant_id: str, query: LedgerQuery, cursor: str = "", limit: int = 50
    ) -> LedgerLines:
        """A page of the tenant's ledger, each refund with its task's failure type and fault."""
        page = await self._backends.billing.ListLedgerEntries(
            billing_pb2.ListLedgerEntriesRequest(
                tenant_id=tenant_id,
                batch_id=query.batch_id,
                ref_type=query.ref_type,
                created_from=optional_timestamp(query.created_from),
                created_to=optional_timestamp(query.created_to),
                cursor=cursor,
                limit=limit,
            ),
            timeout=self._deadline,
        )
        reasons = await self._refund_reasons(tenant_id, page.entries)
        return LedgerLines(
            lines=tuple(LedgerLine.from_proto(entry, reasons.get(entry.ref_id)) for entry in page.entries),
            next_cursor=page.next_cursor or None,
        )

    async def ledger_lines(self, tenant_id: str, query: LedgerQuery) -> AsyncIterator[LedgerLine]:
        """Every line the filters select, newest first, read a page at a time (for the CSV)."""
        cursor = ""
        while True:
            page = await self.ledger(tenant_id, query, cursor, EXPORT_PAGE)
            for line in page.lines:
                yield line
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def _refund_reasons(
        self, tenant_id: str, entries: Iterable[billing_pb2.LedgerEntry]
    ) -> dict[str, FailureReason]:
        """The failure reason of each refunded task among `entries`, read from their batches."""
        batches = sorted(
            {entry.batch_id for entry in entries if entry.ref_type == "batch_refund" and entry.batch_id}
        )
        reasons: dict[str, FailureReason] = {}
        for tasks in await asyncio.gather(
            *(self._failed_tasks(tenant_id, batch_id, REASON_TASKS_PER_BATCH) for batch_id in batches)
        ):
            for task in tasks:
                reasons[task.task_id] = FailureReason.of(task.failure_type, task.error_message)
        return reasons

    async def statement(self, tenant_id: str, month: str) -> StatementView:
        """The tenant's statement of one UTC month (`YYYY-MM`)."""
        statement = await self._backends.billing.GetStatement(
            billing_pb2.GetStatementRequest(tenant_id=tenant_id, month=month), timeout=self._deadline
        )
        return StatementView.from_proto(statement)

    async def packs(self) -> PackCatalog:
        """The pack catalog, cheapest first."""
        catalog = await self._backends.billing.ListPacks(
            billing_pb2.ListPacksRequest(), timeout=self._deadline
        )
        return PackCatalog.from_proto(catalog)

    async def receipts(self, tenant_id: str, cursor: str = "") -> tuple[tuple[Receipt, ...], str | None]:
        """A page of the tenant's payments, newest first, and the next cursor."""
        page = await self._backends.billing.ListPayments(
            billing_pb2.ListPaymentsRequest(tenant_id=tenant_id, cursor=cursor), timeout=self._deadline
        )
        return tuple(Receipt.from_proto(payment) for payment in page.payments), page.next_cursor or None

    async def receipt(self, tenant_id: str, payment_id: str) -> Receipt:
        """One payment of the tenant (NOT_FOUND for another tenant's)."""
        payment = await self._backends.billing.GetPayment(
            billing_pb2.GetPaymentRequest(tenant_id=tenant_id, payment_id=payment_id), timeout=self._deadline
        )
        return Receipt.from_proto(payment)

    async def open_checkout(self, tenant_id: str, pack_id: str, success_url: str, cancel_url: str) -> str:
        """Stripe's hosted payment page for a new Checkout Session of `pack_id`."""
        opened = await self._backends.billing.CreateCheckoutSession(
            billing_pb2.CreateCheckoutSessionRequest(
                tenant_id=tenant_id, pack_id=pack_id, success_url=success_url, cancel_url=cancel_url
            ),
            timeout=self._deadline,
        )
        return opened.url

    async def finance_may_buy(self, tenant_id: str) -> bool:
        """Whether the tenant's owner lets finance members buy credits."""
        settings = await self._backends.billing.GetConsoleSettings(
            billing_pb2.GetConsoleSettingsRequest(tenant_id=tenant_id), timeout=self._deadline
        )
        return settings.finance_may_buy_credits

    async def set_finance_may_buy(self, tenant_id: str, allowed: bool) -> bool:
        """Lets finance members buy credits (or not); answers the stored choice."""
        stored = await self._backends.billing.UpdateConsoleSettings(
            billing_pb2.ConsoleSettings(tenant_id=tenant_id, finance_may_buy_credits=allowed),
            timeout=self._deadline,
        )
        return stored.finance_may_buy_credits

    async def budgets(self, tenant_id: str) -> list[BudgetView]:
        """The tenant's budgets with their use this month (its own first)."""
        answer = await self._backends.billing.GetBudgets(
            billing_pb2.GetBudgetsRequest(tenant_id=tenant_id), timeout=self._deadline
        )
        return [BudgetView.from_proto(status) for status in answer.budgets]

    async def set_tenant_budget(self, tenant_id: str, monthly_credits: int | None) -> BudgetView:
        """Sets the tenant's monthly budget (None removes it); the console checked the owner."""
        request = billing_pb2.SetBudgetRequest(tenant_id=tenant_id, scope="tenant")
        if monthly_credits is not None:
            request.monthly_credits = monthly_credits
        return BudgetView.from_proto(await self._backends.billing.SetBudget(request, timeout=self._deadline))

    async def alerts(self, tenant_id: str) -> ConsoleAlerts:
        """The tenant's spend alert thresholds and which side of them it is on (the banner)."""
        answer = await self._backends.billing.GetAlertThresholds(
            billing_pb2.GetAlertThresholdsRequest(tenant_id=tenant_id), timeout=self._deadline
        )
        return ConsoleAlerts.from_proto(answer)

    async def set_alerts(
        self, tenant_id: str, low_balance_credits: int | None, budget_percent: int | None
    ) -> ConsoleAlerts:
        """Replaces the tenant's thresholds (None: that alert off); the console checked the owner."""
        request = AlertThresholdsView(
            low_balance_credits=low_balance_credits, budget_percent=budget_percent
        ).to_request(tenant_id)
        answer = await self._backends.billing.SetAlertThresholds(request, timeout=self._deadline)
        return ConsoleAlerts.from_proto(answer)

    async def debt(self, tenant_id: str) -> int:
        """What the tenant owes (refunded or disputed payments already spent, billing's ADR-134)."""
        balance = await self._backends.billing.GetBalance(
            billing_pb2.GetBalanceRequest(tenant_id=tenant_id), timeout=self._deadline
        )
        return balance.debt_credits

    async def auto_top_up(self, tenant_id: str) -> AutoTopUpView:
        """The tenant's automatic top-up and its latest purchases (billing's ADR-135)."""
        answer = await self._backends.billing.GetAutoTopUp(
            billing_pb2.GetAutoTopUpRequest(tenant_id=tenant_id), timeout=self._deadline
        )
        return AutoTopUpView.from_proto(answer)

    async def set_auto_top_up(self, tenant_id: str, update: AutoTopUpUpdate) -> AutoTopUpView:
        """Replaces the tenant's automatic top-up settings; the console checked the owner."""
        answer = await self._backends.billing.SetAutoTopUp(
            update_request(tenant_id, update), timeout=self._deadline
        )
        return AutoTopUpView.from_proto(answer)


@dataclass(frozen=True)
class ConsoleAlerts:
    """The thresholds as the credits page shows them, and the state its banner announces."""

    thresholds: AlertThresholdsView
    credits_low: bool
    # "tenant", "api_key:<id>", "project:<name>": the budgets at or over the percent this month.
    budgets_reached: tuple[str, ...]

    @classmethod
    def from_proto(cls, answer: billing_pb2.AlertThresholds) -> ConsoleAlerts:
        """The console's view of billing's AlertThresholds."""
        return cls(AlertThresholdsView.from_proto(answer), answer.credits_low, tuple(answer.budgets_reached))


def default_usage_period(today: date, days: int = 30) -> tuple[date, date]:
    """The last `days` UTC days up to and including today: [today - days + 1, tomorrow)."""
    return today - timedelta(days=days - 1), today + timedelta(days=1)
