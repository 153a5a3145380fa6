"""The core money path through REST, with every service a separate process."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.rest_api import Api

SEED_PROMPTS = [
    "A cat playing piano",
    "A dog in space",
    "A bird flying over ocean",
    "A robot cooking pasta",
    "A city at night in the rain",
    "A fox running through snow",
    "A sailboat at sunset",
    "A astronaut on a horse",
    "A hot air balloon over mountains",
    "A jazz band in a cellar",
    "A lighthouse in a storm",
    "A child flying a kite",
    "A train crossing a bridge",
    "A koi pond in autumn",
    "A dragon made of clouds",
    "A desert caravan",
    "A coral reef",
    "A skateboarder at dawn",
    "A paper plane over Tokyo",
    "A glacier calving #fail",
]


def test_seed_demo_freezes_upfront_refunds_the_failure_and_settles_at_190(api: Api) -> None:
    customer = api.new_customer(credits=5000)
    items = [{"prompt": prompt, "model": "sora-2"} for prompt in SEED_PROMPTS]
    request_id = f"demo-{uuid.uuid4().hex[:8]}"

    created = api.create_batch(customer, items, request_id=request_id)

    assert created.status_code == 202, created.text
    body = created.json()
    batch_id = body.pop("batch_id")
    uuid.UUID(batch_id)
    assert body == {
        "ok": True,
        "total_count": 20,
        "cost_per_video": 10,
        "required_credits": 200,
        "available_credits": 5000,
        "status": "queued",
        "request_id": request_id,
        "balance_snapshot": True,
        "enqueue": "queued",
    }
    upfront = [e for e in api.ledger(customer, batch_id) if e["ref_type"] == "batch_upfront"]
    assert [(e["credits_delta"], e["balance_after"], e["batch_id"]) for e in upfront] == [
        (-200, 4800, batch_id)
    ]

    batch = api.wait_until_settled(customer, batch_id)

    assert batch["status"] == "partial"
    assert (
        batch["success_count"],
        batch["failed_count"],
        batch["cancelled_count"],
        batch["pending_count"],
    ) == (
        19,
        1,
        0,
        0,
    )
    assert (batch["frozen_credits"], batch["credits_spent"], batch["refunded_credits"]) == (200, 190, 10)
    assert batch["settlement_status"] == "refunded"
    assert batch["finished_at"] is not None
    assert api.credits(customer) == {"available_credits": 4810, "held_credits": 0, "debt_credits": 0}
    ledger = api.ledger(customer)
    assert [(e["ref_type"], e["credits_delta"]) for e in ledger] == [
        ("batch_refund", 10),
        ("batch_upfront", -200),
        ("topup", 5000),
    ]
    assert ledger[0]["balance_after"] == 4810
    tasks = api.tasks(customer, batch_id)
    assert [t["batch_index"] for t in tasks] == list(range(20))
    failed = [t for t in tasks if t["status"] == "failed"]
    assert [(t["batch_index"], t["failure_type"]) for t in failed] == [(19, "content_policy")]
    assert failed[0]["error_message"] and failed[0]["video_url"] is None
    succeeded = [t for t in tasks if t["status"] == "succeeded"]
    assert len(succeeded) == 19 and all(t["video_url"] and t["error_message"] is None for t in succeeded)
    video = httpx.get(succeeded[0]["video_url"], timeout=10)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"


def test_a_batch_costing_more_than_the_balance_is_refused_with_402_and_changes_nothing(api: Api) -> None:
    customer = api.new_customer(credits=100)
    items = [{"prompt": f"shot {i}", "model": "sora-2"} for i in range(20)]

    refused = api.create_batch(customer, items, request_id="too-expensive")

    assert refused.status_code == 402, refused.text
    assert refused.json() == {
        "ok": False,
        "error": {
            "code": "insufficient_credits",
            "message": refused.json()["error"]["message"],
            "required_credits": 200,
            "available_credits": 100,
        },
    }
    assert api.credits(customer) == {"available_credits": 100, "held_credits": 0, "debt_credits": 0}
    assert [e["ref_type"] for e in api.ledger(customer)] == ["topup"]
    again = api.create_batch(customer, items, request_id="too-expensive")
    assert again.status_code == 402 and again.json() == refused.json()
    listed = api.http.get("/api/enterprise/video-batch", headers=customer.headers).json()["items"]
    assert [(b["status"], b["success_count"], b["failed_count"]) for b in listed] == [("rejected", 0, 0)]


def test_ten_concurrent_retries_with_one_request_id_make_one_batch_and_one_charge(api: Api) -> None:
    customer = api.new_customer(credits=1000)
    items = [{"prompt": f"retry {i}", "model": "sora-2"} for i in range(5)]
    key = f"retry-{uuid.uuid4()}"

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda _: api.create_batch(customer, items, request_id=key), range(10)))

    assert {r.status_code for r in responses} == {202}
    assert len({r.text for r in responses}) == 1, "every replay must return the identical body"
    batch_id = responses[0].json()["batch_id"]
    assert [e["ref_type"] for e in api.ledger(customer, batch_id)].count("batch_upfront") == 1
    reused = api.create_batch(customer, [{"prompt": "something else", "model": "sora-2"}], request_id=key)
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    batch = api.wait_until_settled(customer, batch_id)
    assert batch["status"] == "completed" and batch["settlement_status"] == "settled"
    assert api.credits(customer)["available_credits"] == 950


def test_flaky_items_succeed_after_retries_and_timeouts_fail_and_are_refunded(api: Api) -> None:
    customer = api.new_customer(credits=100)
    items = [
        {"prompt": "steady shot", "model": "sora-2"},
        {"prompt": "wobbly shot #flaky", "model": "sora-2"},
        {"prompt": "stuck shot #timeout", "model": "sora-2"},
    ]

    created = api.create_batch(customer, items)

    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    batch = api.wait_until_settled(customer, batch_id)
    tasks = {t["batch_index"]: t for t in api.tasks(customer, batch_id)}
    assert (tasks[0]["status"], tasks[0]["attempts"]) == ("succeeded", 1)
    assert (tasks[1]["status"], tasks[1]["attempts"]) == ("succeeded", 3)
    assert (tasks[2]["status"], tasks[2]["failure_type"], tasks[2]["attempts"]) == ("failed", "timeout", 3)
    assert (batch["status"], batch["credits_spent"], batch["refunded_credits"]) == ("partial", 20, 10)
    assert api.credits(customer) == {"available_credits": 80, "held_credits": 0, "debt_credits": 0}
