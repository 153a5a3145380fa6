"""Typed models of every customer endpoint's body, as the API's OpenAPI document defines them.

Answers are read leniently (`extra="allow"`: a field the server adds later never breaks an old client,
it shows up in `model_extra`); requests are written strictly (`extra="forbid"`: a typo fails here,
not as a 422). `SCHEMAS` maps each OpenAPI schema name to its model: a test of this repository
compares the two field by field against the live application, so the SDK cannot drift from the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FailureType = Literal[
    "timeout", "provider_error", "rate_limited", "content_policy", "invalid_input", "cancelled", "internal"
]
TERMINAL_BATCH_STATUSES = frozenset({"completed", "partial", "failed", "cancelled", "rejected"})


class ApiModel(BaseModel):
    """An answer of the API: unknown fields are kept (in `model_extra`), never an error."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class RequestModel(BaseModel):
    """A body sent to the API: unknown fields are a mistake of the caller."""

    model_config = ConfigDict(extra="forbid")


# --- requests -------------------------------------------------------------------------------------


class ImageInput(RequestModel):
    """An input image: a public URL or the `file_id` of an upload (`Client.upload_file`)."""

    url: str | None = None
    file_id: str | None = None


class GenerationSettings(RequestModel):
    """Per-item generation settings; which ones a model accepts is in `Client.models()`."""

    aspect_ratio: str | None = None
    resolution: str | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    audio: bool | None = None
    first_frame: ImageInput | None = None
    last_frame: ImageInput | None = None
    reference_images: list[ImageInput] | None = None


class BatchItem(RequestModel):
    """One video to generate. `custom_id` (unique in the batch) comes back in every result line."""

    prompt: str
    model: str
    duration_seconds: int | None = None
    custom_id: str | None = None
    metadata: dict[str, str] | None = None
    settings: GenerationSettings | None = None


class CreateBatchRequest(RequestModel):
    """The body of `POST /api/enterprise/video-batch` (JSON form)."""

    items: list[BatchItem] = Field(min_length=1)
    webhook_url: str | None = None
    deadline_seconds: int | None = None
    name: str | None = None
    metadata: dict[str, str] | None = None
    # A quote of this very body (`Client.quote`): charged exactly its price, once.
    quote_id: str | None = None


class BudgetUpdate(RequestModel):
    """A monthly budget to set (None removes it)."""

    monthly_credits: int | None


class AlertThresholdsUpdate(RequestModel):
    """The tenant's spend alert thresholds, replacing the current ones (None: that alert is off)."""

    low_balance_credits: int | None = None
    budget_percent: int | None = None


class AutoTopUpUpdate(RequestModel):
    """Automatic top-up settings, replacing the current ones (turning it on needs a saved card)."""

    enabled: bool
    threshold_credits: int
    pack_id: str
    max_per_month: int = 1


class RetryFailedRequest(RequestModel):
    """Which failures of a finished batch to retry (None: every retryable one)."""

    failure_types: list[FailureType] | None = None


class EndpointIn(RequestModel):
    """A webhook endpoint to register."""

    url: str
    event_types: list[str] = Field(default_factory=list)
    description: str = ""


# --- batches and tasks ----------------------------------------------------------------------------


class BatchAccepted(ApiModel):
    """The 202 of a create or a retry-failed: the price is known and the credits are frozen."""

    ok: bool = True
    batch_id: str
    total_count: int
    cost_per_video: int | None
    required_credits: int
    available_credits: int
    status: str
    request_id: str
    balance_snapshot: bool = True
    enqueue: str = "queued"


class Batch(ApiModel):
    """A batch as `GET /api/enterprise/video-batch/{id}` answers it."""

    batch_id: str
    status: str
    total_count: int
    success_count: int
    failed_count: int
    cancelled_count: int
    pending_count: int
    frozen_credits: int
    credits_spent: int
    refunded_credits: int
    settlement_status: str
    created_at: datetime
    finished_at: datetime | None
    webhook_url: str | None
    retry_of: str | None
    retries: list[str]
    name: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def done_count(self) -> int:
        """Items in a terminal state (succeeded, failed or cancelled)."""
        return self.success_count + self.failed_count + self.cancelled_count

    @property
    def is_finished(self) -> bool:
        """True once the batch is terminal and its money settled (nothing will change any more)."""
        return self.status in TERMINAL_BATCH_STATUSES and self.settlement_status != "pending"


class Task(ApiModel):
    """One item of a batch (`GET .../tasks`)."""

    task_id: str
    batch_index: int
    status: str
    model: str
    prompt: str
    video_url: str | None
    error_message: str | None
    failure_type: str | None
    attempts: int
    finished_at: datetime | None
    custom_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    settings: GenerationSettings | None = None
    duration_seconds: int | None = None
    started_at: datetime | None = None
    current_attempt: int | None = None
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    credits_charged: int = 0
    credits_refunded: int = 0
    # Once finished: the item's receipt, the id of its capture or refund in the ledger.
    ledger_transfer_id: str | None = None


