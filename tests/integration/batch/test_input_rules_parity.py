"""The rules of a create request have one home (the batch service): REST and gRPC give one verdict.

Each case is sent as JSON through the real gateway app to a real batch gRPC server (PostgreSQL,
RabbitMQ, billing faked), and as a CreateBatchRequest straight to that server. Both must accept
it, or refuse it with the same field violations (location and code), every one at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import grpc
import httpx
import pytest
from reelbatch.proto.batch.v1 import batch_pb2, batch_pb2_grpc

from libs.config import Settings
from libs.errors import MAX_FIELD_VIOLATIONS
from libs.rpc.errors import remote_error
from services.gateway.entrypoints.app import create_app
from tests.integration.batch.batch_harness import FakeBillingServer, batch_server
from tests.unit.gateway.gateway_fakes import (
    API_KEY,
    TENANT_ID,
    FakeBatch,
    FakeBilling,
    FakeWebhook,
    Readiness,
    fake_backends,
)

# Accepted, or refused with this reason and these (location, code) violations.
Verdict = tuple[str, list[tuple[list[str | int], str]]]
ACCEPTED: Verdict = ("accepted", [])

MAX_ITEMS = 5
MAX_PROMPT_CHARS = 100
CAT = {"prompt": "a cat", "model": "sora-2"}


def _refused(*violations: tuple[list[str | int], str]) -> Verdict:
    return ("validation_error", list(violations))


CASES: dict[str, tuple[dict[str, Any], Verdict]] = {
    "carriage return in a prompt": ({"items": [{**CAT, "prompt": "line one\r\nline two"}]}, ACCEPTED),
    "tab and line feed in a prompt": ({"items": [{**CAT, "prompt": "a\tcat\non a mat"}]}, ACCEPTED),
    "longest prompt": ({"items": [{**CAT, "prompt": "x" * MAX_PROMPT_CHARS}]}, ACCEPTED),
    "empty prompt": ({"items": [{**CAT, "prompt": ""}]}, _refused((["items", 0, "prompt"], "empty"))),
    "blank prompt": (
        {"items": [CAT, {**CAT, "prompt": " \n "}]},
        _refused((["items", 1, "prompt"], "empty")),
    ),
    "prompt too long": (
        {"items": [{**CAT, "prompt": "x" * (MAX_PROMPT_CHARS + 1)}]},
        _refused((["items", 0, "prompt"], "too_long")),
    ),
    "NUL in a prompt": (
        {"items": [{**CAT, "prompt": "a\x00cat"}]},
        _refused((["items", 0, "prompt"], "control_character")),
    ),
    "C1 control in a prompt": (
        {"items": [{**CAT, "prompt": "a\x85cat"}]},
        _refused((["items", 0, "prompt"], "control_character")),
    ),
    "vertical tab in a prompt": (
        {"items": [{**CAT, "prompt": "a\x0bcat"}]},
        _refused((["items", 0, "prompt"], "control_character")),
    ),
    "empty model": ({"items": [{**CAT, "model": ""}]}, _refused((["items", 0, "model"], "empty"))),
    "model name too long": (
        {"items": [{**CAT, "model": "m" * 201}]},
        _refused((["items", 0, "model"], "too_long")),
    ),
    "unknown model": (
        {"items": [CAT, {**CAT, "model": "sora-9"}]},
        _refused((["items", 1, "model"], "unknown_model")),
    ),
    "an unknown model beside another item's broken rule, in one answer (ADR-088)": (
        {"items": [{**CAT, "prompt": ""}, {**CAT, "model": "sora-9"}, {**CAT, "model": "", "prompt": ""}]},
        _refused(
            (["items", 0, "prompt"], "empty"),
            (["items", 2, "prompt"], "empty"),
            (["items", 2, "model"], "empty"),
            (["items", 1, "model"], "unknown_model"),
        ),
    ),
    "custom ids and labels": (
        {
            "name": "june shoot",
            "metadata": {"project": "june"},
            "items": [{**CAT, "custom_id": "a-1", "metadata": {"shot": "1"}}, {**CAT, "custom_id": "a-2"}],
        },
        ACCEPTED,
    ),
    "repeated custom_id": (
        {"items": [{**CAT, "custom_id": "same"}, CAT, {**CAT, "custom_id": "same"}]},
        _refused((["items", 2, "custom_id"], "duplicate")),
    ),
    "custom_id too long": (
        {"items": [{**CAT, "custom_id": "x" * 65}]},
        _refused((["items", 0, "custom_id"], "too_long")),
    ),
    "too much metadata": (
        {
            "items": [{**CAT, "metadata": {f"k{n}": "v" for n in range(17)}}],
            "metadata": {"k": "v" * 513},
        },
        _refused((["items", 0, "metadata"], "too_many"), (["metadata", "k"], "too_long")),
    ),
    "name too long": ({"name": "n" * 257, "items": [CAT]}, _refused((["name"], "too_long"))),
    "NUL in metadata": (
        {"items": [{**CAT, "metadata": {"k": "a\u0000b"}}], "name": "bell\u0007"},
        _refused((["items", 0, "metadata", "k"], "control_character"), (["name"], "control_character")),
    ),
    "negative duration": (
        {"items": [{**CAT, "duration_seconds": -1}]},
        _refused((["items", 0, "duration_seconds"], "out_of_range")),
    ),
    "duration over the contract's bound": (
        {"items": [{**CAT, "duration_seconds": 3601}]},
        _refused((["items", 0, "duration_seconds"], "out_of_range")),
    ),
    "no items": ({"items": []}, _refused((["items"], "empty"))),
    "too many items": ({"items": [CAT] * (MAX_ITEMS + 1)}, _refused((["items"], "too_many"))),
    "ftp webhook url": (
        {"items": [CAT], "webhook_url": "ftp://customer.example/hook"},
        _refused((["webhook_url"], "invalid_url")),
    ),
    "webhook url with a space": (
        {"items": [CAT], "webhook_url": "https://customer.example/a b"},
        _refused((["webhook_url"], "invalid_url")),
    ),
    "webhook url too long": (
        {"items": [CAT], "webhook_url": "https://customer.example/" + "a" * 2048},
        _refused((["webhook_url"], "too_long")),
    ),
    "negative deadline": (
        {"items": [CAT], "deadline_seconds": -1},
        _refused((["deadline_seconds"], "out_of_range")),
    ),
    "deadline over seven days": (
        {"items": [CAT], "deadline_seconds": 7 * 24 * 3600 + 1},
        _refused((["deadline_seconds"], "out_of_range")),
    ),
    "every problem at once": (
        {
            "items": [CAT, {"prompt": "", "model": "m" * 201}, {**CAT, "prompt": "bell\x07"}],
            "webhook_url": "ftp://x",
            "deadline_seconds": -5,
        },
        _refused(
            (["items", 1, "prompt"], "empty"),
            (["items", 1, "model"], "too_long"),
            (["items", 2, "prompt"], "control_character"),
            (["webhook_url"], "invalid_url"),
            (["deadline_seconds"], "out_of_range"),
        ),
    ),
}


def _grpc_request(body: dict[str, Any]) -> batch_pb2.CreateBatchRequest:
    return batch_pb2.CreateBatchRequest(
        tenant_id=TENANT_ID,
        items=[
            batch_pb2.BatchItem(
                prompt=item["prompt"],
                model=item["model"],
                duration_seconds=item.get("duration_seconds", 0),
                custom_id=item.get("custom_id", ""),
                metadata=item.get("metadata", {}),
            )
            for item in body["items"]
        ],
        webhook_url=body.get("webhook_url", ""),
        deadline_seconds=body.get("deadline_seconds", 0),
        name=body.get("name", ""),
        metadata=body.get("metadata", {}),
    )


async def _grpc_verdict(stub: batch_pb2_grpc.BatchServiceAsyncStub, body: dict[str, Any]) -> Verdict:
    try:
        await stub.CreateBatch(_grpc_request(body))
    except grpc.aio.AioRpcError as error:
        refusal = remote_error(error)
        assert refusal.code is grpc.StatusCode.INVALID_ARGUMENT, refusal
        return (refusal.reason, [(list(found.location), found.code) for found in refusal.violations])
    return ACCEPTED


async def _rest_verdict(client: httpx.AsyncClient, body: dict[str, Any]) -> Verdict:
    response = await client.post("/api/enterprise/video-batch", json=body, headers={"X-API-Key": API_KEY})
    if response.status_code == 202:
        return ACCEPTED
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    return (error["code"], [(found.get("loc"), found.get("code")) for found in error.get("errors", [])])


@pytest.fixture
async def batch_stub(
    make_settings: Callable[..., Settings], fake_billing: FakeBillingServer
) -> AsyncIterator[tuple[Settings, batch_pb2_grpc.BatchServiceAsyncStub]]:
    settings = make_settings(max_batch_items=MAX_ITEMS, max_prompt_chars=MAX_PROMPT_CHARS)
    fake_billing.servicer.balances[TENANT_ID] = 1_000_000
    async with batch_server(settings) as stub:
        yield settings, stub


@pytest.fixture
async def gateway(
    batch_stub: tuple[Settings, batch_pb2_grpc.BatchServiceAsyncStub],
) -> AsyncIterator[httpx.AsyncClient]:
    settings, stub = batch_stub
    # Authentication and the webhook service's SSRF check are faked (every URL is acceptable to it):
    # the rules under test are the batch service's alone.
    backends = fake_backends(FakeBilling(), FakeBatch(), Readiness(), FakeWebhook())
    app = create_app(settings, replace(backends, batch=stub))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client


@pytest.mark.parametrize(("body", "verdict"), CASES.values(), ids=CASES.keys())
async def test_rest_and_grpc_give_the_same_verdict_on_every_create_rule(
    batch_stub: tuple[Settings, batch_pb2_grpc.BatchServiceAsyncStub],
    gateway: httpx.AsyncClient,
    body: dict[str, Any],
    verdict: Verdict,
) -> None:
    _, stub = batch_stub

    over_grpc = await _grpc_verdict(stub, body)
    over_rest = await _rest_verdict(gateway, body)

    assert over_rest == over_grpc
    assert over_grpc == verdict


async def test_ten_thousand_bad_items_are_answered_with_the_first_violations_that_fit(
    make_settings: Callable[..., Settings], fake_billing: FakeBillingServer
) -> None:
    settings = make_settings(max_batch_items=10_000)
    body = {"items": [{"prompt": f"bell\x07 {n}", "model": "m" * 201} for n in range(10_000)]}
    every_violation = [
        (["items", index, field], code)
        for index in range(10_000)
        for field, code in (("prompt", "control_character"), ("model", "too_long"))
    ]
    async with batch_server(settings) as stub:
        backends = fake_backends(FakeBilling(), FakeBatch(), Readiness(), FakeWebhook())
        app = create_app(settings, replace(backends, batch=stub))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            over_rest = await _rest_verdict(client, body)
        over_grpc = await _grpc_verdict(stub, body)

    assert over_rest == over_grpc
    reason, violations = over_grpc
    # Capped at MAX_FIELD_VIOLATIONS, and at what gRPC's default 8 KiB of trailing metadata holds.
    assert reason == "validation_error"
    assert 60 <= len(violations) <= MAX_FIELD_VIOLATIONS
    assert violations == every_violation[: len(violations)]
