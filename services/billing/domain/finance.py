"""What finance reads: tenants with balances, a batch's transfers and totals, ledger export rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import AccountKind, RefType

# The export reads this many entries per query, so memory stays flat for any date range...
EXPORT_PAGE_ROWS = 5_000
# ...after a first page this small, so its first line leaves at once (ADR-154: 5,000 rows took
# ~0.7 s to read, convert and send before the first byte).
FIRST_EXPORT_PAGE_ROWS = 100
# ...and sends at most this many to a stream message (ADR-169): a message of 1,000 entries is about
# 250 kB, far below gRPC's 4 MB limit, and costs one message's overhead instead of 1,000.
EXPORT_MESSAGE_ROWS = 1_000


def export_page_rows(after_entry_id: int) -> int:
    """How many entries the export's next query reads: few for the first page, then full pages."""
    return FIRST_EXPORT_PAGE_ROWS if after_entry_id == 0 else EXPORT_PAGE_ROWS


@dataclass(frozen=True)
class TenantSummary:
    """A tenant and its balances; `position` (its available account id) orders the list."""

    position: int
    tenant_id: TenantId
    name: str
    available_credits: int
    held_credits: int
    created_at: datetime


@dataclass(frozen=True)
class BatchTransferLine:
    """One movement of a batch's credits."""

    transfer_id: int
    ref_type: RefType
    ref_id: str
    amount: int
    from_account: AccountKind
    to_account: AccountKind
    created_at: datetime
    # The public id (libs.ledger_keys.transfer_id of the transfer's key), as webhooks name it.
    ledger_transfer_id: str

    @property
    def available_delta(self) -> int:
        """Change of the tenant's available balance (captures leave it untouched)."""
        if self.to_account is AccountKind.AVAILABLE:
            return self.amount
        if self.from_account is AccountKind.AVAILABLE:
            return -self.amount
        return 0


@dataclass(frozen=True)
class BatchLedgerTotals:
    """What a batch's transfers add up to, per kind of movement."""

    batch_id: BatchId
    tenant_id: TenantId
    settlement_status: str
    held_credits: int
    by_ref_type: Mapping[RefType, int]

    @property
    def upfront_total(self) -> int:
        return self.by_ref_type.get(RefType.BATCH_UPFRONT, 0)

    @property
    def capture_total(self) -> int:
        return self.by_ref_type.get(RefType.BATCH_CAPTURE, 0)

    @property
    def refund_total(self) -> int:
        return self.by_ref_type.get(RefType.BATCH_REFUND, 0)

    @property
    def release_total(self) -> int:
        return self.by_ref_type.get(RefType.BATCH_SETTLE, 0)

    @property
    def net_spent(self) -> int:
        """What the customer paid for the batch: the freeze less everything given back."""
        return self.upfront_total - self.refund_total - self.release_total


@dataclass(frozen=True)
class ExportRow:
    """One ledger entry as exported (balance_after is None on system accounts)."""

    entry_id: int
    transfer_id: int
    created_at: datetime
    tenant_id: TenantId | None
    account: AccountKind
    batch_id: BatchId | None
    ref_type: RefType
    ref_id: str
    amount: int
    balance_after: int | None
    # The transfer's public id (libs.ledger_keys.transfer_id of its key).
    ledger_transfer_id: str
