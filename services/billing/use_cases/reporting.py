"""Reporting use cases: ledger pages, monthly statements, finance pages, margins, exports, reconciliation.

Read-only: nothing here moves credits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from services.billing.adapters.sql.audit import Amended
from services.billing.domain.errors import SettlementNotFound
from services.billing.domain.finance import (
    EXPORT_MESSAGE_ROWS,
    BatchLedgerTotals,
    BatchTransferLine,
    ExportRow,
    TenantSummary,
    export_page_rows,
)
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import (
    LedgerFilter,
    RefType,
    StatementPage,
    page_size,
    parse_cursor,
    statement_page,
)
from services.billing.domain.margins import (
    BatchMargin,
    MarginEstimate,
    MarginReport,
    batch_margin,
    margin_report,
    with_reported_spend,
)
from services.billing.domain.pricing import estimate_margin
from services.billing.domain.reconciliation import Discrepancy, checkpoint_cutoff, find_discrepancies
from services.billing.domain.statements import Month, Statement, build_statement
from services.billing.use_cases.dependencies import Dependencies
from services.billing.use_cases.tenants import available_account


@dataclass(frozen=True)
class ReconciliationReport:
    """Every discrepancy found, and how much was looked at (since the checkpoint `read_since`;
    None: a full run)."""

    discrepancies: list[Discrepancy]
    accounts_checked: int
    batches_checked: int
    read_since: datetime | None = None
    entries_read: int = 0
    transfers_read: int = 0
    amendments_read: int = 0
    checkpointed: bool = False


@dataclass(frozen=True)
class BatchLedgerPage:
    """A batch's totals and one page of its transfers ("" cursor on the last page)."""

    totals: BatchLedgerTotals
    transfers: list[BatchTransferLine]
    next_cursor: str


async def list_ledger_entries(
    deps: Dependencies,
    tenant_id: TenantId,
    batch_id: BatchId | None,
    cursor: str,
    limit: int,
    only: LedgerFilter | None = None,
) -> StatementPage:
    """The tenant's available-balance changes, newest first (those `only` selects, and of `batch_id`)."""
    size = page_size(limit)
    before = parse_cursor(cursor)
    selection = replace(only or LedgerFilter(), batch_id=batch_id)
    async with deps.repository.transaction() as tx:
        await available_account(tx, tenant_id)
        lines = await tx.reporting.statement(tenant_id, selection, before, size + 1)
    return statement_page(lines, size)


async def monthly_statement(deps: Dependencies, tenant_id: TenantId, month: Month) -> Statement:
    """The tenant's available balance over one UTC month, derived from its ledger entries."""
    async with deps.repository.transaction() as tx:
        available = await available_account(tx, tenant_id)
        before, during = await tx.reporting.available_movements(available.id, month.start, month.end)
        models = await tx.reporting.model_usage(tenant_id, month.start, month.end)
        closing_debt = await tx.reversals.debt_at(tenant_id, month.end)
    opening = sum(before.values())
    # Paid credits net of what went back (reversals, debts paid) and came back (disputes won).
    paid_types = (
        RefType.PURCHASE,
        RefType.PAYMENT_REVERSAL,
        RefType.DEBT_PAYMENT,
        RefType.PAYMENT_REINSTATED,
    )
    return build_statement(
        month,
        opening_balance=opening,
        movements=during,
        closing_balance=opening + sum(during.values()),
        lifetime_purchased=sum(before.get(t, 0) + during.get(t, 0) for t in paid_types),
        lifetime_granted=before.get(RefType.TOPUP, 0) + during.get(RefType.TOPUP, 0),
        models=models,
        closing_debt=closing_debt,
    )


async def monthly_margins(deps: Dependencies, month: Month) -> MarginReport:
    """Revenue of the month's captures against the provider spend task outcomes reported in it
    (the frozen estimate for captures that reported none, ADR-144)."""
    async with deps.repository.transaction() as tx:
        volumes = await tx.reporting.captured_volumes(month.start, month.end)
        spend = await tx.provider_spend.per_model_within(month.start, month.end)
    return margin_report(with_reported_spend(volumes, spend), deps.credit_value_usd_micros)


async def batch_real_margin(deps: Dependencies, batch_id: BatchId) -> BatchMargin:
    """A batch's captures against the provider spend its task outcomes reported (ADR-144)."""
    async with deps.repository.transaction() as tx:
        captured, reported, estimated = await tx.provider_spend.of_batch(batch_id)
    return batch_margin(captured, reported, estimated, deps.credit_value_usd_micros)


