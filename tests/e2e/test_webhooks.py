"""Webhooks through the whole system: the seed demo's batch.completed, signed, once; SSRF at creation."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid

import pytest
from standardwebhooks.webhooks import Webhook

from libs.ledger_keys import TRANSFER_ID_NAMESPACE
from tests.e2e.test_money_path import SEED_PROMPTS
from tests.rest_api import Api


def test_seed_demo_batch_completed_arrives_once_signed_with_the_settled_figures(
    api: Api, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    customer = api.new_customer(credits=5000)
    items = [{"prompt": prompt, "model": "sora-2"} for prompt in SEED_PROMPTS]
    created = api.http.post(
        "/api/enterprise/video-batch", json={"items": items, "webhook_url": url}, headers=customer.headers
    )
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    api.wait_until_settled(customer, batch_id)

    def completed() -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in received if json.loads(b)["type"] == "batch.completed"]

    deadline = time.monotonic() + 30
    while not completed() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(completed()) == 1
    headers, body = completed()[0]
    secret = api.http.get("/api/enterprise/webhook-secret", headers=customer.headers).json()["secret"]
    data = Webhook(secret).verify(body, headers)["data"]
    # The webhook carries exactly the batch fields the REST API shows once settled, and where the
    # batch's results and errors files are (complete now).
    files = {key: data.pop(key) for key in ("results_url", "errors_url")}
    view = api.batch(customer, batch_id)
    assert data == {key: view[key] for key in data}
    results = api.http.get(files["results_url"], headers=customer.headers)
    errors = api.http.get(files["errors_url"], headers=customer.headers)
    assert (len(results.text.splitlines()), len(errors.text.splitlines())) == (19, 1)
    assert set(data) >= {"batch_id", "status", "success_count", "failed_count", "credits_spent"}
    assert (data["frozen_credits"], data["credits_spent"] + data["refunded_credits"]) == (200, 200)
    assert data["settlement_status"] in ("settled", "refunded")

    messages = api.http.get(
        "/api/enterprise/webhook-messages", params={"batch_id": batch_id}, headers=customer.headers
    ).json()["items"]
    assert sorted((m["event_type"], m["status"]) for m in messages) == [
        ("batch.completed", "delivered"),
        ("batch.queued", "delivered"),
    ]
    admin_view = api.http.get(f"/api/admin/batches/{batch_id}/webhooks", headers=api.admin).json()["items"]
    assert {m["message_id"] for m in admin_view} == {m["message_id"] for m in messages}
    assert all(len(m["attempts"]) == 1 for m in admin_view)
    assert headers["webhook-id"] in {m["message_id"] for m in messages}


@pytest.mark.parametrize(
    "webhook_url",
    [
        "http://169.254.169.254/latest",
        # Other spellings of it, refused as well although these stacks allow private addresses.
        "http://[::ffff:a9fe:a9fe]/latest",
        "http://0xa9fea9fe/latest",
        "http://169.254.170.2/v2/credentials",
        "http://metadata.google.internal./computeMetadata/v1/",
    ],
)
def test_metadata_address_webhook_url_is_refused_with_422_and_nothing_is_charged(
    api: Api, webhook_url: str
) -> None:
    customer = api.new_customer(credits=100)
    response = api.http.post(
        "/api/enterprise/video-batch",
        json={"items": [{"prompt": "x", "model": "sora-2"}], "webhook_url": webhook_url},
        headers=customer.headers,
    )

    assert response.status_code == 422, response.text
    assert api.credits(customer)["available_credits"] == 100


def test_another_tenants_message_cannot_be_redelivered(api: Api) -> None:
    owner, other = api.new_customer(credits=0), api.new_customer(credits=0)
    endpoint = api.http.post(
        "/api/enterprise/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/x", "event_types": ["task.failed"]},
        headers=owner.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    assert endpoint.json()["secret"].startswith("whsec_")
    endpoint_id = endpoint.json()["endpoint_id"]

    foreign_delete = api.http.delete(
        f"/api/enterprise/webhook-endpoints/{endpoint_id}", headers=other.headers
    )
    assert foreign_delete.status_code == 404
    missing = api.http.post(
        f"/api/enterprise/webhook-messages/msg_{'0' * 32}/redeliver", headers=other.headers
    )
    assert missing.status_code == 404
    listed = api.http.get("/api/enterprise/webhook-endpoints", headers=owner.headers).json()["items"]
    assert [e["endpoint_id"] for e in listed] == [endpoint_id]


def test_rotated_endpoint_secret_is_shown_once_and_both_secrets_verify_during_the_overlap(
    api: Api, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    owner, other = api.new_customer(credits=100), api.new_customer(credits=0)
    endpoint = api.http.post("/api/enterprise/webhook-endpoints", json={"url": url}, headers=owner.headers)
    assert endpoint.status_code == 201, endpoint.text
    endpoint_id, old = endpoint.json()["endpoint_id"], endpoint.json()["secret"]

    path = f"/api/enterprise/webhook-endpoints/{endpoint_id}/rotate-secret"
    assert api.http.post(path, headers=other.headers).status_code == 404
    rotated = api.http.post(path, headers=owner.headers)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert rotated.json()["endpoint_id"] == endpoint_id and rotated.json()["previous_expires_at"]
    listed = api.http.get("/api/enterprise/webhook-endpoints", headers=owner.headers).json()["items"]
    assert all("secret" not in item for item in listed)

    created = api.create_batch(owner, [{"prompt": "a lighthouse at dawn", "model": "sora-2"}])
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    deadline = time.monotonic() + 30
    while not (mine := [(h, b) for h, b in received if json.loads(b)["data"]["batch_id"] == batch_id]):
        assert time.monotonic() < deadline, "no delivery to the rotated endpoint"
        time.sleep(0.05)
    headers, body = mine[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers)["data"]["batch_id"] == batch_id


def test_a_task_succeeded_webhook_links_to_its_video_only_through_the_api_key(
    api: Api, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    owner, other = api.new_customer(credits=100), api.new_customer(credits=0)
    endpoint = api.http.post(
        "/api/enterprise/webhook-endpoints",
        json={"url": url, "event_types": ["task.succeeded"]},
        headers=owner.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    created = api.create_batch(owner, [{"prompt": "a lighthouse at dawn", "model": "sora-2"}])
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    deadline = time.monotonic() + 30
    while not (mine := [(h, b) for h, b in received if json.loads(b)["data"]["batch_id"] == batch_id]):
        assert time.monotonic() < deadline, "no task.succeeded delivery"
        time.sleep(0.05)
    headers, body = mine[0]
    data = Webhook(endpoint.json()["secret"]).verify(body, headers)["data"]
    assert data["status"] == "succeeded" and "video_url" not in data

    # The link answers the owner's key with a short-lived signed URL that plays; nobody else's.
    link = data["video_link_url"]
    assert link.endswith(f"/api/enterprise/video-batch/{batch_id}/tasks/{data['task_id']}/video")
    assert api.http.get(link).status_code == 401
    assert api.http.get(link, headers=other.headers).status_code == 404
    signed = api.http.get(link, headers=owner.headers)
    assert signed.status_code == 200, signed.text
    video = api.http.get(signed.json()["url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"


def test_a_task_webhooks_ledger_transfer_id_is_the_id_of_its_line_in_the_customers_ledger(
    api: Api, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    owner, other = api.new_customer(credits=100), api.new_customer(credits=0)
    endpoint = api.http.post(
        "/api/enterprise/webhook-endpoints",
        json={"url": url, "event_types": ["task.succeeded", "task.failed"]},
        headers=owner.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    items = [
        {"prompt": "a lighthouse at dawn", "model": "sora-2", "custom_id": "dawn"},
        {"prompt": "a lighthouse in a storm #fail", "model": "sora-2", "custom_id": "storm"},
        {"prompt": "a lighthouse at night", "model": "sora-2", "custom_id": "night"},
    ]
    created = api.create_batch(owner, items)
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    api.wait_until_settled(owner, batch_id)
    deadline = time.monotonic() + 30
    while len(mine := [(h, b) for h, b in received if json.loads(b)["data"]["batch_id"] == batch_id]) < 3:
        assert time.monotonic() < deadline, f"3 task deliveries expected, got {len(mine)}"
        time.sleep(0.05)
    events = {
        event["data"]["custom_id"]: event
        for event in (Webhook(endpoint.json()["secret"]).verify(body, headers) for headers, body in mine)
    }

    assert {custom_id: event["type"] for custom_id, event in events.items()} == {
        "dawn": "task.succeeded",
        "storm": "task.failed",
        "night": "task.succeeded",
    }
    # The customer's ledger of the batch: every item's capture or refund, with its public id.
    billing = api.http.get(f"/api/enterprise/video-batch/{batch_id}/billing", headers=owner.headers)
    assert billing.status_code == 200, billing.text
    transfers = {
        entry["ref_id"]: entry
        for entry in billing.json()["entries"]
        if entry["ref_type"] in ("batch_capture", "batch_refund")
    }
    tasks = {task["custom_id"]: task for task in api.tasks(owner, batch_id)}
    lines = {
        line["custom_id"]: line
        for kind in ("results", "errors")
        for line in map(
            json.loads,
            api.http.get(
                f"/api/enterprise/video-batch/{batch_id}/{kind}", headers=owner.headers
            ).text.splitlines(),
        )
    }
    for custom_id, event in events.items():
        data = event["data"]
        receipt = data["ledger_transfer_id"]
        transfer = transfers[data["task_id"]]
        assert (transfer["ledger_transfer_id"], transfer["ref_type"]) == (receipt, data["ledger_ref_type"])
        assert transfer["amount"] == data["credits_charged"] + data["credits_refunded"] == 10
        assert tasks[custom_id]["ledger_transfer_id"] == lines[custom_id]["ledger_transfer_id"] == receipt
        # Anyone can derive it from the ledger key of the task's outcome (ADR-003, ADR-104).
        assert receipt == str(uuid.uuid5(TRANSFER_ID_NAMESPACE, f"task_outcome:{data['task_id']}"))
    assert len({event["data"]["ledger_transfer_id"] for event in events.values()}) == 3
    # The refund is also a line of the available balance, in the ledger API and its CSV export.
    refund_id = events["storm"]["data"]["ledger_transfer_id"]
    ledger = api.ledger(owner, batch_id)
    assert [entry["ref_type"] for entry in ledger if entry["ledger_transfer_id"] == refund_id] == [
        "batch_refund"
    ]
    exported = api.http.get("/api/enterprise/ledger.csv", headers=owner.headers)
    assert exported.status_code == 200, exported.text
    rows = [
        row for row in csv.DictReader(io.StringIO(exported.text)) if row["ledger_transfer_id"] == refund_id
    ]
    assert [(row["ref_type"], row["ref_id"]) for row in rows] == [
        ("batch_refund", events["storm"]["data"]["task_id"])
    ]
    # Another tenant does not see the batch's money.
    assert (
        api.http.get(f"/api/enterprise/video-batch/{batch_id}/billing", headers=other.headers).status_code
        == 404
    )
