"""POST /api/enterprise/video-batch/{id}/retry-failed: optional body, replay header, views (ADR-048)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.gateway.gateway_fakes import (
    BATCH_ID,
    CUSTOMER,
    RETRY_ID,
    TENANT_ID,
    FakeBatch,
    assert_error_shape,
)

RETRY_URL = f"/api/enterprise/video-batch/{BATCH_ID}/retry-failed"


def test_a_repeated_retry_answers_the_same_batch_marked_idempotent_replayed(
    client: TestClient, batch: FakeBatch
) -> None:
    first = client.post(RETRY_URL, headers=CUSTOMER)
    again = client.post(RETRY_URL, headers=CUSTOMER)

    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["batch_id"] == again.json()["batch_id"] == RETRY_ID
    assert "idempotent-replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    # Same answer: the request id is the first call's, generated since the client sent none.
    assert again.json() == first.json()
    sent = batch.requests("RetryFailed")
    assert [(r.tenant_id, r.batch_id, list(r.failure_types)) for r in sent] == [(TENANT_ID, BATCH_ID, [])] * 2


def test_the_failure_types_of_the_body_are_sent_to_the_batch_service(
    client: TestClient, batch: FakeBatch
) -> None:
    answer = client.post(
        RETRY_URL,
        json={"failure_types": ["timeout", "content_policy", "invalid_input"]},
        headers={**CUSTOMER, "X-Request-ID": "retry-1"},
    )

    assert answer.status_code == 202
    [sent] = batch.requests("RetryFailed")
    assert (sent.request_id, list(sent.failure_types)) == (
        "retry-1",
        ["timeout", "content_policy", "invalid_input"],
    )


def test_an_empty_or_null_body_retries_the_default_failure_types(
    client: TestClient, batch: FakeBatch
) -> None:
    answers = [
        client.post(RETRY_URL, json={}, headers=CUSTOMER),
        client.post(RETRY_URL, json={"failure_types": None}, headers=CUSTOMER),
    ]

    assert [answer.status_code for answer in answers] == [202, 202]
    assert [list(sent.failure_types) for sent in batch.requests("RetryFailed")] == [[], []]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"failure_types": ["cancelled"]}, "failure_types[0]"),
        ({"failure_types": ["timeout", "nope"]}, "failure_types[1]"),
        ({"failure_types": []}, "failure_types"),
        ({"failure_types": "timeout"}, "failure_types"),
        ({"failure_types": ["timeout"] * 7}, "failure_types"),
        ({"failure_types": [6]}, "failure_types[0]"),
        ({"failure_type": ["timeout"]}, "failure_type"),
        ([], "body"),
    ],
)
def test_a_body_naming_no_retryable_failure_type_is_a_422_naming_the_field(
    client: TestClient, batch: FakeBatch, body: Any, field: str
) -> None:
    answer = client.post(RETRY_URL, json=body, headers=CUSTOMER)

    assert answer.status_code == 422
    error = assert_error_shape(answer.json(), "validation_error")
    assert [item["field"] for item in error["errors"]] == [field]
    assert batch.requests("RetryFailed") == []


def test_a_batch_shows_what_it_retries_and_what_retries_it(client: TestClient, batch: FakeBatch) -> None:
    batch.batch.retry_of_batch_id = RETRY_ID
    batch.batch.retry_batch_ids.append(RETRY_ID)

    view = client.get(f"/api/enterprise/video-batch/{BATCH_ID}", headers=CUSTOMER).json()
    listed = client.get("/api/enterprise/video-batch", headers=CUSTOMER).json()["items"]

    assert (view["retry_of"], view["retries"]) == (RETRY_ID, [RETRY_ID])
    assert [(item["retry_of"], item["retries"]) for item in listed] == [(RETRY_ID, [RETRY_ID])]
