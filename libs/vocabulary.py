"""The words every service and page uses for a batch's life: task and batch statuses, settlement
statuses, failure types, whose fault a failure was, which failures are retried, and why money
moved on the ledger.

One home (issue 23): the batch domain records these values, the gateway validates, documents and
filters by them, the operator dashboard and the customer console show them. The values are the
wire format of the contracts (`batch.proto` carries them as strings), so a member's value never
changes; add members, never rename them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any, Literal


class TaskStatus(StrEnum):
    """Life of a task: queued -> running -> succeeded | failed, or queued -> cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Succeeded, failed or cancelled: the task will not change again."""
        return self in TERMINAL_TASK_STATUSES


TERMINAL_TASK_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})
PENDING_TASK_STATUSES = frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING})


class BatchStatus(StrEnum):
    """Life of a batch: reserving -> queued -> processing -> a final status (or rejected)."""

    RESERVING = "reserving"
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


# Not finished and not rejected: what still occupies a tenant's concurrency.
OPEN_BATCH_STATUSES = frozenset({BatchStatus.RESERVING, BatchStatus.QUEUED, BatchStatus.PROCESSING})


class SettlementStatus(StrEnum):
    """What billing did with a batch's hold: `pending` until settled, then `settled` (nothing
    returned) or `refunded` (some credits returned)."""

    PENDING = "pending"
    SETTLED = "settled"
    REFUNDED = "refunded"


class FailureType(StrEnum):
    """Why a task failed; recorded on the task and in its TaskFailed event."""

    TIMEOUT = "timeout"
    PROVIDER_ERROR = "provider_error"
    RATE_LIMITED = "rate_limited"
    CONTENT_POLICY = "content_policy"
    INVALID_INPUT = "invalid_input"
    CANCELLED = "cancelled"
    INTERNAL = "internal"


# Worth another attempt of the same task; the others fail the task at once.
TRANSIENT_FAILURES = frozenset({FailureType.TIMEOUT, FailureType.PROVIDER_ERROR, FailureType.RATE_LIMITED})
# retry-failed (ADR-048): a cancelled item is never retried (the customer stopped it); the same
# prompt is refused again for content policy or invalid input, so those are retried only on request.
RETRYABLE_FAILURES = frozenset(FailureType) - {FailureType.CANCELLED}
INPUT_FAILURES = frozenset({FailureType.CONTENT_POLICY, FailureType.INVALID_INPUT})
DEFAULT_RETRIED_FAILURES = RETRYABLE_FAILURES - INPUT_FAILURES


class Fault(StrEnum):
    """Whose fault a failure was (every failed or cancelled task is refunded all the same)."""

    PROVIDER = "provider"
    CUSTOMER_INPUT = "customer_input"
    US = "us"
    CANCELLED = "cancelled"


FAULT_BY_FAILURE_TYPE: Mapping[FailureType, Fault] = {
    FailureType.TIMEOUT: Fault.PROVIDER,
    FailureType.PROVIDER_ERROR: Fault.PROVIDER,
    FailureType.RATE_LIMITED: Fault.PROVIDER,
    FailureType.CONTENT_POLICY: Fault.CUSTOMER_INPUT,
    FailureType.INVALID_INPUT: Fault.CUSTOMER_INPUT,
    FailureType.INTERNAL: Fault.US,
    FailureType.CANCELLED: Fault.CANCELLED,
}


class RefType(StrEnum):
    """Why money moved on billing's ledger (a transfer's `ref_type`); shown to customers."""

    TOPUP = "topup"
    # Paid credits: a pack or an invoice, moved from the `payments` source account.
    PURCHASE = "purchase"
    BATCH_UPFRONT = "batch_upfront"
    # A succeeded item's price, from the batch's hold to revenue (never on the available account).
    BATCH_CAPTURE = "batch_capture"
    BATCH_REFUND = "batch_refund"
    BATCH_SETTLE = "batch_settle"
    # A refunded or disputed payment takes back what it bought (ADR-134): from available to the
    # `payments` source, and what was already spent from the tenant's `debt` account.
    PAYMENT_REVERSAL = "payment_reversal"
    # Credits that pay a recorded debt back, from available to the `debt` account (ADR-134).
    DEBT_PAYMENT = "debt_payment"
    # A dispute won: the credits taken back return, to the debt first, then to available.
    PAYMENT_REINSTATED = "payment_reinstated"


def fault_of(failure_type: str) -> Fault:
    """Whose fault a failure of this type was; a type this code does not know is ours (`us`)."""
    try:
        return FAULT_BY_FAILURE_TYPE[FailureType(failure_type)]
    except ValueError:
        return Fault.US


def values_of(members: type[StrEnum] | Collection[StrEnum]) -> tuple[str, ...]:
    """The values of a vocabulary, or of a set of its members, in the vocabulary's order."""
    chosen = list(members)
    if not chosen:
        return ()
    return tuple(member.value for member in type(chosen[0]) if member in chosen)


def listed(members: type[StrEnum] | Collection[StrEnum]) -> str:
    """The values for a description, in the vocabulary's order: "a, b or c"."""
    values = values_of(members)
    return f"{', '.join(values[:-1])} or {values[-1]}" if len(values) > 1 else "".join(values)


def one_of(members: type[StrEnum] | Collection[StrEnum]) -> Any:
    """`Literal[...]` of the values (in the vocabulary's order), for pydantic and FastAPI.

    The REST contract validates these as plain strings: its 422 says `literal_error` and its
    document lists the values inline, as it did before they moved here. Annotate with it under
    `if not TYPE_CHECKING` (a type checker cannot read a computed Literal) and with `str` otherwise.
    """
    return Literal[values_of(members)]


__all__ = [
    "DEFAULT_RETRIED_FAILURES",
    "FAULT_BY_FAILURE_TYPE",
    "INPUT_FAILURES",
    "OPEN_BATCH_STATUSES",
    "PENDING_TASK_STATUSES",
    "RETRYABLE_FAILURES",
    "TERMINAL_TASK_STATUSES",
    "TRANSIENT_FAILURES",
    "BatchStatus",
    "FailureType",
    "Fault",
    "SettlementStatus",
    "TaskStatus",
    "fault_of",
    "listed",
    "one_of",
    "values_of",
]
