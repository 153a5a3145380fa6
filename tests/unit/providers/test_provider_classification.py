"""Each provider's error shapes, read as its public docs say (issue 26, item 3), without a network:
Gemini's RetryInfo body, Retry-After between attempts, OpenAI's insufficient_quota and safety
refusals, Replicate's `aborted`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from services.batch.adapters.providers._remote import QuotaExhausted, RemoteJobSettings, retry_after_seconds
from services.batch.adapters.providers.openai_videos import classify_refusal, quota_exhausted
from services.batch.adapters.providers.replicate import ReplicateProvider
from services.batch.adapters.storage import LocalDirectoryStorage
from services.batch.domain.execution import run_task
from services.batch.domain.provider import FailureType, ProviderFailure
from tests.unit.batch.test_batch_execution import POLICY, TASK, RecordedSleeps, ScriptedProvider

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _answer(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def _google_429(delay: str) -> httpx.Response:
    return _answer(
        429,
        {
            "error": {
                "code": 429,
                "status": "RESOURCE_EXHAUSTED",
                "message": "You exceeded your current quota",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
                ],
            }
        },
    )


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (_answer(429, headers={"Retry-After": "7"}), 7.0),
        (_answer(429, headers={"Retry-After": format_datetime(NOW + timedelta(seconds=30))}), 30.0),
        (_google_429("38s"), 38.0),
        (_google_429("1.5s"), 1.5),
        (_google_429("soon"), None),
        (_answer(429, {"error": {"code": 429, "details": [{"@type": "x.Help"}]}}), None),
        (_answer(429, ["not", "an", "object"]), None),
        (_answer(429), None),
    ],
    ids=[
        "header-seconds",
        "header-date",
        "retryinfo",
        "retryinfo-fraction",
        "bad-duration",
        "no-retryinfo",
        "array",
        "empty",
    ],
)
def test_the_wait_a_429_asks_for_comes_from_its_header_or_its_retryinfo_body(
    response: httpx.Response, expected: float | None
) -> None:
    assert retry_after_seconds(response, now=NOW) == expected


def test_openai_insufficient_quota_is_a_permanent_provider_error_not_a_rate_limit() -> None:
    body = {
        "error": {
            "message": "You exceeded your current quota",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
    }
    exhausted = quota_exhausted(_answer(429, body))
    assert isinstance(exhausted, QuotaExhausted)
    assert (exhausted.failure_type, exhausted.transient) == (FailureType.PROVIDER_ERROR, False)
    limited = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    assert quota_exhausted(_answer(429, limited)) is None


@pytest.mark.parametrize("code", ["moderation_blocked", "sentinel_block"])
def test_openai_safety_refusals_at_create_are_content_policy(code: str) -> None:
    refused = classify_refusal(
        _answer(400, {"error": {"message": "Your request was blocked.", "code": code}})
    )
    assert (refused.failure_type, refused.transient) == (FailureType.CONTENT_POLICY, False)


async def test_the_providers_retry_after_holds_between_attempts_when_longer_than_the_backoff() -> None:
    provider = ScriptedProvider(
        [ProviderFailure(FailureType.RATE_LIMITED, "slow down", retry_after=42.0), None]
    )
    sleeps = RecordedSleeps()
    outcome = await run_task(TASK, provider, POLICY, sleep=sleeps, uniform=lambda: 0.5)
    assert (outcome.attempts, sleeps.delays) == (2, [42.0])


async def test_a_replicate_prediction_aborted_before_it_started_is_terminal(tmp_path: Path) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps({"id": "p1", "status": "aborted"}))

    adapter = ReplicateProvider.connect(
        api_token="t",
        storage=LocalDirectoryStorage(tmp_path, "http://videos.test"),
        model_ids={},
        settings=RemoteJobSettings(),
        transport=httpx.MockTransport(answer),
    )
    try:
        with pytest.raises(ProviderFailure) as aborted:
            await adapter._check("p1")
    finally:
        await adapter.close()
    assert (aborted.value.failure_type, aborted.value.transient) == (FailureType.TIMEOUT, True)
