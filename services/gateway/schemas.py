"""The public REST contract: request and response models (they also drive /openapi.json).

Requests forbid unknown fields. Size limits that come from settings (items per batch, prompt
length) are checked with the `BatchLimits` passed as validation context, so one model serves any
configuration. Responses are built from gRPC messages by their `from_proto` constructors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Self
from urllib.parse import urlsplit

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

MAX_WEBHOOK_URL_CHARS = 2048
MAX_REQUEST_ID_CHARS = 255

# Control characters (C0, DEL, C1) except tab and newline, which prompts may contain.
_FORBIDDEN_PROMPT_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")
_URL_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f]")

BatchStatus = Literal[
    "reserving", "queued", "processing", "completed", "partial", "failed", "cancelled", "rejected"
]
TaskStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@dataclass(frozen=True)
class BatchLimits:
    """The configured bounds of a batch request (from settings)."""

    max_batch_items: int
    max_prompt_chars: int


def is_valid_request_id(value: str) -> bool:
    """True for 1..255 printable ASCII characters (an acceptable X-Request-ID)."""
    return 0 < len(value) <= MAX_REQUEST_ID_CHARS and _PRINTABLE_ASCII.fullmatch(value) is not None


def _limits(info: ValidationInfo) -> BatchLimits | None:
    context = info.context
    return context if isinstance(context, BatchLimits) else None


def _timestamp(value: Timestamp, present: bool) -> datetime | None:
    if not present:
        return None
    return value.ToDatetime(tzinfo=UTC)


def _none_if_empty(value: str) -> str | None:
    return value or None


# ---------------------------------------------------------------------------------------- requests


class BatchItemIn(BaseModel):
    """One video to generate."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        description=(
            "What the video shows: 1..REELBATCH_MAX_PROMPT_CHARS (default 4000) characters; any Unicode, "
            "tab and newline allowed, other control characters (and NUL) rejected."
        ),
        examples=["A cat playing piano"],
    )
    model: str = Field(
        min_length=1,
        max_length=200,
        description="Model name from the price list, e.g. `sora-2`; an unknown model is a 422.",
        examples=["sora-2"],
    )

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, prompt: str, info: ValidationInfo) -> str:
        if not prompt.strip():
            raise ValueError("prompt must not be empty")
        if _FORBIDDEN_PROMPT_CHARS.search(prompt):
            raise ValueError("prompt must not contain control characters (tab and newline are allowed)")
        limits = _limits(info)
        if limits is not None and len(prompt) > limits.max_prompt_chars:
            raise ValueError(f"prompt must be at most {limits.max_prompt_chars} characters")
        return prompt

    @field_validator("model")
    @classmethod
    def _check_model(cls, model: str) -> str:
        if not model.strip():
            raise ValueError("model must not be empty")
        return model


class CreateBatchRequest(BaseModel):
    """A batch of videos to generate; the whole price is frozen before anything runs."""

    model_config = ConfigDict(extra="forbid")

    items: list[BatchItemIn] = Field(
        min_length=1,
        description="1..REELBATCH_MAX_BATCH_ITEMS (default 10000) videos, executed independently.",
    )
    webhook_url: str | None = Field(
        default=None,
        description="Absolute http(s) URL (at most 2048 characters) that receives signed batch events.",
        examples=["https://customer.example/webhook"],
    )

    @field_validator("items", mode="before")
    @classmethod
    def _check_item_count(cls, items: object, info: ValidationInfo) -> object:
        # Checked before the items are validated one by one, so an oversized batch fails fast.
        limits = _limits(info)
        if limits is not None and isinstance(items, list) and len(items) > limits.max_batch_items:
            raise ValueError(f"a batch holds at most {limits.max_batch_items} items, got {len(items)}")
        return items

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if len(url) > MAX_WEBHOOK_URL_CHARS:
            raise ValueError(f"webhook_url must be at most {MAX_WEBHOOK_URL_CHARS} characters")
        if _URL_UNSAFE_CHARS.search(url):
            raise ValueError("webhook_url must not contain spaces or control characters")
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError on a malformed port
        except ValueError as error:
            raise ValueError("webhook_url must be an absolute http(s) URL") from error
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook_url must be an absolute http(s) URL")
        return url


class CreateTenantRequest(BaseModel):
    """A new customer account."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Display name of the tenant.")

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

    credits: int = Field(strict=True, gt=0, le=2**62, description="Whole credits to add (> 0).")
    reference: str = Field(
        min_length=1,
        max_length=255,
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
        return cls(
            batch_id=response.batch_id,
            total_count=response.total_count,
            cost_per_video=response.cost_per_video if response.HasField("cost_per_video") else None,
            required_credits=response.required_credits,
            available_credits=response.available_credits,
            status=response.status or "queued",
            request_id=response.request_id or request_id,
        )


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

    @classmethod
    def from_proto(cls, batch: batch_pb2.Batch) -> Self:
        """Builds the view from batch's Batch message."""
        return cls(
            batch_id=batch.batch_id,
            status=batch.status,
            total_count=batch.total_count,
            success_count=batch.success_count,
            failed_count=batch.failed_count,
            cancelled_count=batch.cancelled_count,
            pending_count=batch.pending_count,
            frozen_credits=batch.frozen_credits,
            credits_spent=batch.credits_spent,
            refunded_credits=batch.refunded_credits,
            settlement_status=batch.settlement_status,
            created_at=batch.created_at.ToDatetime(tzinfo=UTC),
            finished_at=_timestamp(batch.finished_at, batch.HasField("finished_at")),
            webhook_url=_none_if_empty(batch.webhook_url),
        )


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
        return cls(
            task_id=task.task_id,
            batch_index=task.batch_index,
            status=task.status,
            model=task.model,
            prompt=task.prompt,
            video_url=_none_if_empty(task.video_url),
            error_message=_none_if_empty(task.error_message),
            failure_type=_none_if_empty(task.failure_type),
            attempts=task.attempts,
            finished_at=_timestamp(task.finished_at, task.HasField("finished_at")),
        )


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


# ------------------------------------------------------------------------------------------ errors


class FieldError(BaseModel):
    """One invalid input."""

    field: str = Field(description="Path of the invalid input, e.g. `items[3].prompt`.")
    message: str = Field(description="What is wrong with it.")


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
    errors: list[FieldError] | None = Field(default=None, description="Invalid inputs (validation_error).")
    required_credits: int | None = Field(default=None, description="Batch price (insufficient_credits).")
    available_credits: int | None = Field(default=None, description="Balance (insufficient_credits).")


class ErrorResponse(BaseModel):
    """Every error answer: `{"ok": false, "error": {...}}`."""

    ok: Literal[False] = False
    error: ErrorDetail