class ResultLine(ApiModel):
    """One line of a batch's results or errors file (`/results`, `/errors`; JSONL form)."""

    custom_id: str | None = None
    batch_index: int
    task_id: str
    status: str
    model: str | None = None
    failure_type: str | None = None
    fault: str | None = None
    reason: str | None = None
    attempts: int = 0
    credits_charged: int = 0
    credits_refunded: int = 0
    video_url: str | None = None
    video_expires_at: str | None = None
    finished_at: str | None = None
    metadata: dict[str, str] | None = None
    ledger_transfer_id: str | None = None
    ledger_ref_type: str | None = None


class VideoLink(ApiModel):
    """A short-lived signed URL of one video."""

    url: str
    mode: str
    expires_at: datetime


# --- money ----------------------------------------------------------------------------------------


class Credits(ApiModel):
    """The tenant's balance: spendable, frozen by running batches, and owed (a refunded or disputed
    payment already spent: new batches are refused with 402 `debt_outstanding` until it is paid)."""

    available_credits: int
    held_credits: int
    debt_credits: int


class LedgerEntry(ApiModel):
    """One movement of the tenant's available balance (`credits_delta`)."""

    entry_id: str
    ref_type: str
    ref_id: str
    batch_id: str | None
    credits_delta: int
    balance_after: int
    created_at: datetime
    # The transfer's public id: on a refund, the task's `ledger_transfer_id`.
    ledger_transfer_id: str


class BatchTransfer(ApiModel):
    """One transfer of a batch's credits: its freeze, an item's capture or refund, the release."""

    transfer_id: str
    ledger_transfer_id: str
    ref_type: str
    ref_id: str
    amount: int
    from_account: str
    to_account: str
    credits_delta: int
    created_at: datetime


class BatchBilling(ApiModel):
    """A batch's money (`GET .../{id}/billing`): totals and a page of its transfers."""

    batch_id: str
    tenant_id: str
    upfront_total: int
    capture_total: int
    refund_total: int
    release_total: int
    net_spent: int
    held_credits: int
    settlement_status: str
    entries: list[BatchTransfer]
    next_cursor: str | None


class ModelUsage(ApiModel):
    """A model's line of a monthly statement."""

    model: str
    videos_delivered: int
    videos_refunded: int
    credits_captured: int
    credits_refunded: int


class Budget(ApiModel):
    """A monthly budget (the tenant's, a key's, a project's) and its use this UTC month."""

    scope: str
    scope_id: str | None
    monthly_credits: int | None
    used_credits: int
    remaining_credits: int | None
    period_start: datetime
    period_end: datetime


class AlertThresholds(ApiModel):
    """The tenant's spend alert thresholds (None: that alert is off)."""

    low_balance_credits: int | None
    budget_percent: int | None


class AutoTopUpPurchase(ApiModel):
    """One automatic purchase a crossing of the threshold asked for."""

    purchase_id: str
    status: str
    pack_id: str
    credits: int
    amount_usd_cents: int
    payment_intent: str | None
    failure_code: str | None
    created_at: datetime


class AutoTopUp(ApiModel):
    """The tenant's automatic top-up and its latest purchases."""

    enabled: bool
    threshold_credits: int
    pack_id: str
    max_per_month: int
    payment_method: str | None
    disabled_reason: str | None
    disabled_at: datetime | None
    purchases_this_month: int
    recent_purchases: list[AutoTopUpPurchase]


class BudgetList(ApiModel):
    """Every budget of the tenant, its own first."""

    items: list[Budget]


class Quote(ApiModel):
    """A stored price of a create body: cite `quote_id` in the create to be charged exactly it."""

    ok: bool = True
    quote_id: str
    required_credits: int
    total_count: int
    item_prices: list[int]
    expires_at: datetime


class Statement(ApiModel):
    """A calendar month's statement (UTC): opening balance, movements, closing balance."""

    month: str
    opening_balance: int
    purchases: int
    grants: int
    spent: int
    refunded: int
    released: int
    reversed: int = 0
    debt_paid: int = 0
    reinstated: int = 0
    closing_balance: int
    closing_debt: int = 0
    closing_paid_credits: int
    closing_granted_credits: int
    models: list[ModelUsage]
    budgets: list[Budget] = Field(default_factory=list)


class Pack(ApiModel):
    """A credit pack on sale."""

    pack_id: str
    name: str
    price_usd_cents: int
    credits: int
    bonus_percent: float


