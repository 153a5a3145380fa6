"""The public REST contract: request and response models (they also drive /openapi.json).

Requests forbid unknown fields. The create body is checked for its shape only; its rules are the
batch service's, whose contract publishes the bounds the document shows. Responses are built from
gRPC messages by their `from_proto` constructors; the hot reads answer the same fields
(`fields_of`) as JSON without building the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Self, get_args

import orjson
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2
from reelbatch.proto.webhook.v1 import webhook_pb2

# The idempotency key's bound, as the batch service's contract publishes it.
MAX_REQUEST_ID_CHARS = batch_pb2.CREATE_BATCH_LIMIT_MAX_REQUEST_ID_CHARS
# What an int32 field of the batch contract can carry: a larger JSON integer cannot be sent at all.
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

# The most credits one request may add (a top-up, an offline payment). A balance is bounded
# further by billing, which refuses a credit that would take it past a bigint (422).
MAX_CREDITS_PER_REQUEST = 2**62
# One line of text without control characters: PostgreSQL refuses NUL in text, and names and
# references are shown in the dashboard and CSV exports.
SINGLE_LINE_TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"

_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")

BatchStatus = Literal[
    "reserving", "queued", "processing", "completed", "partial", "failed", "cancelled", "rejected"
]
TaskStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def is_valid_request_id(value: str) -> bool:
    """True for 1..255 printable ASCII characters (an acceptable X-Request-ID)."""
    return 0 < len(value) <= MAX_REQUEST_ID_CHARS and _PRINTABLE_ASCII.fullmatch(value) is not None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _timestamp(value: Timestamp, present: bool) -> datetime | None:
    if not present:
        return None
    # `value.ToDatetime(tzinfo=UTC)` (microseconds kept, nanoseconds below them dropped) at half
    # its cost: a page of tasks converts one per task.
    return _EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def _none_if_empty(value: str) -> str | None:
    return value or None


def json_bytes(document: Mapping[str, Any]) -> bytes:
    """JSON of a view's fields, written as pydantic writes the model (UTC times end in `Z`)."""
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


# ---------------------------------------------------------------------------------------- requests


# The create body is checked here for its shape only (JSON types, and integers the contract's int32
# fields can carry); its rules (prompt text, lengths, ranges, URL) are the batch service's, which
# answers every violation at once. The bounds below are published from the contract, not enforced.
_Int32 = Annotated[int, Field(strict=True, ge=_INT32_MIN, le=_INT32_MAX)]


