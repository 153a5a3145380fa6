"""Spend alerts in the webhook service (ADR-125): billing's SpendAlert becomes a `credits.low` or
`budget.threshold` body, deduplicated by its alert id, sent to endpoints by default."""

from __future__ import annotations

import json

from reelbatch.proto.events.v1 import events_pb2

from services.webhook.domain.events import endpoint_wants, normalize_event_types
from services.webhook.entrypoints.consumer import spend_alert


def test_a_low_balance_alert_carries_the_line_and_the_balance() -> None:
    event = spend_alert(
        events_pb2.SpendAlert(
            alert_id="a-1", tenant_id="t", alert_type="credits.low", threshold_credits=500, value_credits=470
        )
    )
    body = json.loads(event.body())
    assert body["type"] == "credits.low"
    assert body["data"] == {"alert_id": "a-1", "threshold_credits": 500, "available_credits": 470}
    assert event.batch_id == "" and event.dedupe_key("endpoint:e") == "credits.low:a-1:endpoint:e"


def test_a_budget_alert_carries_the_budget_and_its_use() -> None:
    event = spend_alert(
        events_pb2.SpendAlert(
            alert_id="a-2",
            tenant_id="t",
            alert_type="budget.threshold",
            threshold_credits=800,
            value_credits=850,
            budget_scope="tenant",
            monthly_credits=1_000,
            threshold_percent=80,
            period_end="2027-01-01T00:00:00+00:00",
        )
    )
    data = json.loads(event.body())["data"]
    assert data["budget_scope_id"] is None and data["used_credits"] == 850 and data["threshold_percent"] == 80


def test_alerts_are_in_the_default_subscription_and_can_be_chosen_alone() -> None:
    assert endpoint_wants((), "credits.low") and endpoint_wants((), "budget.threshold")
    assert not endpoint_wants((), "task.succeeded")
    assert normalize_event_types(["budget.threshold"]) == ("budget.threshold",)
    assert not endpoint_wants(("budget.threshold",), "credits.low")


def test_a_declined_automatic_top_up_tells_the_owner_it_is_off() -> None:
    event = spend_alert(
        events_pb2.SpendAlert(
            alert_id="purchase-1",
            tenant_id="t",
            alert_type="auto_top_up.failed",
            threshold_credits=1_000,
            pack_id="pilot",
            failure_code="card_declined",
            failure_message="Your card was declined.",
        )
    )
    body = json.loads(event.body())
    assert body["type"] == "auto_top_up.failed"
    assert body["data"] == {
        "alert_id": "purchase-1",
        "threshold_credits": 1_000,
        "pack_id": "pilot",
        "failure_code": "card_declined",
        "failure_message": "Your card was declined.",
        "auto_top_up_enabled": False,
    }
    assert endpoint_wants((), "auto_top_up.failed")
