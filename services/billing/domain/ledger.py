"""Double-entry rules: transfers, their business keys, and posting them as balanced entries.

A transfer moves a positive amount from a debit account to a credit account and is posted as two
entries that sum to zero. Tenant accounts (available, hold) keep a running balance, so their
entries carry `balance_after`; system accounts (revenue, grants) do not (their balance is the sum
of their entries), which keeps them from becoming one hot row that every capture must lock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from libs.errors import InvalidArgument

# The transfer keys are shared (libs/ledger_keys.py): the public transfer id other services put in
# webhooks and results lines is derived from them.
from libs.ledger_keys import settle_key as settle_key
from libs.ledger_keys import task_outcome_key as task_outcome_key
from libs.ledger_keys import topup_key as topup_key
from libs.ledger_keys import upfront_key as upfront_key

# The ledger's reasons are the shared vocabulary's (libs/vocabulary.py): the console filters by them.
from libs.vocabulary import RefType as RefType
from services.billing.domain.errors import BalanceLimitExceeded, LedgerInvariantViolated
from services.billing.domain.ids import BatchId, TaskId, TenantId

DEFAULT_PAGE_SIZE = 50
# The gateway publishes one page-size rule, 1..1000 for every list (ADR-093): no page is cut shorter.
MAX_PAGE_SIZE = 1000

# The largest number a PostgreSQL bigint holds: ledger ids, amounts and balances are bigints.
BIGINT_MAX = 2**63 - 1


class AccountKind(StrEnum):
    """Tenant accounts (`available`, per-batch `hold`) and system accounts (`revenue`, and the two
    sources of credits: `grants` for promotional top-ups, `payments` for paid credits)."""

    AVAILABLE = "available"
    HOLD = "hold"
    # What a tenant owes (a refunded or disputed payment already spent, ADR-134): debit-normal, its
    # balance is minus the debt, never above zero.
    DEBT = "debt"
    REVENUE = "revenue"
    GRANTS = "grants"
    PAYMENTS = "payments"


class OutcomeKind(StrEnum):
    """What a terminal task does to its reserved credits."""

    CAPTURE = "capture"
    REFUND = "refund"

    @property
    def ref_type(self) -> RefType:
        return RefType.BATCH_CAPTURE if self is OutcomeKind.CAPTURE else RefType.BATCH_REFUND


@dataclass(frozen=True)
class TaskOutcome:
    """A terminal task as billing sees it: capture its price or refund it."""

    batch_id: BatchId
    task_id: TaskId
    model: str
    kind: OutcomeKind
    # The price the batch service froze on the task (0 when unknown): it picks the hold line
    # when a batch froze several prices of one model (items of different durations).
    unit_price: int = 0
    # What the providers bill us for the task (US dollar micros) and for how many jobs, as its
    # outcome event reported it; None when it did not (ADR-144).
    provider_cost_usd_micros: int | None = None
    provider_jobs: int = 0

    @property
    def key(self) -> str:
        return task_outcome_key(self.task_id)


@dataclass(frozen=True)
class Transfer:
    """A movement of `amount` credits from `debit_account_id` to `credit_account_id`."""

    key: str
    ref_type: RefType
    ref_id: str
    tenant_id: TenantId
    batch_id: BatchId | None
    debit_account_id: int
    credit_account_id: int
    amount: int
    # The model of a task outcome (capture or refund), for per-model statements and margins.
    model: str | None = None

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise LedgerInvariantViolated(f"transfer {self.key} has non-positive amount {self.amount}")
        if self.debit_account_id == self.credit_account_id:
            raise LedgerInvariantViolated(f"transfer {self.key} moves money onto its own account")


@dataclass(frozen=True)
class LedgerEntry:
    """One side of a posted transfer: a signed amount on one account."""

    transfer_id: int
    account_id: int
    tenant_id: TenantId
    batch_id: BatchId | None
    ref_type: RefType
    ref_id: str
    amount: int
    # None on system accounts, which keep no running balance.
    balance_after: int | None


@dataclass(frozen=True)
class Posting:
    """Entries of a set of transfers, and the closing balances of the tracked accounts."""

    entries: tuple[LedgerEntry, ...]
    balances: dict[int, int]


def post_transfers(
    transfers: Iterable[tuple[int, Transfer]],
    opening_balances: Mapping[int, int],
    debit_normal: Collection[int] = (),
) -> Posting:
    """Posts `(transfer_id, transfer)` pairs in id order as two entries each.

    `opening_balances` holds the current balance of every tracked account the transfers touch
    (tenant accounts); an account absent from it is a system account without a running balance.
    A tracked balance never goes negative, except a `debit_normal` one (a tenant's debt), which
    never goes above zero: either would be a bug upstream (the database refuses it too).
    """
    balances = dict(opening_balances)
    entries: list[LedgerEntry] = []
    for transfer_id, transfer in sorted(transfers, key=lambda pair: pair[0]):
        for account_id, amount in (
            (transfer.debit_account_id, -transfer.amount),
            (transfer.credit_account_id, transfer.amount),
        ):
            balance_after: int | None = None
            if account_id in balances:
                balance_after = balances[account_id] + amount
                if (balance_after > 0) if account_id in debit_normal else (balance_after < 0):
                    raise LedgerInvariantViolated(f"account {account_id} would cross zero by {transfer.key}")
                balances[account_id] = balance_after
            entries.append(
                LedgerEntry(
                    transfer_id=transfer_id,
                    account_id=account_id,
                    tenant_id=transfer.tenant_id,
                    batch_id=transfer.batch_id,
                    ref_type=transfer.ref_type,
                    ref_id=transfer.ref_id,
                    amount=amount,
                    balance_after=balance_after,
                )
            )
    return Posting(entries=tuple(entries), balances=balances)


def tracked_accounts(transfers: Iterable[Transfer], system_account_ids: Iterable[int]) -> list[int]:
    """The tenant accounts touched by `transfers`, in ascending id (the deadlock-free lock order)."""
    system = set(system_account_ids)
    touched: set[int] = set()
    for transfer in transfers:
        touched.update((transfer.debit_account_id, transfer.credit_account_id))
    return sorted(touched - system)


@dataclass(frozen=True)
class StatementLine:
    """One change of a tenant's available balance, as the customer's ledger shows it."""

    entry_id: int
    ref_type: RefType
    ref_id: str
    batch_id: BatchId | None
    credits_delta: int
    balance_after: int
    created_at: datetime
    # The task's model on a refund line; None on other lines.
    model: str | None = None
    # The transfer's public id (libs.ledger_keys.transfer_id of its key): a task's receipt.
    ledger_transfer_id: str = ""


@dataclass(frozen=True)
class LedgerFilter:
    """Which of a tenant's ledger lines to list: all of them by default."""

    batch_id: BatchId | None = None
    ref_type: RefType | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


# Ref types of a tenant's available balance (captures move held credits, never available ones).
AVAILABLE_REF_TYPES = frozenset(
    {
        RefType.TOPUP,
        RefType.PURCHASE,
        RefType.BATCH_UPFRONT,
        RefType.BATCH_REFUND,
        RefType.BATCH_SETTLE,
        RefType.PAYMENT_REVERSAL,
        RefType.DEBT_PAYMENT,
        RefType.PAYMENT_REINSTATED,
    }
)


def parse_ledger_ref_type(value: str) -> RefType | None:
    """A ledger filter's ref type ("" for any); InvalidArgument for one the ledger never shows."""
    if not value:
        return None
    if value not in {ref_type.value for ref_type in AVAILABLE_REF_TYPES}:
        raise InvalidArgument(
            f"ref_type must be one of {sorted(ref_type.value for ref_type in AVAILABLE_REF_TYPES)}",
            field="ref_type",
        )
    return RefType(value)


@dataclass(frozen=True)
class StatementPage:
    """A page of statement lines, newest first, and the cursor of the next page ("" at the end)."""

    lines: tuple[StatementLine, ...]
    next_cursor: str


def page_size(limit: int) -> int:
    """The page size for a requested limit: 0 means the default; at most MAX_PAGE_SIZE."""
    if limit == 0:
        return DEFAULT_PAGE_SIZE
    if limit < 0 or limit > MAX_PAGE_SIZE:
        raise InvalidArgument(f"limit must be between 1 and {MAX_PAGE_SIZE}", field="limit")
    return limit


def parse_cursor(cursor: str) -> int | None:
    """The entry id a page continues before (None for the first page); opaque to callers."""
    if not cursor:
        return None
    # Ids are bigints: a larger number is no position of ours (and PostgreSQL would refuse it).
    if not cursor.isascii() or not cursor.isdigit() or not 0 < int(cursor) <= BIGINT_MAX:
        raise InvalidArgument("invalid cursor", field="cursor")
    return int(cursor)


def ensure_room_for_credit(available: int, held: int, credits: int) -> None:
    """Refuses a top-up or payment that would take what a tenant owns past what a balance holds.

    Held credits count as well: any of them may come back to `available` as a refund, which must
    never overflow (nor be refused, being money the tenant already owns).
    """
    if available + held + credits > BIGINT_MAX:
        raise BalanceLimitExceeded(credits, BIGINT_MAX - available - held)


def statement_page(lines_plus_one: Sequence[StatementLine], size: int) -> StatementPage:
    """A page from a query that fetched one line more than `size` to know whether more follow."""
    lines = tuple(lines_plus_one[:size])
    more = len(lines_plus_one) > size
    return StatementPage(lines=lines, next_cursor=str(lines[-1].entry_id) if more and lines else "")