class BatchItemIn(BaseModel):
    """One video to generate."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        strict=True,
        description=(
            "What the video shows: 1..REELBATCH_MAX_PROMPT_CHARS (default "
            f"{batch_pb2.CREATE_BATCH_LIMIT_DEFAULT_MAX_PROMPT_CHARS}) characters, not blank; any Unicode, "
            "tab and line breaks (LF, CR) allowed, other control characters (and NUL) rejected."
        ),
        examples=["A cat playing piano"],
    )
    model: str = Field(
        strict=True,
        description="Model name from the price list, e.g. `sora-2`; an unknown model is a 422.",
        examples=["sora-2"],
        json_schema_extra={"minLength": 1, "maxLength": batch_pb2.CREATE_BATCH_LIMIT_MAX_MODEL_CHARS},
    )
    duration_seconds: _Int32 | None = Field(
        default=None,
        description=(
            "Video length in seconds, for a model priced per second (see `GET /api/enterprise/pricing`): "
            "within the model's min..max, its default when left out (or 0). A 422 for a model priced "
            "per video."
        ),
        examples=[6],
        json_schema_extra={"minimum": 0, "maximum": batch_pb2.CREATE_BATCH_LIMIT_MAX_DURATION_SECONDS},
    )


class CreateBatchRequest(BaseModel):
    """A batch of videos to generate; the whole price is frozen before anything runs."""

    model_config = ConfigDict(extra="forbid")

    items: list[BatchItemIn] = Field(
        description=(
            "1..REELBATCH_MAX_BATCH_ITEMS (default "
            f"{batch_pb2.CREATE_BATCH_LIMIT_DEFAULT_MAX_BATCH_ITEMS}) videos, executed independently."
        ),
        json_schema_extra={"minItems": 1},
    )
    webhook_url: str | None = Field(
        default=None,
        strict=True,
        description="Absolute http(s) URL that receives signed batch events.",
        examples=["https://customer.example/webhook"],
        json_schema_extra={"maxLength": batch_pb2.CREATE_BATCH_LIMIT_MAX_WEBHOOK_URL_CHARS},
    )
    deadline_seconds: _Int32 | None = Field(
        default=None,
        description=(
            f"Optional, 1..{batch_pb2.CREATE_BATCH_LIMIT_MAX_DEADLINE_SECONDS} (7 days; 0 or absent: none): "
            "tasks not finished this long after creation are cancelled and refunded."
        ),
        json_schema_extra={"minimum": 0, "maximum": batch_pb2.CREATE_BATCH_LIMIT_MAX_DEADLINE_SECONDS},
    )


@dataclass(frozen=True)
class BatchColumns:
    """A validated create request with its items as columns (as the batch service is sent them)."""

    prompts: list[str]
    models: list[str]
    # 0 where an item gave no duration.
    durations: list[int]
    webhook_url: str | None = None
    deadline_seconds: int | None = None

    @classmethod
    def of(cls, request: CreateBatchRequest) -> BatchColumns:
        """The columns of a request validated by the model."""
        return cls(
            prompts=[item.prompt for item in request.items],
            models=[item.model for item in request.items],
            durations=[item.duration_seconds or 0 for item in request.items],
            webhook_url=request.webhook_url,
            deadline_seconds=request.deadline_seconds,
        )


_BODY_KEYS = frozenset(CreateBatchRequest.model_fields)
_ITEM_KEYS = frozenset(BatchItemIn.model_fields)


def _is_int32(value: object) -> bool:
    return type(value) is int and _INT32_MIN <= value <= _INT32_MAX  # bool is not int here


def plainly_valid_batch(document: object) -> BatchColumns | None:
    """The request when its shape is plainly right, checked a column at a time; None otherwise.

    `CreateBatchRequest` builds one model per item: most of the cost of accepting 10,000 items.
    This check accepts only what the model accepts, with exact JSON types (a string prompt, an
    int32 duration, ...), using whole-column operations that run in C. On None the caller
    validates with the model, which names the error. The rules are the batch service's.
    """
    if type(document) is not dict or not document.keys() <= _BODY_KEYS:
        return None
    items = document.get("items")
    if type(items) is not list or set(map(type, items)) - {dict}:
        return None
    if not set().union(*items) <= _ITEM_KEYS:
        return None
    prompts = [item.get("prompt") for item in items]
    models = [item.get("model") for item in items]
    durations = [item.get("duration_seconds") for item in items]
    if set(map(type, prompts)) - {str} or set(map(type, models)) - {str}:
        return None
    if set(map(type, durations)) - {int, type(None)}:  # also keeps unhashable values out of the set
        return None
    distinct_durations = set(durations)
    if not all(duration is None or _is_int32(duration) for duration in distinct_durations):
        return None
    webhook_url = document.get("webhook_url")
    deadline = document.get("deadline_seconds")
    if webhook_url is not None and type(webhook_url) is not str:
        return None
    if deadline is not None and not _is_int32(deadline):
        return None
    return BatchColumns(
        prompts=prompts,
        models=models,
        durations=[0] * len(items) if distinct_durations <= {None} else [d or 0 for d in durations],
        webhook_url=webhook_url,
        deadline_seconds=deadline,
    )


# What a retry-failed may ask for: every failure type but `cancelled`, which is never retried.
RetryableFailureType = Literal[
    "timeout", "provider_error", "rate_limited", "internal", "content_policy", "invalid_input"
]


class RetryFailedRequest(BaseModel):
    """Which failed items of a finished batch to retry (the body is optional)."""

    model_config = ConfigDict(extra="forbid")

    failure_types: list[RetryableFailureType] | None = Field(
        default=None,
        min_length=1,
        max_length=len(get_args(RetryableFailureType)),
        description=(
            "Retry the items that failed in these ways. Absent or null: every failure a new attempt "
            "can change (all but `content_policy` and `invalid_input`). Cancelled items are never retried."
        ),
        examples=[["timeout", "provider_error", "content_policy"]],
    )


class CreateTenantRequest(BaseModel):
    """A new customer account."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=SINGLE_LINE_TEXT_PATTERN,
        description="Display name of the tenant.",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("name must not be empty")
        return name


