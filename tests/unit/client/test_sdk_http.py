"""The SDK's HTTP behaviour on recorded answers (httpx.MockTransport): typed errors of every code,
pagination, retries of 429/503/network errors honouring Retry-After, and idempotency keys that stay
the same across the retries of one create and differ between creates."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from reelbatch_client import (
    APIConnectionError,
    AuthenticationFailed,
    Client,
    Conflict,
    InsufficientCredits,
    NotFound,
    RateLimited,
    RetryPolicy,
    Unavailable,
    ValidationFailed,
)
from reelbatch_client.errors import BudgetExceeded, ServerError

Handler = Callable[[httpx.Request], httpx.Response]
ACCEPTED = {
    "ok": True,
    "batch_id": "b1",
    "total_count": 1,
    "cost_per_video": 10,
    "required_credits": 10,
    "available_credits": 90,
    "status": "queued",
    "request_id": "r1",
    "balance_snapshot": True,
    "enqueue": "queued",
}


def _client(handler: Handler, sleeps: list[float] | None = None, retries: int = 3) -> Client:
    waits = sleeps if sleeps is not None else []
    return Client(
        "key",
        "http://api.test",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(max_retries=retries, base_wait=0.01, max_wait=5),
        sleep=waits.append,
    )


def _error(status: int, code: str, headers: dict[str, str] | None = None, **extra: object) -> httpx.Response:
    body = {"ok": False, "error": {"code": code, "message": f"{code} happened", **extra}}
    return httpx.Response(status, json=body, headers=headers)


def test_a_402_is_insufficient_credits_with_its_figures() -> None:
    client = _client(
        lambda _: _error(402, "insufficient_credits", required_credits=200, available_credits=50)
    )
    with pytest.raises(InsufficientCredits) as raised:
        client.create_batch([{"prompt": "a cat", "model": "sora-2"}])
    error = raised.value
    assert (error.status, error.code, error.required_credits, error.available_credits) == (
        402,
        "insufficient_credits",
        200,
        50,
    )


def test_a_422_lists_every_located_problem() -> None:
    problems = [
        {
            "loc": ["items", 150, "prompt"],
            "code": "too_long",
            "message": "too long",
            "field": "items[150].prompt",
        },
        {"loc": ["items", 3, "model"], "code": "unknown_model", "message": "no", "field": "items[3].model"},
    ]
    client = _client(lambda _: _error(422, "validation_error", errors=problems))
    with pytest.raises(ValidationFailed) as raised:
        client.create_batch([{"prompt": "a cat", "model": "sora-2"}])
    assert [(e.loc, e.code) for e in raised.value.errors] == [
        (["items", 150, "prompt"], "too_long"),
        (["items", 3, "model"], "unknown_model"),
    ]


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, "unauthorized", AuthenticationFailed),
        (404, "not_found", NotFound),
        (409, "idempotency_key_reused", Conflict),
        (402, "budget_exceeded", BudgetExceeded),
        (500, "internal", ServerError),
        # A code this SDK does not know yet still maps by its status.
        (404, "some_new_code", NotFound),
    ],
)
def test_each_code_raises_its_type(status: int, code: str, kind: type[Exception]) -> None:
    client = _client(lambda _: _error(status, code))
    with pytest.raises(kind):
        client.get_batch("b1")


def test_a_non_json_error_body_still_maps_by_status() -> None:
    client = _client(lambda _: httpx.Response(404, text="<html>nope</html>"))
    with pytest.raises(NotFound) as raised:
        client.get_batch("b1")
    assert raised.value.code == "http_404"


def test_429_and_503_are_retried_after_retry_after_with_the_same_idempotency_key() -> None:
    keys: list[str] = []
    answers = iter(
        [
            _error(429, "rate_limited", {"Retry-After": "2"}),
            _error(503, "unavailable", {"Retry-After": "1"}),
            httpx.Response(202, json=ACCEPTED, headers={"RateLimit-Remaining": "7"}),
            httpx.Response(202, json=ACCEPTED),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        return next(answers)

    sleeps: list[float] = []
    client = _client(handler, sleeps)
    accepted = client.create_batch([{"prompt": "a cat", "model": "sora-2"}])
    assert accepted.batch_id == "b1"
    assert sleeps == [2.0, 1.0]
    assert len(keys) == 3 and len(set(keys)) == 1
    assert client.rate_limit.remaining == 7
    client.create_batch([{"prompt": "a cat", "model": "sora-2"}])
    assert keys[-1] != keys[0], "a second create gets a key of its own"


def test_retries_stop_after_the_policy_and_raise_the_typed_error() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return _error(429, "rate_limited", {"Retry-After": "60"})

    sleeps: list[float] = []
    with pytest.raises(RateLimited) as raised:
        _client(handler, sleeps, retries=2).get_batch("b1")
    assert len(calls) == 3
    assert sleeps == [5.0, 5.0], "Retry-After is capped by max_wait"
    assert raised.value.retry_after == 60.0


def test_network_errors_are_retried_then_raised_as_connection_errors() -> None:
    attempts: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"available_credits": 5, "held_credits": 0, "debt_credits": 0})

    assert _client(flaky).credits().available_credits == 5

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(APIConnectionError):
        _client(down, retries=1).credits()


def test_a_503_without_retry_after_backs_off_and_then_raises_unavailable() -> None:
    sleeps: list[float] = []
    with pytest.raises(Unavailable):
        _client(lambda _: _error(503, "unavailable"), sleeps, retries=2).get_batch("b1")
    assert len(sleeps) == 2 and all(0 <= s <= 0.02 for s in sleeps)


def test_iterators_follow_the_cursor_through_every_page() -> None:
    pages = {
        None: {"items": [_entry(1), _entry(2)], "next_cursor": "c2"},
        "c2": {"items": [_entry(3)], "next_cursor": "c3"},
        "c3": {"items": [], "next_cursor": None},
    }
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        seen.append(params)
        return httpx.Response(200, json=pages[params.get("cursor")])

    entries = list(_client(handler).iter_ledger(batch_id="b1"))
    assert [e.entry_id for e in entries] == ["e1", "e2", "e3"]
    assert [p.get("cursor") for p in seen] == [None, "c2", "c3"]
    assert all(p["batch_id"] == "b1" and p["limit"] == "1000" for p in seen)


def _entry(n: int) -> dict[str, object]:
    return {
        "entry_id": f"e{n}",
        "ref_type": "batch_refund",
        "ref_id": f"t{n}",
        "batch_id": "b1",
        "credits_delta": 10,
        "balance_after": 100 + n,
        "created_at": "2026-12-06T05:00:00Z",
        "ledger_transfer_id": f"00000000-0000-5000-8000-00000000000{n}",
    }


def test_submit_file_sends_jsonl_with_the_default_model_and_batch_fields_as_query(tmp_path: object) -> None:
    from pathlib import Path

    sheet = Path(str(tmp_path)) / "prompts.csv"
    sheet.write_text(
        "custom_id,prompt,model,resolution,metadata.scene\nA,a cat,,1080p,s1\nB,a dog,sora-2,,\n"
    )
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(202, json=ACCEPTED)

    _client(handler).submit_file(sheet, model="veo-3", metadata={"team": "blue"})
    request = sent[0]
    assert request.headers["content-type"] == "application/jsonl"
    assert dict(request.url.params) == {"name": "prompts.csv", "metadata[team]": "blue"}
    lines = [json.loads(line) for line in request.content.decode().splitlines()]
    assert lines == [
        {
            "prompt": "a cat",
            "model": "veo-3",
            "custom_id": "A",
            "metadata": {"scene": "s1"},
            "settings": {"resolution": "1080p"},
        },
        {"prompt": "a dog", "model": "sora-2", "custom_id": "B"},
    ]


def test_with_no_tokens_left_the_client_paces_itself_instead_of_earning_a_429() -> None:
    headers = {"RateLimit-Limit": "200", "RateLimit-Remaining": "0", "RateLimit-Reset": "4"}
    sleeps: list[float] = []
    client = _client(
        lambda _: httpx.Response(
            200, json={"available_credits": 1, "held_credits": 0, "debt_credits": 0}, headers=headers
        ),
        sleeps,
    )
    client.credits()
    assert sleeps == [0.02]
    sleeps.clear()
    plenty = {**headers, "RateLimit-Remaining": "150"}
    _client(
        lambda _: httpx.Response(
            200, json={"available_credits": 1, "held_credits": 0, "debt_credits": 0}, headers=plenty
        ),
        sleeps,
    ).credits()
    assert sleeps == []
