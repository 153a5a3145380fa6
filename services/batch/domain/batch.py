"""Batches and tasks: statuses, the final-status rule, counters and the create response."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple, NewType

from libs.errors import InvalidArgument

# The statuses are the shared vocabulary's (libs/vocabulary.py), named here for the batch domain.
from libs.vocabulary import PENDING_TASK_STATUSES as PENDING_TASK_STATUSES
from libs.vocabulary import TERMINAL_TASK_STATUSES as TERMINAL_TASK_STATUSES
from libs.vocabulary import BatchStatus as BatchStatus
from libs.vocabulary import SettlementStatus as SettlementStatus
from libs.vocabulary import TaskStatus as TaskStatus
from services.batch.domain.errors import BatchNotFound
from services.batch.domain.generation import NO_SETTINGS, GenerationSettings

BatchId = NewType("BatchId", uuid.UUID)
TaskId = NewType("TaskId", uuid.UUID)
TenantId = NewType("TenantId", uuid.UUID)


# A client's labels of an item or a batch: string pairs, in the order given (hashable, immutable).
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class BatchItem:
    """One requested video; `duration_seconds` only for a model priced per second (0: its default).

    `custom_id` and `metadata` are the client's own id and labels, stored and echoed, never
    interpreted ("" and () for none).
    """

    prompt: str
    model: str
    duration_seconds: int = 0
    custom_id: str = ""
    metadata: Metadata = ()
    # What else the item sets (aspect ratio, resolution, input images...); most items none.
    settings: GenerationSettings = NO_SETTINGS


@dataclass(frozen=True)
class TaskCounts:
    """Tasks of one batch by status, and the credits they represent (kept on the batch row,
    counted when the tasks finish: `outcome_counts`)."""

    total: int
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    credits_spent: int = 0
    refunded_credits: int = 0

    @property
    def pending(self) -> int:
        return self.total - self.succeeded - self.failed - self.cancelled

    @property
    def all_terminal(self) -> bool:
        return self.pending == 0


def outcome_counts(finished: Iterable[TaskRecord]) -> dict[BatchId, TaskCounts]:
    """What tasks just finished add to their batches' counters (`total` is 0: a change, not a
    batch), by batch. Each task counts once: it reaches a terminal status once."""
    added: dict[BatchId, list[int]] = {}
    for task in finished:
        counters = added.setdefault(task.batch_id, [0, 0, 0, 0, 0])
        if task.status is TaskStatus.SUCCEEDED:
            counters[0] += 1
            counters[3] += task.unit_price
        elif task.status is TaskStatus.FAILED:
            counters[1] += 1
            counters[4] += task.unit_price
        elif task.status is TaskStatus.CANCELLED:
            counters[2] += 1
            counters[4] += task.unit_price
        else:
            raise ValueError(f"task {task.id} is {task.status.value}, not finished")
    return {batch_id: TaskCounts(0, *counters) for batch_id, counters in added.items()}


def final_status(counts: TaskCounts, cancel_requested: bool) -> BatchStatus:
    """The status of a batch whose tasks are all terminal.

    completed: every task succeeded; cancelled: the customer cancelled and at least one task was
    cancelled; failed: nothing succeeded; partial: anything else.
    """
    if not counts.all_terminal:
        raise ValueError(f"batch still has {counts.pending} pending tasks")
    if counts.succeeded == counts.total:
        return BatchStatus.COMPLETED
    if cancel_requested and counts.cancelled > 0:
        return BatchStatus.CANCELLED
    if counts.succeeded == 0:
        return BatchStatus.FAILED
    return BatchStatus.PARTIAL


class RejectionReason(StrEnum):
    """Why a batch was rejected before anything was frozen for it."""

    INSUFFICIENT_CREDITS = "insufficient_credits"
    # A model of the batch left the price list between its quote and its reservation.
    MODEL_UNAVAILABLE = "model_unavailable"
    # A monthly budget (the tenant's, its key's, its project's) would be exceeded (issue 29).
    BUDGET_EXCEEDED = "budget_exceeded"
    # The tenant owes credits: a refunded or disputed payment already spent (billing's ADR-134).
    DEBT_OUTSTANDING = "debt_outstanding"
    # The cited quote was used by another batch, or expired, between the check and the freeze.
    QUOTE_USED = "quote_used"
    QUOTE_EXPIRED = "quote_expired"
    QUOTE_MISMATCH = "quote_mismatch"
    QUOTE_NOT_FOUND = "quote_not_found"


@dataclass(frozen=True)
class BatchRecord:
    """A batch as stored."""

    id: BatchId
    tenant_id: TenantId
    request_id: str | None
    request_fingerprint: str
    status: BatchStatus
    total_count: int
    required_credits: int
    cost_per_video: int | None
    available_snapshot: int | None
    frozen_credits: int
    rejected_required: int | None
    rejected_available: int | None
    cancel_requested: bool
    settlement_status: SettlementStatus
    webhook_url: str | None
    created_at: datetime
    queued_at: datetime | None
    finished_at: datetime | None
    settled_at: datetime | None
    deadline_at: datetime | None = None
    cancel_reason: str | None = None
    retry_of: BatchId | None = None
    # Why a rejected batch was rejected (`RejectionReason`); None on others.
    rejection_reason: str | None = None
    # The client's name and labels of the batch (None for none).
    name: str | None = None
    metadata: Mapping[str, str] | None = None

    @property
    def is_finished(self) -> bool:
        """Every task is terminal (a rejected batch never ran and is not finished in that sense)."""
        return self.finished_at is not None and self.status is not BatchStatus.REJECTED


@dataclass(frozen=True)
class BatchView:
    """A batch with its derived counters, as the API shows it."""

    batch: BatchRecord
    counts: TaskCounts
    # The batches retrying this one's failed items, oldest first (ADR-048).
    retries: tuple[BatchId, ...] = ()

    @property
    def pending_count(self) -> int:
        # A rejected batch never ran: its tasks are gone and nothing is pending.
        return 0 if self.batch.status is BatchStatus.REJECTED else self.counts.pending


@dataclass(frozen=True)
class TaskRecord:
    """A task as stored."""

    id: TaskId
    batch_id: BatchId
    tenant_id: TenantId
    batch_index: int
    prompt: str
    model: str
    unit_price: int
    status: TaskStatus
    attempts: int
    claims: int
    failure_type: str | None
    error_message: str | None
    video_url: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    custom_id: str | None = None
    metadata: Mapping[str, str] | None = None
    # What its billed provider jobs cost us (US dollar micros) and how many there were (ADR-144).
    provider_cost_usd_micros: int = 0
    provider_jobs: int = 0


class TaskSummary(NamedTuple):
    """A task as a page of tasks shows it, read straight from its row: ids as text and times as
    microseconds since the epoch, so a page of 50 converts nothing per task (the read path's cost
    was mostly building a `TaskRecord` and converting it again)."""

    id: str
    batch_id: str
    batch_index: int
    status: str
    model: str
    prompt: str
    unit_price: int
    video_url: str | None
    error_message: str | None
    failure_type: str | None
    attempts: int
    created_at_us: int
    finished_at_us: int | None
    custom_id: str | None = None
    metadata: Mapping[str, str] | None = None
    # Issue 25: when it started, the live retry detail, the stored settings (JSON text) and length.
    started_at_us: int | None = None
    next_attempt_at_us: int | None = None
    last_error: str | None = None
    settings_json: str | None = None
    duration_seconds: int = 0

    @property
    def current_attempt(self) -> int:
        """While running, the attempt under way or waited for (attempts counts those that failed)."""
        return self.attempts + 1 if self.status == TaskStatus.RUNNING else 0

    @property
    def credits_charged(self) -> int:
        """What was captured for it: its price once it succeeded."""
        return self.unit_price if self.status == TaskStatus.SUCCEEDED else 0

    @property
    def credits_refunded(self) -> int:
        """What was refunded for it: its price once it failed or was cancelled."""
        return self.unit_price if self.status in (TaskStatus.FAILED, TaskStatus.CANCELLED) else 0


@dataclass(frozen=True)
class QuoteLine:
    """Items of one model (duration and priced options) and the price billing quoted for each."""

    model: str
    count: int
    unit_price: int
    # The length billing priced (the model's default when the items gave none); 0: priced per video.
    duration_seconds: int = 0
    # The items' priced settings (`generation.options_key`, e.g. "audio=on;resolution=1080p").
    options: str = ""


@dataclass(frozen=True)
class RequestedLine:
    """Items of one (model, duration, priced options) to be quoted."""

    model: str
    count: int
    duration_seconds: int
    options: str = ""


# What an item's price depends on: (model, requested duration, priced options).
PriceKey = tuple[str, int, str]


# The batch metadata key whose value names the batch's project (its project budget applies).
PROJECT_METADATA_KEY = "project"


def project_of(metadata: Mapping[str, str] | Metadata | None) -> str:
    """The batch's project ("" for none)."""
    if not metadata:
        return ""
    pairs = metadata.items() if isinstance(metadata, Mapping) else metadata
    return next((value for key, value in pairs if key == PROJECT_METADATA_KEY), "")