class CreateApiKeyRequest(BaseModel):
    """Optionally registers a known key instead of generating one (demo tenants, migrations)."""

    model_config = ConfigDict(extra="forbid")

    api_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=r"^[\x21-\x7e]+$",
        description="The exact key to register (printable ASCII, no spaces); omit to generate one.",
        examples=["demo-key"],
    )


class TopUpRequest(BaseModel):
    """Credits added to a tenant's available balance; idempotent on `reference`."""

    model_config = ConfigDict(extra="forbid")

    credits: int = Field(
        strict=True, gt=0, le=MAX_CREDITS_PER_REQUEST, description="Whole credits to add (> 0)."
    )
    reference: str = Field(
        min_length=1,
        max_length=255,
        pattern=SINGLE_LINE_TEXT_PATTERN,
        description="Business key of the payment or grant; repeating it returns the first result.",
    )

    @field_validator("reference")
    @classmethod
    def _check_reference(cls, reference: str) -> str:
        if not reference.strip():
            raise ValueError("reference must not be empty")
        return reference


# --------------------------------------------------------------------------------------- responses


class BatchAccepted(BaseModel):
    """The answer to a created (or replayed) batch: its price is known and frozen."""

    ok: Literal[True] = True
    batch_id: str = Field(description="Identifier of the batch.")
    total_count: int = Field(description="Number of videos in the batch.")
    cost_per_video: int | None = Field(description="Credits per video; null when the batch mixes prices.")
    required_credits: int = Field(description="Credits frozen for the whole batch.")
    available_credits: int = Field(description="Available balance just before the credits were frozen.")
    status: str = Field(description="Status of the batch (`queued` once accepted).")
    request_id: str = Field(description="The idempotency key (X-Request-ID, generated when absent).")
    balance_snapshot: Literal[True] = Field(
        default=True, description="`available_credits` is a snapshot taken when the credits were frozen."
    )
    enqueue: Literal["queued"] = Field(default="queued", description="The tasks are queued for execution.")

    @classmethod
    def from_proto(cls, response: batch_pb2.CreateBatchResponse, request_id: str) -> Self:
        """Builds the 202 body from batch's CreateBatch answer."""
        return cls(**cls.fields_of(response, request_id))

    @staticmethod
    def fields_of(response: batch_pb2.CreateBatchResponse, request_id: str) -> dict[str, Any]:
        """Every field of the 202 body, unvalidated: `json_bytes` of them is the model's JSON."""
        return {
            "ok": True,
            "batch_id": response.batch_id,
            "total_count": response.total_count,
            "cost_per_video": response.cost_per_video if response.HasField("cost_per_video") else None,
            "required_credits": response.required_credits,
            "available_credits": response.available_credits,
            "status": response.status or "queued",
            "request_id": response.request_id or request_id,
            "balance_snapshot": True,
            "enqueue": "queued",
        }


