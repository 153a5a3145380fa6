"""A 10,000-line JSONL batch as integrators send it (issue 25), through REST on both stacks: their
own ids, generation settings and input images come back as results and errors files matched by
custom_id, summing to the ledger and naming its lines. Half a minute of both stacks: a scale test
(`make test-scale`); the rest of batch I/O is in tests/e2e/test_batch_io.py."""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from typing import Any

from tests.e2e.input_images import PNG, image_server, upload_image
from tests.e2e.jsonl_bodies import CREATE, JSONL, json_lines, jsonl_body
from tests.rest_api import Api, Customer


def _ledger(api: Api, customer: Customer, batch_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    params: dict[str, Any] = {"batch_id": batch_id, "limit": 500}
    while True:
        page = api.http.get("/api/enterprise/ledger", params=params, headers=customer.headers)
        assert page.status_code == 200, page.text
        entries += page.json()["items"]
        if not page.json()["next_cursor"]:
            return entries
        params["cursor"] = page.json()["next_cursor"]


# Every 50th line (from the 2nd) has settings and input images, served by a local file server or
# uploaded: 200 lines in four kinds, so the worker fetches 100 URLs that answer and 100 that do not.
IMAGE_EVERY = 50
FAST_WITH_SETTINGS, FRAMES_AND_REFERENCES, MISSING_IMAGE, NOT_AN_IMAGE = range(4)
# What each kind costs: veo-3-fast (2 + 1 for 1080p + 1 for audio) x 6 s = 24; veo-3 20 a video.
KIND_PRICE = {FAST_WITH_SETTINGS: 24, FRAMES_AND_REFERENCES: 20, MISSING_IMAGE: 20, NOT_AN_IMAGE: 20}


def _image_kind(n: int) -> int | None:
    """The kind of line n when it has input images, else None (a plain sora-2 line)."""
    return (n // IMAGE_EVERY) % 4 if n % IMAGE_EVERY == 1 else None


def _image_item(n: int, kind: int, images: str, file_id: str) -> dict[str, Any]:
    prompt = f"shot {n}: a lighthouse, slow pan " + "y" * 200
    if kind == FAST_WITH_SETTINGS:
        settings: dict[str, Any] = {
            "aspect_ratio": "9:16",
            "resolution": "1080p",
            "audio": True,
            "seed": 42,
            "negative_prompt": "no text",
            "first_frame": {"url": f"{images}/frame.png"},
        }
        return {"prompt": prompt, "model": "veo-3-fast", "duration_seconds": 6, "settings": settings}
    if kind == FRAMES_AND_REFERENCES:
        settings = {
            "first_frame": {"file_id": file_id},
            "last_frame": {"url": f"{images}/frame.png"},
            "reference_images": [{"file_id": file_id}],
        }
    else:
        missing = kind == MISSING_IMAGE
        settings = {"first_frame": {"url": f"{images}/{'gone.png' if missing else 'text.txt'}"}}
    return {"prompt": prompt, "model": "veo-3", "settings": settings}


def _billing_entries(api: Api, customer: Customer, batch_id: str) -> list[dict[str, Any]]:
    """Every transfer of the batch in the customer's batch ledger (`.../billing`), page by page."""
    entries: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000}
    while True:
        page = api.http.get(f"{CREATE}/{batch_id}/billing", params=params, headers=customer.headers)
        assert page.status_code == 200, page.text
        entries += page.json()["entries"]
        if not page.json()["next_cursor"]:
            return entries
        params["cursor"] = page.json()["next_cursor"]


def test_a_ten_thousand_line_jsonl_batch_with_settings_and_images_round_trips_matched_by_custom_id(
    api: Api,
) -> None:
    customer = api.new_customer(credits=200_000)
    with image_server() as images:
        file_id = upload_image(api, customer, PNG)
        lines: list[dict[str, Any]] = []
        for n in range(10_000):
            kind = _image_kind(n)
            # 250 characters an item: 2.5 M in all, which reach the batch service as a stream of parts.
            prompt = f"frame {n} 海の上の猫 " + ("#fail" if n % 97 == 0 else "x" * 250)
            item: dict[str, Any] = (
                {"prompt": prompt, "model": "sora-2"}
                if kind is None
                else _image_item(n, kind, images, file_id)
            )
            item["metadata"] = {"shot": str(n)}
            # Half plain lines, half OpenAI Batch-style lines.
            lines.append({**item, "custom_id": f"c-{n}"} if n % 2 else {"custom_id": f"c-{n}", "body": item})
        name = f"june-{uuid.uuid4().hex[:6]}"

        created = api.http.post(
            CREATE,
            content=jsonl_body(lines),
            params={"name": name, "metadata[project]": "june"},
            headers={**customer.headers, **JSONL, "Idempotency-Key": f"big-{uuid.uuid4()}"},
            timeout=120,
        )

        assert created.status_code == 202, created.text
        batch_id = created.json()["batch_id"]
        kinds = {n: kind for n in range(10_000) if (kind := _image_kind(n)) is not None}
        # 9,800 sora-2 lines at 10, and 50 of each image kind.
        assert len(kinds) == 200
        assert created.json()["required_credits"] == 9_800 * 10 + 50 * (24 + 20 + 20 + 20) == 102_200
        # Items of several prices: no single price per video.
        assert created.json()["cost_per_video"] is None
        batch = api.wait_until_settled(customer, batch_id, timeout=240)
    results = json_lines(api.http.get(f"{CREATE}/{batch_id}/results", headers=customer.headers))
    errors = json_lines(api.http.get(f"{CREATE}/{batch_id}/errors", headers=customer.headers))

    refused_images = {n for n, kind in kinds.items() if kind in (MISSING_IMAGE, NOT_AN_IMAGE)}
    blocked = {n for n in range(0, 10_000, 97) if n not in kinds}
    failing = {f"c-{n}" for n in blocked | refused_images}
    assert (len(blocked), len(refused_images)) == (102, 100)
    unexpected = Counter(
        (line["failure_type"], line["reason"]) for line in errors if line["custom_id"] not in failing
    )
    assert {line["custom_id"] for line in errors} == failing, f"unexpected failures: {unexpected}"
    assert {line["custom_id"] for line in results} == {f"c-{n}" for n in range(10_000)} - failing
    assert (batch["success_count"], batch["failed_count"]) == (9_798, 202)
    for line in results + errors:
        n = int(line["custom_id"][2:])
        assert (line["batch_index"], line["metadata"]) == (n, {"shot": str(n)})
        price = KIND_PRICE[kinds[n]] if n in kinds else 10
        assert line["credits_charged"] + line["credits_refunded"] == price
        assert line["model"] == ("sora-2" if n not in kinds else "veo-3-fast" if price == 24 else "veo-3")
    assert {
        (line["status"], line["failure_type"], line["fault"], line["credits_refunded"]) for line in errors
    } == {
        ("failed", "content_policy", "customer_input", 10),
        ("failed", "invalid_input", "customer_input", 20),
    }
    assert all(
        line["video_url"].endswith(f"/tasks/{line['task_id']}/video?redirect=true") for line in results
    )
    # The files sum to the batch and to the ledger: charged is what was captured, refunded what
    # the refunds returned.
    charged = sum(line["credits_charged"] for line in results + errors)
    refunded = sum(line["credits_refunded"] for line in results + errors)
    assert (charged, refunded) == (batch["credits_spent"], batch["refunded_credits"]) == (99_180, 3_020)
    ledger = _ledger(api, customer, batch_id)
    by_type: dict[str, int] = {}
    for entry in ledger:
        by_type[entry["ref_type"]] = by_type.get(entry["ref_type"], 0) + entry["credits_delta"]
    assert by_type["batch_upfront"] == -(charged + refunded)
    assert by_type["batch_refund"] + by_type.get("batch_settle", 0) == refunded
    refunds = sorted(entry["credits_delta"] for entry in ledger if entry["ref_type"] == "batch_refund")
    assert refunds == [10] * 102 + [20] * 100
    # Every line's receipt is a line of the customer's ledger of the batch, of its kind and amount.
    transfers = {entry["ledger_transfer_id"]: entry for entry in _billing_entries(api, customer, batch_id)}
    for line in results + errors:
        transfer = transfers[line["ledger_transfer_id"]]
        assert (transfer["ref_type"], transfer["ref_id"]) == (line["ledger_ref_type"], line["task_id"])
        assert transfer["amount"] == line["credits_charged"] + line["credits_refunded"]
    assert {entry["ledger_transfer_id"] for entry in ledger if entry["ref_type"] == "batch_refund"} == {
        line["ledger_transfer_id"] for line in errors
    }

    # The tasks show the settings as sent; a refused image fails its item before any attempt.
    # (The results lines above already hold every item's model, price and status: the first page of
    # tasks and the failed ones are enough to see every kind's settings, 110 of the 200.)
    def task_page(**only: Any) -> list[dict[str, Any]]:
        page = api.http.get(
            f"{CREATE}/{batch_id}/tasks", params={"limit": 1000, **only}, headers=customer.headers
        )
        assert page.status_code == 200, page.text
        items: list[dict[str, Any]] = page.json()["items"]
        return items

    failed_tasks = task_page(status="failed")
    assert len(failed_tasks) == 202
    tasks = {task["custom_id"]: task for task in task_page() + failed_tasks}
    shown = {n: kind for n, kind in kinds.items() if f"c-{n}" in tasks}
    assert sorted(Counter(shown.values()).items()) == [(0, 5), (1, 5), (2, 50), (3, 50)]
    for n, kind in shown.items():
        task, sent = tasks[f"c-{n}"], _image_item(n, kind, images, file_id)
        assert task["settings"] == sent["settings"]
        if kind == FAST_WITH_SETTINGS:
            assert (task["status"], task["credits_charged"], task["duration_seconds"]) == ("succeeded", 24, 6)
        elif kind == FRAMES_AND_REFERENCES:
            assert (task["status"], task["credits_charged"]) == ("succeeded", 20)
            assert task["settings"]["first_frame"]["file_id"] == file_id
        else:
            assert (task["status"], task["failure_type"], task["attempts"]) == ("failed", "invalid_input", 0)
            assert (task["credits_charged"], task["credits_refunded"]) == (0, 20)
            expected = "404" if kind == MISSING_IMAGE else "not a PNG, JPEG or WebP"
            assert expected in task["error_message"]
    plain = tasks["c-2"]
    assert (plain["settings"], plain["credits_charged"], plain["status"]) == (None, 10, "succeeded")
    # The CSV form has the same lines, and the list finds the batch by its name and metadata.
    as_csv = api.http.get(f"{CREATE}/{batch_id}/errors", params={"format": "csv"}, headers=customer.headers)
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert {row["custom_id"] for row in rows} == failing
    listed = api.http.get(
        CREATE, params={"name": name, "metadata[project]": "june"}, headers=customer.headers
    ).json()["items"]
    assert [(found["batch_id"], found["name"], found["metadata"]) for found in listed] == [
        (batch_id, name, {"project": "june"})
    ]
