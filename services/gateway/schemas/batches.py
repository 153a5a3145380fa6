"""Batches: the create request (and its column-wise shape check), retry-failed, and the batch views.

Requests forbid unknown fields. The create body is checked for its shape only; its rules are the
batch service's, whose contract publishes the bounds the document shows. Responses are built from
gRPC messages by their `from_proto` constructors; the polled reads answer the same fields
(`fields_of`) as JSON without building the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from reelbatch.proto.batch.v1 import batch_pb2

from libs import vocabulary
from libs.public_batch import batch_fields
from libs.vocabulary import listed, one_of
from services.gateway.schemas.fields import INT32_MAX, INT32_MIN
from services.gateway.schemas.generation import GenerationSettingsIn
from services.gateway.schemas.pages import CursorPage

if TYPE_CHECKING:
    BatchStatus = str
    RetryableFailureType = str
else:
    # The REST filter and retry-failed accept the shared vocabulary's values (libs/vocabulary.py):
    # every failure type but `cancelled`, which is never retried.
    BatchStatus = one_of(vocabulary.BatchStatus)
    RetryableFailureType = one_of(vocabulary.RETRYABLE_FAILURES)


# The create body is checked here for its shape only (JSON types, and integers the contract's int32
# fields can carry); its rules (prompt text, lengths, ranges, URL) are the batch service's, which
# answers every violation at once. The bounds below are published from the contract, not enforced.
# A quote id is a UUID (any case).
QUOTE_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_Int32 = Annotated[int, Field(strict=True, ge=INT32_MIN, le=INT32_MAX)]
_MAX_METADATA_PAIRS = batch_pb2.CREATE_BATCH_LIMIT_MAX_METADATA_PAIRS
_MAX_KEY_CHARS = batch_pb2.CREATE_BATCH_LIMIT_MAX_CUSTOM_ID_CHARS
_MAX_VALUE_CHARS = batch_pb2.CREATE_BATCH_LIMIT_MAX_METADATA_VALUE_CHARS
# String pairs, as OpenAI's `metadata` (bounds published from the contract, enforced by batch).
MetadataIn = Annotated[
    dict[str, Annotated[str, Field(strict=True)]],
    Field(
        description=(
            f"Up to {_MAX_METADATA_PAIRS} string pairs of your own: keys up to {_MAX_KEY_CHARS} characters, "
            f"values up to {_MAX_VALUE_CHARS}. Stored and echoed, never interpreted."
        ),
        examples=[{"project": "june-campaign"}],
        json_schema_extra={"maxProperties": _MAX_METADATA_PAIRS},
    ),
]


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
    custom_id: str | None = Field(
        default=None,
        strict=True,
        description=(
            "Your own id of the item, unique within the batch: every task view, webhook, export and "
            "results line echoes it."
        ),
        examples=["shot-0001"],
        json_schema_extra={"maxLength": batch_pb2.CREATE_BATCH_LIMIT_MAX_CUSTOM_ID_CHARS},
    )
    metadata: MetadataIn | None = None
    settings: GenerationSettingsIn | None = Field(
        default=None,
        description=(
            "Generation settings (aspect ratio, resolution, seed, negative prompt, audio, input images): "
            "what the model takes and what each choice costs is in `GET /api/enterprise/models`."
        ),
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
    name: str | None = Field(
        default=None,
        strict=True,
        description="Your name for the batch; `GET /api/enterprise/video-batch?name=` finds it.",
        examples=["june campaign"],
        json_schema_extra={"maxLength": batch_pb2.CREATE_BATCH_LIMIT_MAX_NAME_CHARS},
    )
    metadata: MetadataIn | None = None
    quote_id: str | None = Field(
        default=None,
        strict=True,
        description=(
            "A quote of this very body (`POST /api/enterprise/quotes`), still valid and unused: the batch "
            "is charged exactly its price, even if prices changed since. The metadata key `project` "
            "names the batch's project (its project budget applies)."
        ),
        pattern=QUOTE_ID_PATTERN,
    )


# The batch's own fields (everything but `items`): JSONL bodies give them as query parameters.
BATCH_FIELDS = frozenset(CreateBatchRequest.model_fields) - {"items"}


@dataclass
class BatchColumns:
    """A shape-checked create request with its items as columns (as the batch service is sent
    them). `custom_ids` and `metadata` stay empty unless some item has one (most batches)."""

    prompts: list[str]
    models: list[str]
    # 0 where an item gave no duration.
    durations: list[int]
    webhook_url: str | None = None
    deadline_seconds: int | None = None
    # "" / {} where an item gave none; empty lists when no item gave any.
    custom_ids: list[str] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    name: str | None = None
    batch_metadata: dict[str, str] | None = None
    quote_id: str | None = None
    # One message per item when any item has settings; None otherwise (the common case).
    settings: list[batch_pb2.GenerationSettings] | None = None

    @classmethod
    def of(cls, request: CreateBatchRequest) -> BatchColumns:
        """The columns of a request validated by the model."""
        items = request.items
        custom_ids = [item.custom_id or "" for item in items]
        metadata = [item.metadata or {} for item in items]
        with_settings = any(item.settings is not None for item in items)
        return cls(
            prompts=[item.prompt for item in items],
            models=[item.model for item in items],
            durations=[item.duration_seconds or 0 for item in items],
            webhook_url=request.webhook_url,
            deadline_seconds=request.deadline_seconds,
            custom_ids=custom_ids if any(custom_ids) else [],
            metadata=metadata if any(metadata) else [],
            name=request.name,
            batch_metadata=request.metadata,
            quote_id=request.quote_id,
            settings=[
                item.settings.to_proto() if item.settings is not None else batch_pb2.GenerationSettings()
                for item in items
            ]
            if with_settings
            else None,
        )


_BODY_KEYS = frozenset(CreateBatchRequest.model_fields)
_QUOTE_ID = re.compile(QUOTE_ID_PATTERN)
_ITEM_KEYS = frozenset(BatchItemIn.model_fields)


def _is_string_pairs(value: object) -> bool:
    return type(value) is dict and all(type(key) is str and type(text) is str for key, text in value.items())


def _is_int32(value: object) -> bool:
    return type(value) is int and INT32_MIN <= value <= INT32_MAX  # bool is not int here


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
    keys = set().union(*items)
    if not keys <= _ITEM_KEYS or "settings" in keys:
        # Settings are nested objects: the model checks them (and names any error).
        return None
    prompts = [item.get("prompt") for item in items]
    models = [item.get("model") for item in items]
    durations = [item.get("duration_seconds") for item in items]
    custom_ids = [item.get("custom_id") for item in items]
    metadata = [item.get("metadata") for item in items]
    if set(map(type, prompts)) - {str} or set(map(type, models)) - {str}:
        return None
    if set(map(type, custom_ids)) - {str, type(None)}:
        return None
    if any(labels is not None and not _is_string_pairs(labels) for labels in metadata):
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
    name = document.get("name")
    batch_metadata = document.get("metadata")
    if (name is not None and type(name) is not str) or (
        batch_metadata is not None and not _is_string_pairs(batch_metadata)
    ):
        return None
    quote_id = document.get("quote_id")
    if quote_id is not None and (type(quote_id) is not str or not _QUOTE_ID.match(quote_id)):
        return None
    return BatchColumns(
        prompts=prompts,
        models=models,
        durations=[0] * len(items) if distinct_durations <= {None} else [d or 0 for d in durations],
        webhook_url=webhook_url,
        deadline_seconds=deadline,
        custom_ids=[custom_id or "" for custom_id in custom_ids] if any(custom_ids) else [],
        metadata=[labels or {} for labels in metadata] if any(metadata) else [],
        name=name,
        batch_metadata=batch_metadata,
        quote_id=quote_id,
    )


class RetryFailedRequest(BaseModel):
    """Which failed items of a finished batch to retry (the body is optional)."""

    model_config = ConfigDict(extra="forbid")

    failure_types: list[RetryableFailureType] | None = Field(
        default=None,
        min_length=1,
        max_length=len(vocabulary.RETRYABLE_FAILURES),
        description=(
            "Retry the items that failed in these ways. Absent or null: every failure a new attempt "
            f"can change ({listed(vocabulary.DEFAULT_RETRIED_FAILURES)}). Cancelled items are never retried."
        ),
        examples=[["timeout", "provider_error", "content_policy"]],
    )


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
    status: str = Field(description=f"{listed(vocabulary.BatchStatus)}.")
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
    name: str | None = Field(default=None, description="Your name for the batch; null if none.")
    metadata: dict[str, str] = Field(default_factory=dict, description="Your labels of the batch.")

    @classmethod
    def from_proto(cls, batch: batch_pb2.Batch) -> Self:
        """Builds the view from batch's Batch message."""
        return cls(**cls.fields_of(batch))

    @staticmethod
    def fields_of(batch: batch_pb2.Batch) -> dict[str, Any]:
        """The view's fields from batch's Batch message, unvalidated: `json_bytes` of them is the
        view's JSON (the polled reads answer them without building the model). Written once for
        this view and the batch webhooks (`libs.public_batch`)."""
        return batch_fields(batch)


class BatchPage(CursorPage[BatchView]):
    """One page of batches, newest first."""
