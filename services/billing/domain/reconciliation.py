"""Reconciliation: invariants I1-I3 checked over audit figures read from the ledger.

The repository reads the figures (sums, counts, balances); these rules decide what is wrong and
say it in words a finance person can act on. Every discrepancy names its invariant and subject.

A run is incremental (ADR-159): it reads what moved since the last clean run's checkpoint (entries
and transfers created since its cutoff, the accounts and monthly totals they touch, the holds
pending or settled since, the rows amended since) against the figures the checkpoint verified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import AccountKind, RefType

# Batches in these states never froze credits, so billing holds nothing for them.
UNRESERVED_BATCH_STATUSES = frozenset({"rejected", "reserving"})
TRACKED_ACCOUNT_KINDS = frozenset({AccountKind.AVAILABLE, AccountKind.HOLD, AccountKind.DEBT})


@dataclass(frozen=True)
class Discrepancy:
    """One broken invariant."""

    invariant: str
    subject: str
    message: str


@dataclass(frozen=True)
class TransferAudit:
    """A transfer and what its entries add up to."""

    transfer_id: int
    key: str
    entry_count: int
    entries_sum: int


@dataclass(frozen=True)
class AccountAudit:
    """An account's stored balance against its entries."""

    account_id: int
    kind: AccountKind
    tenant_id: TenantId | None
    balance: int
    entries_sum: int
    last_balance_after: int | None


@dataclass(frozen=True)
class EffectCount:
    """How many transfers carry one business effect (ref_type, ref_id)."""

    ref_type: RefType
    ref_id: str
    count: int


@dataclass(frozen=True)
class HoldAudit:
    """A batch hold's counters against the transfers recorded for the batch."""

    batch_id: BatchId
    tenant_id: TenantId
    settlement_status: str
    frozen: int
    captured: int
    refunded: int
    released: int
    held: int
    transferred: Mapping[RefType, int]


@dataclass(frozen=True)
class BatchOutcomeTotals:
    """The batch service's view of one batch: what its tasks' outcomes are worth."""

    batch_id: BatchId
    status: str
    settlement_status: str
    total_count: int
    terminal_count: int
    succeeded_credits: int
    refundable_credits: int


@dataclass(frozen=True)
class SummaryDrift:
    """A monthly total (ADR-152) that differs from the entries or transfers it summarizes."""

    subject: str
    stored: int
    recorded: int


@dataclass(frozen=True)
class LedgerAudit:
    """Everything reconciliation looks at (transfers, effects, totals: only suspicious ones), read
    from the checkpoint's cutoff `since` on (None: a full run, every row since the first)."""

    ledger_sum: int
    transfers: Sequence[TransferAudit]
    accounts: Sequence[AccountAudit]
    repeated_effects: Sequence[EffectCount]
    holds: Sequence[HoldAudit]
    summary_drift: Sequence[SummaryDrift] = ()
    since: datetime | None = None
    # What the run read: entries and transfers created since, and rows amended since.
    entries_read: int = 0
    transfers_read: int = 0
    amendments_read: int = 0


# A checkpoint's cutoff is this long before the clean run that records it started: rows carry
# their transaction's start time, and a transaction that began before the cutoff has committed
# by then, so no row older than the cutoff can appear after it (the next run reads from it on).
CHECKPOINT_GRACE = timedelta(hours=1)


def checkpoint_cutoff(started_at: datetime) -> datetime:
    """The cutoff a clean run that started at `started_at` (database time) checkpoints."""
    return started_at - CHECKPOINT_GRACE


def find_discrepancies(
    audit: LedgerAudit,
    batch_totals: Mapping[BatchId, BatchOutcomeTotals] | None,
    *,
    reserved_since: Set[BatchId] = frozenset(),
) -> list[Discrepancy]:
    """Every violation of I1-I3 in `audit`; `batch_totals` adds the cross-check against tasks.

    `reserved_since` are batches with a hold the audit did not read (appeared after it, or
    settled before the checkpoint): not missing.
    """
    found: list[Discrepancy] = []
    if audit.ledger_sum != 0:
        window = "entries" if audit.since is None else f"entries since {audit.since:%Y-%m-%d %H:%M}"
        found.append(Discrepancy("I2", "ledger", f"{window} sum to {audit.ledger_sum}, not 0"))
    found += [
        Discrepancy("I2", drift.subject, f"monthly total {drift.stored} != its ledger rows' {drift.recorded}")
        for drift in audit.summary_drift
    ]
    found += _transfer_discrepancies(audit.transfers)
    found += _account_discrepancies(audit.accounts)
    found += [
        Discrepancy("I3", f"{effect.ref_type.value} {effect.ref_id}", f"applied {effect.count} times")
        for effect in audit.repeated_effects
        if effect.count > 1
    ]
    for hold in audit.holds:
        found += _hold_discrepancies(hold)
    if batch_totals is not None:
        found += _cross_check(audit.holds, batch_totals, reserved_since)
    return found