class PackCatalog(ApiModel):
    """The credit packs on sale, and what one credit is worth."""

    items: list[Pack]
    next_cursor: str | None = None
    credit_value_usd_micros: int


# --- models and files -----------------------------------------------------------------------------


class PricedChoice(ApiModel):
    """A setting's value and what it adds to the price."""

    value: str
    extra_credits: int


class ModelSettings(ApiModel):
    """What a model accepts beyond the prompt."""

    aspect_ratios: list[str]
    resolutions: list[PricedChoice]
    seed: bool
    negative_prompt: bool
    audio: bool
    audio_default: bool | None
    audio_extra_credits: int
    first_frame: bool
    last_frame: bool
    max_reference_images: int


class VideoModel(ApiModel):
    """A model of the price list."""

    model: str
    credits_per_video: int
    pricing_unit: str = "video"
    credits_per_second: int | None = None
    min_seconds: int | None = None
    max_seconds: int | None = None
    default_seconds: int | None = None
    settings: ModelSettings
    # Who makes its videos (`simulated`: a demo model, no provider is called; `veo`: Google Veo
    # through the Gemini API, ...).
    provider: str = "simulated"
    simulated: bool = True


class PriceList(ApiModel):
    """Every model with its settings and prices."""

    items: list[VideoModel]
    next_cursor: str | None = None


class InputFile(ApiModel):
    """An uploaded input image."""

    file_id: str
    object: str = "file"
    filename: str
    content_type: str
    bytes: int
    purpose: str = "video_input"
    created_at: datetime | None


# --- API keys and webhooks ------------------------------------------------------------------------


class ApiKey(ApiModel):
    """One of the tenant's API keys (never the secret itself)."""

    key_id: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked: bool
    scopes: list[str]
    expires_at: datetime | None


class ApiKeyList(ApiModel):
    """The tenant's API keys."""

    items: list[ApiKey]
    next_cursor: str | None = None


class WebhookEndpoint(ApiModel):
    """A registered webhook endpoint."""

    endpoint_id: str
    url: str
    event_types: list[str]
    status: str
    description: str
    created_at: datetime | None


class WebhookEndpointCreated(WebhookEndpoint):
    """A new endpoint with its signing secret, shown once."""

    secret: str


class WebhookEndpointSecretRotated(WebhookEndpointCreated):
    """An endpoint's new secret; the previous one keeps verifying until `previous_expires_at`."""

    previous_expires_at: datetime | None


class DeliveryAttempt(ApiModel):
    """One attempt to deliver a webhook message."""

    attempt_number: int
    attempted_at: datetime | None
    duration_ms: int
    http_status: int | None
    error_class: str | None
    response_body: str


class WebhookMessage(ApiModel):
    """A webhook message and its delivery attempts."""

    message_id: str
    batch_id: str | None
    event_type: str
    url: str
    endpoint_id: str | None
    status: str
    created_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    attempts: list[DeliveryAttempt]


class SigningSecret(ApiModel):
    """The tenant's webhook signing secret (the `webhook_url` of batches is signed with it)."""

    secret: str
    previous_secret: str | None
    previous_expires_at: datetime | None


# --- errors ---------------------------------------------------------------------------------------


class FieldError(ApiModel):
    """One problem of a request, located (`loc`, e.g. `["items", 150, "prompt"]`)."""

    loc: list[str | int]
    code: str
    message: str
    field: str


class ErrorDetail(ApiModel):
    """The `error` object of every non-2xx answer."""

    code: str
    message: str
    errors: list[FieldError] | None = None
    required_credits: int | None = None
    available_credits: int | None = None
    debt_credits: int | None = None


class ErrorResponse(ApiModel):
    """`{"ok": false, "error": {...}}`."""

    ok: bool = False
    error: ErrorDetail


# --- webhook events (Standard Webhooks bodies) ----------------------------------------------------


class BatchEventData(ApiModel):
    """The batch fields a batch event carries (those of `Batch`, as of the event)."""

    batch_id: str
    status: str
    total_count: int
    success_count: int | None = None
    failed_count: int | None = None
    cancelled_count: int | None = None
    pending_count: int | None = None
    frozen_credits: int
    credits_spent: int | None = None
    refunded_credits: int | None = None
    settlement_status: str | None = None
    created_at: str | None = None
    finished_at: str | None = None
    name: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    results_url: str | None = None
    errors_url: str | None = None


class BatchEvent(ApiModel):
    """`batch.queued`, `batch.completed` or `batch.cancelled`."""

    type: Literal["batch.queued", "batch.completed", "batch.cancelled"]
    timestamp: str
    data: BatchEventData