def estimate_delivered_margin(deps: Dependencies, delivered: Mapping[str, int]) -> MarginEstimate:
    """Revenue, provider cost and margin of `{model: videos delivered}` at today's prices."""
    return estimate_margin(delivered, deps.prices, deps.credit_value_usd_micros)


async def list_tenants(deps: Dependencies, cursor: str, limit: int) -> tuple[list[TenantSummary], str]:
    """Tenants with their balances, oldest first, and the next cursor ("" on the last page)."""
    size = page_size(limit)
    async with deps.repository.transaction() as tx:
        found = await tx.reporting.tenant_summaries(parse_cursor(cursor), size + 1)
    if len(found) <= size:
        return found, ""
    return found[:size], str(found[size - 1].position)


async def batch_ledger(deps: Dependencies, batch_id: BatchId, cursor: str, limit: int) -> BatchLedgerPage:
    """Totals of a batch's transfers (always whole) and one page of them in order."""
    size = page_size(limit)
    async with deps.repository.transaction() as tx:
        totals = await tx.reporting.batch_ledger_totals(batch_id)
        if totals is None:
            raise SettlementNotFound(batch_id)
        lines = await tx.reporting.batch_transfers(batch_id, parse_cursor(cursor), size + 1)
    more = len(lines) > size
    lines = lines[:size]
    return BatchLedgerPage(totals, lines, str(lines[-1].transfer_id) if more and lines else "")


async def reconcile(deps: Dependencies) -> ReconciliationReport:
    """Checks I1-I3 over what moved since the last checkpoint (ADR-159), and against the batch
    service's outcomes of the batches it touches when wired; a clean run checkpoints."""
    async with deps.repository.transaction() as tx:
        started_at, since = await tx.audit.start()
        amended = await tx.audit.amended_since(since) if since is not None else Amended()
        audit = await tx.audit.ledger_audit(since, amended)
    # Read after the audit: a hold settled in the audit had all its tasks terminal before, so
    # the totals read now are final for it. Holds still pending are not compared.
    totals = None
    if deps.totals_source is not None:
        if since is None:
            totals = await deps.totals_source.batch_totals()
        else:
            # The batches whose hold the audit read, and those accepted since: a batch accepted
            # before the checkpoint had its hold when the checkpointing run asked.
            held = [hold.batch_id for hold in audit.holds]
            totals = await deps.totals_source.batch_totals(held, created_from=since)
    reserved_since: frozenset[BatchId] = frozenset()
    if totals is not None:
        audited = {hold.batch_id for hold in audit.holds}
        unheld = [batch_id for batch_id in totals if batch_id not in audited]
        if unheld:
            # Batches accepted while the audit ran have their hold by now; those settled before
            # the checkpoint had theirs then.
            async with deps.repository.transaction() as tx:
                reserved_since = frozenset(await tx.reporting.existing_holds(unheld))
    discrepancies = find_discrepancies(audit, totals, reserved_since=reserved_since)
    checkpointed = False
    if not discrepancies:
        async with deps.repository.transaction() as tx:
            checkpointed = await tx.checkpoints.record(
                since,
                checkpoint_cutoff(started_at),
                amended,
                entries=audit.entries_read,
                transfers=audit.transfers_read,
            )
    return ReconciliationReport(
        discrepancies=discrepancies,
        accounts_checked=len(audit.accounts),
        batches_checked=len(audit.holds),
        read_since=since,
        entries_read=audit.entries_read,
        transfers_read=audit.transfers_read,
        amendments_read=audit.amendments_read,
        checkpointed=checkpointed,
    )


async def export_ledger(
    deps: Dependencies, tenant_id: TenantId | None, created_from: datetime | None, created_to: datetime | None
) -> AsyncIterator[list[ExportRow]]:
    """Ledger entries in id order, in pages of at most `EXPORT_MESSAGE_ROWS` (never empty), read
    page by page (one short transaction each)."""
    if tenant_id is not None:
        async with deps.repository.transaction() as tx:
            await available_account(tx, tenant_id)
    after = 0
    while True:
        limit = export_page_rows(after)
        async with deps.repository.transaction() as tx:
            rows = await tx.reporting.export_rows(tenant_id, created_from, created_to, after, limit)
        for start in range(0, len(rows), EXPORT_MESSAGE_ROWS):
            yield rows[start : start + EXPORT_MESSAGE_ROWS]
        if len(rows) < limit:
            return
        after = rows[-1].entry_id