class BatchView(BaseModel):
    """A batch, its progress counters and its money."""

    batch_id: str = Field(description="Identifier of the batch.")
    status: str = Field(
        description="reserving, queued, processing, completed, partial, failed, cancelled or rejected."
    )
    total_count: int = Field(description="Number of videos in the batch.")
    success_count: int = Field(description="Videos generated.")
    failed_count: int = Field(description="Videos that failed (refunded).")
    cancelled_count: int = Field(description="Videos cancelled before they started (refunded).")
    pending_count: int = Field(description="Videos not finished yet.")
    frozen_credits: int = Field(description="Credits frozen when the batch was accepted.")
    credits_spent: int = Field(description="Credits captured for generated videos.")
    refunded_credits: int = Field(description="Credits returned for failed or cancelled videos.")
    settlement_status: str = Field(description="pending, settled (no refunds) or refunded (some refunds).")
    created_at: AwareDatetime = Field(description="When the batch was accepted (RFC 3339, UTC).")
    finished_at: AwareDatetime | None = Field(description="When the last video finished; null until then.")
    webhook_url: str | None = Field(description="Where batch events are delivered; null if none.")
    retry_of: str | None = Field(
        description="The batch whose failed items this batch retries (retry-failed); null otherwise."
    )
    retries: list[str] = Field(
        description=(
            "Batches retrying this batch's failed items, oldest first: at most one that was not "
            "rejected (a rejected retry froze nothing)."
        )
    )

    @classmethod
    def from_proto(cls, batch: batch_pb2.Batch) -> Self:
        """Builds the view from batch's Batch message."""
        return cls(**cls.fields_of(batch))

    @staticmethod
    def fields_of(batch: batch_pb2.Batch) -> dict[str, Any]:
        """The view's fields from batch's Batch message, unvalidated: `json_bytes` of them is the
        view's JSON (the hot read path answers them without building the model)."""
        return {
            "batch_id": batch.batch_id,
            "status": batch.status,
            "total_count": batch.total_count,
            "success_count": batch.success_count,
            "failed_count": batch.failed_count,
            "cancelled_count": batch.cancelled_count,
            "pending_count": batch.pending_count,
            "frozen_credits": batch.frozen_credits,
            "credits_spent": batch.credits_spent,
            "refunded_credits": batch.refunded_credits,
            "settlement_status": batch.settlement_status,
            "created_at": _timestamp(batch.created_at, True),
            "finished_at": _timestamp(batch.finished_at, batch.HasField("finished_at")),
            "webhook_url": _none_if_empty(batch.webhook_url),
            "retry_of": _none_if_empty(batch.retry_of_batch_id),
            "retries": list(batch.retry_batch_ids),
        }


class AdminBatchView(BatchView):
    """A batch as operators see it: with its tenant and idempotency key."""

    tenant_id: str = Field(description="Owner of the batch.")
    request_id: str | None = Field(description="The client's X-Request-ID; null if none.")

    @classmethod
    def from_proto(cls, batch: batch_pb2.Batch) -> Self:
        """Builds the admin view from batch's Batch message."""
        view = BatchView.from_proto(batch)
        return cls(
            **view.model_dump(), tenant_id=batch.tenant_id, request_id=_none_if_empty(batch.request_id)
        )