@dataclass(frozen=True)
class ReservationTerms:
    """Whose budgets a freeze counts against and the quote it honours (issue 29); each optional."""

    api_key_id: str = ""
    project: str = ""
    quote_id: str = ""
    fingerprint: str = ""


NO_TERMS = ReservationTerms()


def month_end(moment: datetime) -> datetime:
    """The first instant of the UTC calendar month after `moment`'s: the end of its budget period."""
    utc = moment.astimezone(UTC)
    return datetime(utc.year + utc.month // 12, utc.month % 12 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class StoredQuote:
    """A quote billing stored: its priced lines (request order), fingerprint, validity and use."""

    quote_id: str
    lines: tuple[QuoteLine, ...]
    fingerprint: str
    expires_at: datetime
    batch_id: str = ""

    @property
    def total(self) -> int:
        return required_credits(self.lines)


@dataclass(frozen=True)
class Reservation:
    """What billing froze for a batch."""

    frozen_credits: int
    available_before: int


@dataclass(frozen=True)
class CreateBatchResult:
    """The create response. Built only from fields that never change, so replays are identical."""

    batch_id: BatchId
    total_count: int
    cost_per_video: int | None
    required_credits: int
    available_credits: int
    status: str
    request_id: str
    replayed: bool


def accepted_result(batch: BatchRecord, *, replayed: bool) -> CreateBatchResult:
    """The response of a batch whose credits were frozen (its status may have moved on since)."""
    assert batch.available_snapshot is not None, "only a reserved batch has an accepted response"
    return CreateBatchResult(
        batch_id=batch.id,
        total_count=batch.total_count,
        cost_per_video=batch.cost_per_video,
        required_credits=batch.required_credits,
        available_credits=batch.available_snapshot,
        status=BatchStatus.QUEUED.value,
        request_id=batch.request_id or "",
        replayed=replayed,
    )


def price_keys(items: Sequence[BatchItem], options: Sequence[str] = ()) -> list[PriceKey]:
    """Each item's price key; `options` holds each item's priced options (empty: none at all)."""
    if not options:
        return [(item.model, item.duration_seconds, "") for item in items]
    return [(item.model, item.duration_seconds, option) for item, option in zip(items, options, strict=True)]


def quote_lines(keys: Sequence[PriceKey]) -> list[RequestedLine]:
    """One line per distinct price key, in order of first appearance, to price."""
    counts: dict[PriceKey, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return [
        RequestedLine(model, count, duration, option) for (model, duration, option), count in counts.items()
    ]


def required_credits(lines: Iterable[QuoteLine]) -> int:
    """The price of the whole batch."""
    return sum(line.count * line.unit_price for line in lines)


def common_unit_price(lines: Sequence[QuoteLine]) -> int | None:
    """The price per video when every item costs the same; None for a batch of mixed prices."""
    prices = {line.unit_price for line in lines}
    return prices.pop() if len(prices) == 1 else None


def dispatch_chunks(task_ids: Sequence[TaskId], chunk_size: int) -> list[list[TaskId]]:
    """Task ids (in batch order) cut into dispatch messages of at most `chunk_size` ids."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    return [list(task_ids[start : start + chunk_size]) for start in range(0, len(task_ids), chunk_size)]


def parse_batch_id(value: str) -> BatchId:
    """A batch id from the wire; a malformed id names no batch."""
    try:
        return BatchId(uuid.UUID(value))
    except ValueError:
        raise BatchNotFound("batch not found", batch_id=value) from None


def parse_tenant_id(value: str) -> TenantId:
    """A tenant id from the wire."""
    try:
        return TenantId(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument("tenant_id must be a UUID", field="tenant_id") from None


@dataclass(frozen=True)
class NewBatch:
    """A priced batch about to be stored (status reserving) with one task per item."""

    id: BatchId
    tenant_id: TenantId
    request_id: str | None
    request_fingerprint: str
    items: tuple[BatchItem, ...]
    # The priced line of each price key (model, requested duration, options): every item's price.
    prices: dict[PriceKey, QuoteLine]
    required_credits: int
    cost_per_video: int | None
    webhook_url: str | None
    deadline_seconds: int = 0
    retry_of: BatchId | None = None
    name: str | None = None
    metadata: Metadata = ()
    # Item i's priced options (`generation.options_key`); empty when no item has any.
    options: tuple[str, ...] = ()
    # Stored only while the tenant has fewer unfinished batches than this (0: no limit).
    open_batch_limit: int = 0

    def price_key(self, index: int) -> PriceKey:
        """The key of item `index`'s line in `prices`."""
        item = self.items[index]
        return (item.model, item.duration_seconds, self.options[index] if self.options else "")


@dataclass(frozen=True)
class Settlement:
    """Billing's final word on a batch hold."""

    batch_id: BatchId
    status: SettlementStatus
    settled_at: datetime


# A task whose lease expired this many times is failed rather than dispatched again: something
# about it (or the workers) keeps killing its runner, and the customer deserves a refund, not a loop.
MAX_TASK_CLAIMS = 3
LOST_TASK_MESSAGE = f"worker lost the task {MAX_TASK_CLAIMS} times"
CANCELLED_TASK_MESSAGE = "cancelled before it started"
