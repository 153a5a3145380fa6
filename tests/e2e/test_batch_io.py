"""Batch input and output as integrators use them (issue 25), through REST on both stacks: gzip
bodies, the zip of videos, errors listed at once, idempotency and rate headers. The 10,000-line
JSONL round trip is a scale test (tests/scale/batch_io/test_ten_thousand_lines.py)."""

from __future__ import annotations

import gzip
import io
import json
import uuid
import zipfile

from tests.e2e.jsonl_bodies import CAT_DOG_FOX, CREATE, JSONL, json_lines, jsonl_body
from tests.rest_api import Api


def test_gzip_bodies_json_and_jsonl_create_batches_that_echo_custom_ids(api: Api) -> None:
    customer = api.new_customer(credits=1_000)
    as_json = gzip.compress(
        json.dumps(
            {"name": "zipped", "items": [{"prompt": "a cat", "model": "sora-2", "custom_id": "json-1"}]}
        ).encode()
    )
    as_jsonl = gzip.compress(
        jsonl_body([{"custom_id": "jsonl-1", "body": {"prompt": "a dog", "model": "veo-3"}}])
    )

    from_json = api.http.post(
        CREATE,
        content=as_json,
        headers={**customer.headers, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    from_jsonl = api.http.post(
        CREATE, content=as_jsonl, headers={**customer.headers, **JSONL, "Content-Encoding": "gzip"}
    )

    assert (from_json.status_code, from_jsonl.status_code) == (202, 202), (from_json.text, from_jsonl.text)
    tasks = api.tasks(customer, from_json.json()["batch_id"]) + api.tasks(
        customer, from_jsonl.json()["batch_id"]
    )
    assert [(task["custom_id"], task["model"]) for task in tasks] == [
        ("json-1", "sora-2"),
        ("jsonl-1", "veo-3"),
    ]
    assert api.batch(customer, from_json.json()["batch_id"])["name"] == "zipped"


def test_a_bad_request_is_answered_with_every_problem_at_once_naming_each_item(api: Api) -> None:
    customer = api.new_customer(credits=1_000)
    body = jsonl_body(
        [
            {"prompt": "fine", "model": "sora-2", "custom_id": "a"},
            {"prompt": "", "model": "sora-2", "custom_id": "a"},
            {"prompt": "fine", "model": "sora-9"},
            {"prompt": "fine", "model": "veo-3-fast", "duration_seconds": 60},
            {"prompt": "fine", "model": "sora-2", "metadata": {f"k{n}": "v" for n in range(17)}},
        ]
    )

    refused = api.http.post(CREATE, content=body, headers={**customer.headers, **JSONL})

    assert refused.status_code == 422, refused.text
    found = [(error["loc"], error["code"]) for error in refused.json()["error"]["errors"]]
    assert found == [
        (["items", 1, "prompt"], "empty"),
        (["items", 4, "metadata"], "too_many"),
        (["items", 1, "custom_id"], "duplicate"),
        # The price list's refusals are in the same answer (ADR-088).
        (["items", 2, "model"], "unknown_model"),
        (["items", 3, "duration_seconds"], "out_of_range"),
    ]
    # The price list's refusals alone name their items too.
    priced = jsonl_body(
        [
            {"prompt": "fine", "model": "sora-9"},
            {"prompt": "fine", "model": "veo-3-fast", "duration_seconds": 60},
            {"prompt": "fine", "model": "sora-9"},
        ]
    )
    refused = api.http.post(CREATE, content=priced, headers={**customer.headers, **JSONL})
    assert refused.status_code == 422, refused.text
    errors = refused.json()["error"]["errors"]
    assert [(error["loc"], error["code"]) for error in errors] == [
        (["items", 0, "model"], "unknown_model"),
        (["items", 1, "duration_seconds"], "out_of_range"),
        (["items", 2, "model"], "unknown_model"),
    ]
    # Shape problems of several lines, without a library's prefix in any message.
    shapes = api.http.post(
        CREATE,
        content=b'{"prompt": 5, "model": "sora-2"}\nnot json\n'
        b'{"prompt": "x", "model": "sora-2", "colour": 1}\n',
        headers={**customer.headers, **JSONL},
    )
    assert shapes.status_code == 422, shapes.text
    errors = shapes.json()["error"]["errors"]
    assert [(error["loc"][:2], error["code"]) for error in errors] == [
        (["items", 0], "string_type"),
        (["items", 1], "invalid_json"),
        (["items", 2], "extra_forbidden"),
    ]
    assert not any(error["message"].startswith(("Value error", "Assertion")) for error in errors)
    assert api.credits(customer)["available_credits"] == 1_000


def test_idempotency_key_replays_marks_the_replay_and_a_reused_key_names_its_batch(api: Api) -> None:
    customer = api.new_customer(credits=1_000)
    key = f"idem-{uuid.uuid4()}"
    body = {"items": [{"prompt": "a cat", "model": "sora-2", "custom_id": "only"}]}

    first = api.http.post(CREATE, json=body, headers={**customer.headers, "Idempotency-Key": key})
    again = api.http.post(CREATE, json=body, headers={**customer.headers, "Idempotency-Key": key})
    old_name = api.http.post(CREATE, json=body, headers={**customer.headers, "X-Request-ID": key})
    other = api.http.post(
        CREATE,
        json={"items": [{"prompt": "a dog", "model": "sora-2"}]},
        headers={**customer.headers, "Idempotency-Key": key},
    )
    disagree = api.http.post(
        CREATE, json=body, headers={**customer.headers, "Idempotency-Key": key, "X-Request-ID": "another"}
    )

    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    batch_id = first.json()["batch_id"]
    for replay in (again, old_name):
        assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (202, "true")
        assert replay.json()["batch_id"] == batch_id
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert other.json()["error"]["batch_id"] == batch_id and batch_id in other.json()["error"]["message"]
    assert disagree.status_code == 422
    assert disagree.json()["error"]["errors"][0]["loc"] == ["Idempotency-Key"]
    api.wait_until_settled(customer, batch_id)
    assert api.credits(customer)["available_credits"] == 990


def test_every_answer_carries_the_rate_limit_headers(api: Api) -> None:
    customer = api.new_customer(credits=100)
    answers = [
        api.http.get("/api/enterprise/credits", headers=customer.headers),
        api.http.get("/api/enterprise/credits"),
        api.http.get(f"{CREATE}/{uuid.uuid4()}", headers=customer.headers),
        api.http.post(CREATE, json={"items": []}, headers=customer.headers),
        api.http.get("/healthz"),
    ]

    assert [answer.status_code for answer in answers] == [200, 401, 404, 422, 200]
    for answer in answers:
        limit, remaining, reset = (
            int(answer.headers[f"RateLimit-{part}"]) for part in ("Limit", "Remaining", "Reset")
        )
        assert 0 <= remaining <= limit and reset >= 0
    # The keyed answers spend the key's quota.
    assert int(answers[2].headers["RateLimit-Remaining"]) < int(answers[2].headers["RateLimit-Limit"])


def test_videos_come_as_one_zip_with_a_manifest_and_links_redirect_to_the_file(api: Api) -> None:
    customer = api.new_customer(credits=1_000)
    batch_id = api.create_settled_batch(customer, CAT_DOG_FOX)

    archive = api.http.get(f"{CREATE}/{batch_id}/videos.zip", headers=customer.headers)
    results = json_lines(api.http.get(f"{CREATE}/{batch_id}/results", headers=customer.headers))
    link = api.http.get(results[0]["video_url"], headers=customer.headers)

    assert archive.status_code == 200, archive.text
    with zipfile.ZipFile(io.BytesIO(archive.content)) as opened:
        names = opened.namelist()
        manifest = [json.loads(line) for line in opened.read("manifest.jsonl").splitlines()]
        assert all(opened.read(line["file"]) for line in manifest)
    assert names == ["videos/00000-cat.mp4", "videos/00002-fox.mp4", "manifest.jsonl"]
    assert [(line["custom_id"], line["file"]) for line in manifest] == [
        ("cat", "videos/00000-cat.mp4"),
        ("fox", "videos/00002-fox.mp4"),
    ]
    assert link.status_code == 307 and "/videos/" in link.headers["Location"]
    assert api.http.get(link.headers["Location"]).status_code == 200