class BatchPage(BaseModel):
    """One page of batches, newest first."""

    items: list[BatchView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class AdminBatchPage(BaseModel):
    """One page of batches across tenants."""

    items: list[AdminBatchView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class TaskView(BaseModel):
    """One video of a batch."""

    task_id: str = Field(description="Identifier of the task.")
    batch_index: int = Field(description="Position of the item in the submitted `items` (0-based).")
    status: str = Field(description="queued, running, succeeded, failed or cancelled.")
    model: str = Field(description="Model used.")
    prompt: str = Field(description="The prompt as submitted.")
    video_url: str | None = Field(description="Where the video can be downloaded; null unless succeeded.")
    error_message: str | None = Field(description="Why the task failed; null unless failed or cancelled.")
    failure_type: str | None = Field(
        description=(
            "timeout, provider_error, rate_limited, content_policy, invalid_input, cancelled or internal; "
            "null unless failed or cancelled."
        )
    )
    attempts: int = Field(description="Provider attempts made so far.")
    finished_at: AwareDatetime | None = Field(description="When the task finished; null until then.")

    @classmethod
    def from_proto(cls, task: batch_pb2.Task) -> Self:
        """Builds the view from batch's Task message."""
        return cls(**cls.fields_of(task))

    @staticmethod
    def fields_of(task: batch_pb2.Task) -> dict[str, Any]:
        """The view's fields from batch's Task message, unvalidated (see `BatchView.fields_of`)."""
        return {
            "task_id": task.task_id,
            "batch_index": task.batch_index,
            "status": task.status,
            "model": task.model,
            "prompt": task.prompt,
            "video_url": _none_if_empty(task.video_url),
            "error_message": _none_if_empty(task.error_message),
            "failure_type": _none_if_empty(task.failure_type),
            "attempts": task.attempts,
            "finished_at": _timestamp(task.finished_at, task.HasField("finished_at")),
        }


class TaskPage(BaseModel):
    """One page of a batch's tasks, in batch order."""

    items: list[TaskView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class CreditsView(BaseModel):
    """A tenant's balances."""

    available_credits: int = Field(description="Credits that new batches can use.")
    held_credits: int = Field(description="Credits frozen for batches still running.")

    @classmethod
    def from_proto(cls, balance: billing_pb2.GetBalanceResponse) -> Self:
        """Builds the view from billing's balance."""
        return cls(available_credits=balance.available_credits, held_credits=balance.held_credits)


class LedgerEntryView(BaseModel):
    """One change of the tenant's available balance."""

    entry_id: str = Field(description="Identifier of the ledger entry.")
    ref_type: str = Field(description="topup, batch_upfront, batch_refund or batch_settle.")
    ref_id: str = Field(description="Business key of the movement (payment reference, batch or task id).")
    batch_id: str | None = Field(description="The batch concerned; null for top-ups.")
    credits_delta: int = Field(description="Change of the available balance (negative when credits leave).")
    balance_after: int = Field(description="Available balance after this entry.")
    created_at: AwareDatetime = Field(description="When the entry was written (RFC 3339, UTC).")

    @classmethod
    def from_proto(cls, entry: billing_pb2.LedgerEntry) -> Self:
        """Builds the view from billing's LedgerEntry."""
        return cls(
            entry_id=entry.entry_id,
            ref_type=entry.ref_type,
            ref_id=entry.ref_id,
            batch_id=_none_if_empty(entry.batch_id),
            credits_delta=entry.credits_delta,
            balance_after=entry.balance_after,
            created_at=entry.created_at.ToDatetime(tzinfo=UTC),
        )


class LedgerPage(BaseModel):
    """One page of ledger entries, newest first."""

    items: list[LedgerEntryView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class TenantCreated(BaseModel):
    """The new tenant."""

    tenant_id: str = Field(description="Identifier of the tenant.")


class ApiKeyCreated(BaseModel):
    """A new API key: the clear key is shown only here."""

    api_key: str = Field(description="The key to send as X-API-Key; it cannot be retrieved later.")
    key_id: str = Field(description="Identifier of the key (safe to log).")


class TopUpResult(BaseModel):
    """The balance after a top-up."""

    balance: int = Field(description="Available balance after the top-up.")
    replayed: bool = Field(description="True when this reference had been applied before (no new credits).")


class Liveness(BaseModel):
    """The process is up."""

    ok: Literal[True] = True


class Readiness(BaseModel):
    """Every backend answers its health check."""

    ok: bool = Field(description="True when every dependency is up.")
    dependencies: dict[str, Literal["up", "down"]] = Field(description="Health of each backend service.")


# --------------------------------------------------------------------------------- admin / finance

FailureType = Literal[
    "timeout", "provider_error", "rate_limited", "content_policy", "invalid_input", "cancelled", "internal"
]
SettlementStatus = Literal["pending", "settled", "refunded"]
Fault = Literal["provider", "customer_input", "us", "cancelled"]

# "Whose fault was it?": who caused each kind of failure (every one is refunded all the same).
FAULT_BY_FAILURE_TYPE: dict[str, Fault] = {
    "timeout": "provider",
    "provider_error": "provider",
    "rate_limited": "provider",
    "content_policy": "customer_input",
    "invalid_input": "customer_input",
    "internal": "us",
    "cancelled": "cancelled",
}


class FailureGroupView(BaseModel):
    """Failed or cancelled tasks of one failure type."""

    failure_type: str = Field(description="timeout, provider_error, rate_limited, content_policy, ...")
    fault: Fault = Field(description="Whose fault: provider, customer_input, us or cancelled.")
    count: int = Field(description="Tasks that ended this way.")
    refunded_credits: int = Field(description="Credits refunded for them.")


class MarginView(BaseModel):
    """What the delivered videos earned against what the provider charged us (USD micros)."""

    revenue_credits: int = Field(description="Credits captured for delivered videos.")
    revenue_usd_micros: int = Field(description="Revenue in US dollar micros.")
    provider_cost_usd_micros: int = Field(description="Provider cost of the delivered videos.")
    margin_usd_micros: int = Field(description="Revenue minus provider cost.")
    margin_percent: float = Field(description="Margin over revenue, in percent (two decimals).")

    @classmethod
    def from_proto(cls, estimate: billing_pb2.MarginEstimate) -> Self:
        """Builds the view from billing's estimate."""
        return cls(
            revenue_credits=estimate.revenue_credits,
            revenue_usd_micros=estimate.revenue_usd_micros,
            provider_cost_usd_micros=estimate.provider_cost_usd_micros,
            margin_usd_micros=estimate.margin_usd_micros,
            margin_percent=estimate.margin_basis_points / 100,
        )


class TimingView(BaseModel):
    """When the batch moved."""

    created_at: AwareDatetime = Field(description="Accepted.")
    queued_at: AwareDatetime | None = Field(description="Credits frozen and tasks queued.")
    first_started_at: AwareDatetime | None = Field(description="First task picked up by a worker.")
    finished_at: AwareDatetime | None = Field(description="Last task finished.")
    settled_at: AwareDatetime | None = Field(description="Billing settled the batch.")
    duration_seconds: float | None = Field(
        description="From acceptance to the last task; null while running."
    )
    total_attempts: int = Field(description="Provider attempts over all tasks (retries included).")

    @classmethod
    def from_proto(cls, breakdown: batch_pb2.BatchBreakdown) -> Self:
        """Builds the view from batch's breakdown."""
        created_at = breakdown.created_at.ToDatetime(tzinfo=UTC)
        finished_at = _timestamp(breakdown.finished_at, breakdown.HasField("finished_at"))
        return cls(
            created_at=created_at,
            queued_at=_timestamp(breakdown.queued_at, breakdown.HasField("queued_at")),
            first_started_at=_timestamp(breakdown.first_started_at, breakdown.HasField("first_started_at")),
            finished_at=finished_at,
            settled_at=_timestamp(breakdown.settled_at, breakdown.HasField("settled_at")),
            duration_seconds=(finished_at - created_at).total_seconds() if finished_at else None,
            total_attempts=breakdown.total_attempts,
        )


class AdminBatchDetail(AdminBatchView):
    """The admin overview of a batch: progress, money, margin, timing and whose fault failures were."""

    net_spent: int = Field(description="What the customer pays for the batch: frozen minus refunded.")
    margin: MarginView = Field(description="Earnings of the delivered videos against provider cost.")
    timing: TimingView = Field(description="When the batch moved.")
    failures: list[FailureGroupView] = Field(description="Failed and cancelled tasks by failure type.")

    @classmethod
    def assemble(
        cls, batch: batch_pb2.Batch, breakdown: batch_pb2.BatchBreakdown, estimate: billing_pb2.MarginEstimate
    ) -> Self:
        """Combines the batch, its breakdown and billing's margin estimate."""
        view = AdminBatchView.from_proto(batch)
        failures: dict[str, tuple[int, int]] = {}
        for group in breakdown.groups:
            if group.failure_type:
                count, credits = failures.get(group.failure_type, (0, 0))
                failures[group.failure_type] = (count + group.count, credits + group.credits)
        return cls(
            **view.model_dump(),
            net_spent=batch.frozen_credits - batch.refunded_credits,
            margin=MarginView.from_proto(estimate),
            timing=TimingView.from_proto(breakdown),
            failures=[
                FailureGroupView(
                    failure_type=failure_type,
                    fault=FAULT_BY_FAILURE_TYPE.get(failure_type, "us"),
                    count=count,
                    refunded_credits=credits,
                )
                for failure_type, (count, credits) in sorted(failures.items(), key=lambda item: -item[1][0])
            ],
        )


class BatchTransferView(BaseModel):
    """One movement of a batch's credits."""

    transfer_id: str = Field(description="Identifier of the transfer.")
    ref_type: str = Field(description="batch_upfront, batch_capture, batch_refund or batch_settle.")
    ref_id: str = Field(description="The batch (freeze, release) or task (capture, refund) concerned.")
    amount: int = Field(description="Credits moved.")
    from_account: str = Field(description="available, hold or revenue.")
    to_account: str = Field(description="available, hold or revenue.")
    credits_delta: int = Field(description="Change of the tenant's available balance (0 for captures).")
    created_at: AwareDatetime = Field(description="When the transfer was written.")

    @classmethod
    def from_proto(cls, entry: billing_pb2.BatchTransfer) -> Self:
        """Builds the view from billing's BatchTransfer."""
        return cls(
            transfer_id=entry.transfer_id,
            ref_type=entry.ref_type,
            ref_id=entry.ref_id,
            amount=entry.amount,
            from_account=entry.from_account,
            to_account=entry.to_account,
            credits_delta=entry.available_delta,
            created_at=entry.created_at.ToDatetime(tzinfo=UTC),
        )


class BatchBillingView(BaseModel):
    """A batch's money: totals per kind of movement and its ledger entries (paged)."""

    batch_id: str
    tenant_id: str
    upfront_total: int = Field(description="Credits frozen when the batch was accepted.")
    capture_total: int = Field(description="Credits captured for delivered videos.")
    refund_total: int = Field(description="Credits refunded for failed or cancelled videos.")
    release_total: int = Field(description="Credits released at settlement (normally 0).")
    net_spent: int = Field(description="upfront - refunds - release: what the customer paid.")
    held_credits: int = Field(description="Still frozen (0 once settled).")
    settlement_status: str = Field(description="pending, settled or refunded.")
    entries: list[BatchTransferView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page of entries.")

    @classmethod
    def from_proto(cls, ledger: billing_pb2.BatchLedger) -> Self:
        """Builds the view from billing's BatchLedger."""
        return cls(
            batch_id=ledger.batch_id,
            tenant_id=ledger.tenant_id,
            upfront_total=ledger.upfront_total,
            capture_total=ledger.capture_total,
            refund_total=ledger.refund_total,
            release_total=ledger.release_total,
            net_spent=ledger.net_spent,
            held_credits=ledger.held_credits,
            settlement_status=ledger.settlement_status,
            entries=[BatchTransferView.from_proto(entry) for entry in ledger.entries],
            next_cursor=ledger.next_cursor or None,
        )


class DeliveryAttemptView(BaseModel):
    """One HTTP attempt at delivering a webhook."""

    attempt_number: int
    attempted_at: AwareDatetime
    duration_ms: int
    http_status: int | None = Field(description="null when no HTTP response was received.")
    error_class: str | None = Field(description="timeout, connection, 4xx, 5xx or blocked; null on success.")
    response_body: str = Field(description="First 1 KiB of the response body.")


class DeliveryView(BaseModel):
    """One webhook message and its attempts."""

    message_id: str
    event_type: str
    url: str
    status: str = Field(description="pending, delivered or failed.")
    attempts: list[DeliveryAttemptView]
    created_at: AwareDatetime
    next_attempt_at: AwareDatetime | None
    delivered_at: AwareDatetime | None

    @classmethod
    def from_proto(cls, delivery: webhook_pb2.Delivery) -> Self:
        """Builds the view from the webhook service's Delivery."""
        return cls(
            message_id=delivery.message_id,
            event_type=delivery.event_type,
            url=delivery.url,
            status=delivery.status,
            attempts=[
                DeliveryAttemptView(
                    attempt_number=attempt.attempt_number,
                    attempted_at=attempt.attempted_at.ToDatetime(tzinfo=UTC),
                    duration_ms=attempt.duration_ms,
                    http_status=attempt.http_status or None,
                    error_class=attempt.error_class or None,
                    response_body=attempt.response_body,
                )
                for attempt in delivery.attempts
            ],
            created_at=delivery.created_at.ToDatetime(tzinfo=UTC),
            next_attempt_at=_timestamp(delivery.next_attempt_at, delivery.HasField("next_attempt_at")),
            delivered_at=_timestamp(delivery.delivered_at, delivery.HasField("delivered_at")),
        )


class DeliveryPage(BaseModel):
    """One page of webhook deliveries, newest first."""

    items: list[DeliveryView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class TenantSummaryView(BaseModel):
    """A tenant and its balances."""

    tenant_id: str
    name: str
    available_credits: int
    held_credits: int
    created_at: AwareDatetime

    @classmethod
    def from_proto(cls, tenant: billing_pb2.TenantSummary) -> Self:
        """Builds the view from billing's TenantSummary."""
        return cls(
            tenant_id=tenant.tenant_id,
            name=tenant.name,
            available_credits=tenant.available_credits,
            held_credits=tenant.held_credits,
            created_at=tenant.created_at.ToDatetime(tzinfo=UTC),
        )


class TenantPage(BaseModel):
    """One page of tenants, oldest first."""

    items: list[TenantSummaryView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class DiscrepancyView(BaseModel):
    """One broken money invariant."""

    invariant: str = Field(
        description="I1 (batch money), I2 (balances and entries) or I3 (each effect once)."
    )
    subject: str = Field(description="What is wrong: a batch, an account, a transfer or the ledger.")
    message: str = Field(description="What does not add up.")


class ReconciliationView(BaseModel):
    """The result of checking every credit: empty `discrepancies` means the books balance."""

    discrepancies: list[DiscrepancyView]
    accounts_checked: int
    batches_checked: int
    checked_at: AwareDatetime

    @classmethod
    def from_proto(cls, report: billing_pb2.ReconcileResponse) -> Self:
        """Builds the view from billing's report."""
        return cls(
            discrepancies=[
                DiscrepancyView(invariant=found.invariant, subject=found.subject, message=found.message)
                for found in report.discrepancies
            ],
            accounts_checked=report.accounts_checked,
            batches_checked=report.batches_checked,
            checked_at=report.checked_at.ToDatetime(tzinfo=UTC),
        )


# ------------------------------------------------------------------------------------------ errors


class FieldError(BaseModel):
    """One invalid input."""

    loc: list[str | int] = Field(description='Where the invalid input is, e.g. `["items", 3, "prompt"]`.')
    code: str = Field(
        description="Stable code of the broken rule, e.g. empty, too_long, too_many, control_character, "
        "out_of_range, invalid_url, missing, string_type."
    )
    message: str = Field(description="What is wrong with it.")
    field: str = Field(description="`loc` as one path, e.g. `items[3].prompt`.")


class ErrorDetail(BaseModel):
    """What went wrong; backend refusals may add facts (strings unless documented here)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(
        description=(
            "Stable reason: unauthorized, forbidden, not_found, method_not_allowed, idempotency_key_reused, "
            "insufficient_credits, payload_too_large, validation_error, rate_limited, unavailable, internal."
        )
    )
    message: str = Field(description="Human-readable explanation.")
    errors: list[FieldError] | None = Field(
        default=None,
        description="Every invalid input of the request at once, at most 100 (validation_error).",
    )
    required_credits: int | None = Field(default=None, description="Batch price (insufficient_credits).")
    available_credits: int | None = Field(default=None, description="Balance (insufficient_credits).")


class ErrorResponse(BaseModel):
    """Every error answer: `{"ok": false, "error": {...}}`."""

    ok: Literal[False] = False
    error: ErrorDetail
