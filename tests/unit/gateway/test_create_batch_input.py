"""The create body's other forms: JSONL (OpenAI Batch-style lines too) and gzip, read as a stream
with a decompressed limit; large requests go to the batch service in parts; rate headers."""

from __future__ import annotations

import gzip
import json
from typing import Any

from fastapi.testclient import TestClient

from libs.config import Settings
from services.gateway.entrypoints.app import create_app
from tests.unit.gateway.gateway_fakes import (
    CUSTOMER,
    FakeBatch,
    FakeBilling,
    FakeWebhook,
    Readiness,
    assert_error_shape,
    fake_backends,
)

URL = "/api/enterprise/video-batch"
JSONL = {**CUSTOMER, "Content-Type": "application/jsonl"}


def _jsonl(lines: list[Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def test_jsonl_lines_plain_and_openai_style_become_one_batch_with_its_fields_from_the_query(
    client: TestClient, batch: FakeBatch
) -> None:
    body = _jsonl(
        [
            {"prompt": "a cat", "model": "sora-2", "custom_id": "one", "metadata": {"shot": "1"}},
            {
                "custom_id": "two",
                "method": "POST",
                "url": "/v1/videos",
                "body": {"prompt": "a dog", "model": "veo-3"},
            },
        ]
    )

    response = client.post(
        URL,
        content=body + b"\n\n",
        params={
            "name": "june",
            "metadata[project]": "p",
            "deadline_seconds": "60",
            "webhook_url": "https://x.example/h",
        },
        headers=JSONL,
    )

    assert response.status_code == 202, response.text
    [sent] = batch.requests("CreateBatch")
    columns = sent.item_columns
    assert (list(columns.prompts), list(columns.models), list(columns.custom_ids)) == (
        ["a cat", "a dog"],
        ["sora-2", "veo-3"],
        ["one", "two"],
    )
    assert [dict(entry.pairs) for entry in columns.metadata] == [{"shot": "1"}, {}]
    assert (sent.name, dict(sent.metadata), sent.deadline_seconds, sent.webhook_url) == (
        "june",
        {"project": "p"},
        60,
        "https://x.example/h",
    )


def test_jsonl_problems_are_listed_by_item_with_unknown_query_parameters(
    client: TestClient, batch: FakeBatch
) -> None:
    body = _jsonl(
        [
            {"custom_id": "a", "body": {"prompt": "x", "model": "sora-2", "custom_id": "b"}},
            {"prompt": ["x"], "model": "sora-2"},
        ]
    )

    lines = client.post(URL, content=body, headers=JSONL)
    query = client.post(
        URL, content=body, params={"colour": "red", "deadline_seconds": "soon"}, headers=JSONL
    )

    assert lines.status_code == 422
    assert [(e["loc"], e["code"]) for e in lines.json()["error"]["errors"]] == [
        (["items", 0, "custom_id"], "mismatch"),
        (["items", 1, "prompt"], "string_type"),
    ]
    assert [(e["loc"], e["code"]) for e in query.json()["error"]["errors"]] == [
        (["colour"], "extra_forbidden"),
        (["deadline_seconds"], "int_parsing"),
    ]
    assert batch.requests("CreateBatch") == []


def test_gzip_json_is_read_and_a_gzip_bomb_stops_at_the_decompressed_limit(
    client: TestClient, settings: Settings, batch: FakeBatch
) -> None:
    document = {"items": [{"prompt": "a cat", "model": "sora-2", "custom_id": "z"}]}
    zipped = gzip.compress(json.dumps(document).encode())
    # Far more than the decompressed limit, in far less than the body limit.
    bomb = gzip.compress(b"{" + b" " * (settings.max_create_body_bytes * 50) + b"}")
    assert len(bomb) < settings.max_create_body_bytes

    accepted = client.post(URL, content=zipped, headers={**CUSTOMER, "Content-Encoding": "gzip"})
    exploded = client.post(URL, content=bomb, headers={**CUSTOMER, "Content-Encoding": "gzip"})
    truncated = client.post(URL, content=zipped[:-8], headers={**CUSTOMER, "Content-Encoding": "gzip"})
    unknown = client.post(URL, content=zipped, headers={**CUSTOMER, "Content-Encoding": "br"})
    wrong_type = client.post(URL, content=b"<items/>", headers={**CUSTOMER, "Content-Type": "text/xml"})

    assert accepted.status_code == 202, accepted.text
    assert list(batch.requests("CreateBatch")[0].item_columns.custom_ids) == ["z"]
    assert exploded.status_code == 413
    assert_error_shape(exploded.json(), "payload_too_large")
    assert (truncated.status_code, truncated.json()["error"]["code"]) == (400, "bad_request")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (415, "unsupported_media_type")
    assert (wrong_type.status_code, wrong_type.json()["error"]["code"]) == (415, "unsupported_media_type")
    assert len(batch.requests("CreateBatch")) == 1


def test_a_request_too_large_for_one_message_goes_as_one_stream_of_parts(
    roomy_client: TestClient, batch: FakeBatch
) -> None:
    items = [{"prompt": f"{n} " + "x" * 400, "model": "sora-2"} for n in range(10_000)]

    response = roomy_client.post(URL, content=_jsonl(items), headers={**JSONL, "Idempotency-Key": "big-1"})

    assert response.status_code == 202, response.text
    parts = batch.requests("CreateBatchStream")
    assert len(parts) == 2 and batch.requests("CreateBatch")[0].request_id == "big-1"
    assert parts[0].request_id == "big-1" and parts[1].request_id == ""
    assert sum(len(part.item_columns.prompts) for part in parts) == 10_000
    assert [prompt.split()[0] for part in parts for prompt in part.item_columns.prompts] == [
        str(n) for n in range(10_000)
    ]


def test_a_rate_limited_answer_reports_no_remaining_quota(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit_per_second": 0.001, "rate_limit_burst": 2})
    backends = fake_backends(FakeBilling(), FakeBatch(), Readiness(), FakeWebhook())
    with TestClient(create_app(limited, backends)) as client:
        answers = [client.get("/api/enterprise/credits", headers=CUSTOMER) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert [answer.headers["RateLimit-Remaining"] for answer in answers] == ["1", "0", "0"]
    assert {answer.headers["RateLimit-Limit"] for answer in answers} == {"2"}
    assert int(answers[2].headers["RateLimit-Reset"]) > 0