def _transfer_discrepancies(transfers: Iterable[TransferAudit]) -> list[Discrepancy]:
    return [
        Discrepancy(
            "I2",
            f"transfer {transfer.key}",
            f"has {transfer.entry_count} entries summing to {transfer.entries_sum} (expected 2 summing to 0)",
        )
        for transfer in transfers
        if transfer.entry_count != 2 or transfer.entries_sum != 0
    ]


def _account_discrepancies(accounts: Iterable[AccountAudit]) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    for account in accounts:
        if account.kind not in TRACKED_ACCOUNT_KINDS:
            continue
        subject = f"{account.kind.value} account {account.account_id}"
        if account.tenant_id is not None:
            subject += f" of tenant {account.tenant_id}"
        if account.balance != account.entries_sum:
            found.append(
                Discrepancy(
                    "I2", subject, f"balance {account.balance} != sum of entries {account.entries_sum}"
                )
            )
        if account.kind is AccountKind.DEBT:
            # Debit-normal (ADR-134): minus what the tenant owes, never above zero.
            if account.balance > 0:
                found.append(Discrepancy("I10", subject, f"debt account is positive ({account.balance})"))
        elif account.balance < 0:
            found.append(Discrepancy("I2", subject, f"balance is negative ({account.balance})"))
        if account.last_balance_after is not None and account.last_balance_after != account.balance:
            found.append(
                Discrepancy(
                    "I2",
                    subject,
                    f"last entry's balance_after {account.last_balance_after} != balance {account.balance}",
                )
            )
    return found


def _hold_discrepancies(hold: HoldAudit) -> list[Discrepancy]:
    subject = f"batch {hold.batch_id}"
    found: list[Discrepancy] = []
    accounted = hold.captured + hold.refunded + hold.released + hold.held
    if hold.frozen != accounted:
        found.append(
            Discrepancy(
                "I1",
                subject,
                f"frozen {hold.frozen} != captured {hold.captured} + refunded {hold.refunded}"
                f" + released {hold.released} + held {hold.held}",
            )
        )
    counters = (
        (RefType.BATCH_UPFRONT, "frozen", hold.frozen),
        (RefType.BATCH_CAPTURE, "captured", hold.captured),
        (RefType.BATCH_REFUND, "refunded", hold.refunded),
        (RefType.BATCH_SETTLE, "released", hold.released),
    )
    for ref_type, name, counter in counters:
        moved = hold.transferred.get(ref_type, 0)
        if moved != counter:
            found.append(
                Discrepancy("I1", subject, f"{name} {counter} but {ref_type.value} transfers total {moved}")
            )
    if hold.settlement_status != "pending" and hold.held != 0:
        found.append(
            Discrepancy("I1", subject, f"settled ({hold.settlement_status}) but still holds {hold.held}")
        )
    return found


def _cross_check(
    holds: Sequence[HoldAudit],
    batch_totals: Mapping[BatchId, BatchOutcomeTotals],
    reserved_since: Set[BatchId],
) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    holds_by_batch = {hold.batch_id: hold for hold in holds}
    for batch_id, totals in batch_totals.items():
        if totals.status in UNRESERVED_BATCH_STATUSES:
            continue
        if batch_id not in holds_by_batch and batch_id not in reserved_since:
            found.append(
                Discrepancy(
                    "I1", f"batch {batch_id}", f"accepted ({totals.status}) but billing holds nothing"
                )
            )
    for hold in holds:
        subject = f"batch {hold.batch_id}"
        outcome = batch_totals.get(hold.batch_id)
        if outcome is None:
            found.append(
                Discrepancy(
                    "I1", subject, "billing holds credits for a batch the batch service does not know"
                )
            )
            continue
        # A batch still settling moves money as outcomes arrive; only a settled one must match.
        if hold.settlement_status == "pending":
            continue
        if hold.captured != outcome.succeeded_credits:
            found.append(
                Discrepancy(
                    "I1",
                    subject,
                    f"captured {hold.captured}, but succeeded tasks cost {outcome.succeeded_credits}",
                )
            )
        if hold.refunded + hold.released != outcome.refundable_credits:
            found.append(
                Discrepancy(
                    "I1",
                    subject,
                    f"refunded {hold.refunded} + released {hold.released},"
                    f" but failed and cancelled tasks cost {outcome.refundable_credits}",
                )
            )
        if outcome.settlement_status != "pending" and outcome.settlement_status != hold.settlement_status:
            found.append(
                Discrepancy(
                    "I1",
                    subject,
                    f"settlement {hold.settlement_status} in billing, {outcome.settlement_status} in batch",
                )
            )
    return found