class TaskEventData(ApiModel):
    """The task fields a task event carries."""

    task_id: str
    batch_id: str
    batch_index: int
    custom_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    status: str
    model: str
    attempts: int
    credits_charged: int
    credits_refunded: int
    # The item's receipt: the id of its capture or refund in the ledger (`BatchTransfer`).
    ledger_transfer_id: str
    ledger_ref_type: str
    video_link_url: str | None = None
    failure_type: str | None = None
    error_message: str | None = None


class TaskEvent(ApiModel):
    """`task.succeeded` or `task.failed`."""

    type: Literal["task.succeeded", "task.failed"]
    timestamp: str
    data: TaskEventData


class CreditsLowEventData(ApiModel):
    """A freeze took the available credits below the low-balance threshold (once per crossing)."""

    alert_id: str
    threshold_credits: int
    available_credits: int


class CreditsLowEvent(ApiModel):
    """`credits.low`."""

    type: Literal["credits.low"]
    timestamp: str
    data: CreditsLowEventData


class BudgetThresholdEventData(ApiModel):
    """A freeze took a capped budget's use this month to the alert percent (once per crossing)."""

    alert_id: str
    threshold_credits: int
    budget_scope: str
    budget_scope_id: str | None = None
    monthly_credits: int
    threshold_percent: int
    used_credits: int
    period_end: str


class BudgetThresholdEvent(ApiModel):
    """`budget.threshold`."""

    type: Literal["budget.threshold"]
    timestamp: str
    data: BudgetThresholdEventData


class AutoTopUpFailedEventData(ApiModel):
    """The saved card refused an automatic top-up, which turned itself off."""

    alert_id: str
    threshold_credits: int
    pack_id: str
    failure_code: str
    failure_message: str
    auto_top_up_enabled: bool


class AutoTopUpFailedEvent(ApiModel):
    """`auto_top_up.failed`."""

    type: Literal["auto_top_up.failed"]
    timestamp: str
    data: AutoTopUpFailedEventData


WebhookEvent = BatchEvent | TaskEvent | CreditsLowEvent | BudgetThresholdEvent | AutoTopUpFailedEvent

# OpenAPI schema name -> the model that mirrors it (the drift test walks this table). Pages
# (`BatchPage`, `TaskPage`, ...) are not models here: the client's iterators unwrap them.
SCHEMAS: dict[str, type[BaseModel]] = {
    "AlertThresholdsUpdate": AlertThresholdsUpdate,
    "AlertThresholdsView": AlertThresholds,
    "AutoTopUpFailedEvent": AutoTopUpFailedEvent,
    "AutoTopUpFailedEventData": AutoTopUpFailedEventData,
    "AutoTopUpPurchaseView": AutoTopUpPurchase,
    "AutoTopUpUpdate": AutoTopUpUpdate,
    "AutoTopUpView": AutoTopUp,
    "ApiKeyList": ApiKeyList,
    "ApiKeyView": ApiKey,
    "AttemptView": DeliveryAttempt,
    "BatchAccepted": BatchAccepted,
    "BatchBillingView": BatchBilling,
    "BatchEvent": BatchEvent,
    "BatchEventData": BatchEventData,
    "BatchItemIn": BatchItem,
    "BatchTransferView": BatchTransfer,
    "BatchView": Batch,
    "BudgetList": BudgetList,
    "BudgetThresholdEvent": BudgetThresholdEvent,
    "BudgetThresholdEventData": BudgetThresholdEventData,
    "BudgetUpdate": BudgetUpdate,
    "BudgetView": Budget,
    "CreateBatchRequest": CreateBatchRequest,
    "CreditsLowEvent": CreditsLowEvent,
    "CreditsLowEventData": CreditsLowEventData,
    "CreditsView": Credits,
    "DeliveryView": WebhookMessage,
    "EndpointCreated": WebhookEndpointCreated,
    "EndpointIn": EndpointIn,
    "EndpointSecretRotated": WebhookEndpointSecretRotated,
    "EndpointView": WebhookEndpoint,
    "ErrorDetail": ErrorDetail,
    "ErrorResponse": ErrorResponse,
    "FieldError": FieldError,
    "GenerationSettingsIn": GenerationSettings,
    "ImageInputIn": ImageInput,
    "InputFileView": InputFile,
    "LedgerEntryView": LedgerEntry,
    "ModelSettingsView": ModelSettings,
    "ModelUsageView": ModelUsage,
    "ModelView": VideoModel,
    "PackCatalog": PackCatalog,
    "PackView": Pack,
    "PriceList": PriceList,
    "PricedChoice": PricedChoice,
    "QuoteView": Quote,
    "RetryFailedRequest": RetryFailedRequest,
    "SigningSecretView": SigningSecret,
    "StatementView": Statement,
    "TaskEvent": TaskEvent,
    "TaskEventData": TaskEventData,
    "TaskView": Task,
    "VideoLink": VideoLink,
}
