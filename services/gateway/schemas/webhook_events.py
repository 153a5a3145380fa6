"""The bodies of the webhooks we send (Standard Webhooks), as the OpenAPI `webhooks` section
documents them. The webhook service builds them; these models describe them for SDK generators."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

EventData = TypeVar("EventData", bound=BaseModel)

SIGNING_STORY = (
    "Every delivery, to an account endpoint (`POST /api/enterprise/webhook-endpoints`) or to a batch's "
    "own `webhook_url`, is signed the same way (Standard Webhooks): headers `webhook-id` (the message "
    "id, the same on every retry and replay: deduplicate on it), `webhook-timestamp` (Unix seconds) and "
    '`webhook-signature`: `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")), '
    "where key is the base64 part of the secret after `whsec_`. The secret is the endpoint's own one "
    "(shown once at registration, rotated with `.../rotate-secret`) for account endpoints, and the "
    "tenant's signing secret (`GET /api/enterprise/webhook-secret`, rotated with "
    "`POST /api/enterprise/webhook-secret/rotate`) for batch `webhook_url`s. During a rotation's overlap "
    "the header carries one signature per valid secret, space-separated: accept the delivery when any "
    "matches, and refuse timestamps more than 5 minutes away from your clock."
)


class WebhookBody(BaseModel, Generic[EventData]):
    """A webhook's body: its event type (each subclass narrows it to its own), when it happened, and
    the event's data."""

    type: str
    timestamp: str = Field(description="When it happened (RFC 3339, UTC).")
    data: EventData


class BatchEventData(BaseModel):
    """A batch's fields as the REST API shows them (`GET /api/enterprise/video-batch/{id}`)."""

    batch_id: str
    status: str = Field(description="queued, completed, partial, failed or cancelled.")
    total_count: int
    success_count: int | None = None
    failed_count: int | None = None
    cancelled_count: int | None = None
    pending_count: int | None = None
    frozen_credits: int
    credits_spent: int | None = None
    refunded_credits: int | None = None
    settlement_status: str | None = Field(default=None, description="pending, settled or refunded.")
    created_at: str | None = None
    finished_at: str | None = None
    name: str | None = Field(default=None, description="Your name for the batch, as given at creation.")
    metadata: dict[str, str] = Field(
        default_factory=dict, description="The batch's metadata string pairs, as given at creation."
    )
    results_url: str | None = Field(
        default=None, description="`batch.completed`: the batch's results file (succeeded items, JSONL)."
    )
    errors_url: str | None = Field(
        default=None, description="`batch.completed`: the batch's errors file (failed and cancelled items)."
    )


class TaskEventData(BaseModel):
    """One item's outcome (sent only to endpoints that subscribed to task events)."""

    task_id: str
    batch_id: str
    batch_index: int
    custom_id: str | None = Field(default=None, description="The item's own id, as you sent it.")
    metadata: dict[str, str] = Field(default_factory=dict, description="The item's labels, as you sent them.")
    status: str = Field(description="succeeded, failed or cancelled.")
    model: str
    attempts: int
    credits_charged: int = Field(description="Credits captured for this item (its price when it succeeded).")
    credits_refunded: int = Field(description="Credits refunded for this item (its price when it did not).")
    ledger_transfer_id: str = Field(
        description=(
            "The item's receipt: the id of its capture (`batch_capture`) or refund (`batch_refund`) in "
            "the ledger, as `GET /api/enterprise/video-batch/{id}/billing`, `GET /api/enterprise/ledger` "
            "and the ledger export show it (`ledger_transfer_id`). A UUIDv5 of the ledger key "
            "`task_outcome:{task_id}`; the ledger line may appear a moment after the event."
        )
    )
    ledger_ref_type: str = Field(description="batch_capture or batch_refund: the kind of that ledger line.")
    video_link_url: str | None = Field(
        default=None,
        description="On success: the API link that answers your API key with a fresh signed video URL.",
    )
    failure_type: str | None = Field(default=None, description="On failure: why (see the task view).")
    error_message: str | None = None


class BatchEvent(WebhookBody[BatchEventData]):
    """`batch.queued`, `batch.completed` or `batch.cancelled`."""

    type: Literal["batch.queued", "batch.completed", "batch.cancelled"]


class TaskEvent(WebhookBody[TaskEventData]):
    """`task.succeeded` or `task.failed`."""

    type: Literal["task.succeeded", "task.failed"]


class CreditsLowEventData(BaseModel):
    """A batch's freeze took the available credits below the tenant's low-balance threshold."""

    alert_id: str = Field(description="Unique per crossing (the same on every retry): deduplicate on it.")
    threshold_credits: int = Field(
        description="The threshold (`low_balance_credits` of `/api/enterprise/alerts`)."
    )
    available_credits: int = Field(description="The available credits after the freeze that crossed it.")


class BudgetThresholdEventData(BaseModel):
    """A batch's freeze took a capped budget's use this month to the alert percent of its cap."""

    alert_id: str = Field(description="Unique per crossing (the same on every retry): deduplicate on it.")
    threshold_credits: int = Field(description="The use at which the percent is reached (rounded up).")
    budget_scope: str = Field(description="tenant, api_key or project.")
    budget_scope_id: str | None = Field(
        default=None, description="The key id or the project; null for the tenant's."
    )
    monthly_credits: int = Field(description="The budget's cap.")
    threshold_percent: int = Field(
        description="The percent reached (`budget_percent` of `/api/enterprise/alerts`)."
    )
    used_credits: int = Field(description="The budget's use this month after the freeze that crossed it.")
    period_end: str = Field(description="When the month ends and the use resets (RFC 3339, UTC).")


class CreditsLowEvent(WebhookBody[CreditsLowEventData]):
    """`credits.low`."""

    type: Literal["credits.low"]


class BudgetThresholdEvent(WebhookBody[BudgetThresholdEventData]):
    """`budget.threshold`."""

    type: Literal["budget.threshold"]


class AutoTopUpFailedEventData(BaseModel):
    """The saved card refused an automatic top-up: automatic top-up is now off."""

    alert_id: str = Field(description="Unique per purchase (the same on every retry): deduplicate on it.")
    threshold_credits: int = Field(description="The auto top-up threshold whose crossing asked for it.")
    pack_id: str = Field(description="The pack it tried to buy.")
    failure_code: str = Field(description="Stripe's code: card_declined, authentication_required, ...")
    failure_message: str = Field(description="Stripe's message.")
    auto_top_up_enabled: bool = Field(description="Always false: turn it on again once the card is fixed.")


class AutoTopUpFailedEvent(WebhookBody[AutoTopUpFailedEventData]):
    """`auto_top_up.failed`."""

    type: Literal["auto_top_up.failed"]


# Every event body, as `_declare` documents them.
EventModel = (
    type[BatchEvent]
    | type[TaskEvent]
    | type[CreditsLowEvent]
    | type[BudgetThresholdEvent]
    | type[AutoTopUpFailedEvent]
)
