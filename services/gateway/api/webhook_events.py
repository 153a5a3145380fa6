"""The webhooks we send, declared for the OpenAPI `webhooks` section (never served as routes).

No `from __future__ import annotations`: FastAPI must resolve the endpoints' annotations.
"""

from fastapi import APIRouter

from services.gateway.schemas.webhook_events import (
    SIGNING_STORY,
    AutoTopUpFailedEvent,
    BatchEvent,
    BudgetThresholdEvent,
    CreditsLowEvent,
    EventModel,
    TaskEvent,
)

_RECEIVED: dict[int | str, dict[str, object]] = {
    "2XX": {"description": "Received: any 2xx ends the retries of this message."}
}


def webhook_events() -> APIRouter:
    """One operation per event type, each documenting its body and the signing headers."""
    router = APIRouter()
    for event_type, model, what in (
        ("batch.queued", BatchEvent, "A batch's credits were frozen and its items queued."),
        ("batch.completed", BatchEvent, "A batch settled: every item is final and refunds are done."),
        ("batch.cancelled", BatchEvent, "A batch was cancelled; what did not run is refunded."),
        ("task.succeeded", TaskEvent, "An item's video is ready (task events are opt-in per endpoint)."),
        ("task.failed", TaskEvent, "An item failed or was cancelled; its price is refunded."),
        (
            "credits.low",
            CreditsLowEvent,
            "A batch took the available credits below your low-balance threshold (once per crossing; "
            "a top-up back over it re-arms the alert).",
        ),
        (
            "budget.threshold",
            BudgetThresholdEvent,
            "A batch took a budget's use this month to your alert percent of its cap (once per "
            "crossing and budget; a refund back under it re-arms the alert).",
        ),
        (
            "auto_top_up.failed",
            AutoTopUpFailedEvent,
            "Your saved card refused an automatic top-up; automatic top-up turned itself off (turn it "
            "on again once the card is fixed).",
        ),
    ):
        _declare(router, event_type, model, what)
    return router


def _declare(router: APIRouter, event_type: str, model: EventModel, what: str) -> None:
    async def receive(body: model) -> None:  # type: ignore[valid-type]
        """Never called: the operation only documents what we POST to your endpoint."""

    router.add_api_route(
        event_type,
        receive,
        methods=["POST"],
        name=event_type.replace(".", "_") + "_webhook",
        summary=f"{event_type}: {what}",
        description=f"{what}\n\n{SIGNING_STORY}",
        responses=_RECEIVED,
        status_code=200,
    )
