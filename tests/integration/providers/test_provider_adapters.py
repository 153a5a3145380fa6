"""Every real provider adapter against its fake server: success, failures, 429, cancel, bad assets."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest

from services.batch.domain.batch import BatchId, TaskId, TaskStatus, TenantId
from services.batch.domain.execution import AttemptPolicy, ClaimedTask, TaskOutcome, run_task
from services.batch.domain.provider import FailureType, ProviderFailure, ProviderJob, VideoProvider
from services.batch.domain.retry import BackoffPolicy
from tests.fakes.provider_state import VALID_MP4, Scenario
from tests.integration.providers.conftest import FAST, MODEL_IDS, ProviderRig

DEADLINE_SECONDS = 10.0


def _task(prompt: str) -> ClaimedTask:
    return ClaimedTask(
        task_id=TaskId(uuid.uuid4()),
        batch_id=BatchId(uuid.uuid4()),
        tenant_id=TenantId(uuid.uuid4()),
        batch_index=0,
        prompt=prompt,
        model="veo-3",
        unit_price=20,
        claim_token=uuid.uuid4(),
        claims=1,
    )


def _job(task: ClaimedTask, attempt: int = 1) -> ProviderJob:
    return ProviderJob(task.task_id, task.batch_id, task.prompt, task.model, attempt)


async def _run(
    provider: VideoProvider, prompt: str, max_attempts: int = 3, timeout: float = 5.0
) -> TaskOutcome:
    """The worker's own attempt loop, with near-zero backoff."""
    policy = AttemptPolicy(max_attempts, timeout, BackoffPolicy(0.001, 0.002))
    return await run_task(_task(prompt), provider, policy)


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_SECONDS
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {DEADLINE_SECONDS}s: {what}")
        await asyncio.sleep(0.01)


async def test_a_successful_job_is_downloaded_and_stored_as_the_tasks_video(rig: ProviderRig) -> None:
    rig.fake.script("a calm lake", Scenario(polls_until_done=3))
    task = _task("a calm lake")
    asset = await rig.adapter().generate(_job(task))
    stored = rig.asset_dir / str(task.batch_id) / f"{task.task_id}.mp4"
    assert stored.read_bytes() == VALID_MP4
    assert (asset.path, asset.size_bytes) == (str(stored), len(VALID_MP4))
    assert asset.url == f"http://videos.test/videos/{task.batch_id}/{task.task_id}.mp4"
    (job,) = rig.fake.jobs.values()
    assert (job.prompt, job.model, job.polls) == ("a calm lake", MODEL_IDS[rig.name]["veo-3"], 3)


async def test_credentials_go_to_the_api_origin_and_never_to_the_video_host(rig: ProviderRig) -> None:
    await rig.adapter().generate(_job(_task("a calm lake")))
    # OpenAI serves the video from its API (with the key); the others from a CDN-like origin.
    video_path = "/content" if rig.name == "openai" else "/assets/"
    assert rig.fake.requests_to(video_path)
    header = rig.fake.credential_header
    api_calls = [seen for seen in rig.fake.seen if "/assets/" not in seen.path]
    assert all(seen.headers.get(header) == rig.fake.credential_value for seen in api_calls)
    assert all(header not in seen.headers for seen in rig.fake.requests_to("/assets/"))


async def test_a_content_policy_refusal_fails_the_task_at_once(rig: ProviderRig) -> None:
    rig.fake.script("a forbidden scene", Scenario(outcome="content_policy"))
    outcome = await _run(rig.adapter(), "a forbidden scene")
    assert (outcome.status, outcome.failure_type, outcome.attempts) == (
        TaskStatus.FAILED,
        FailureType.CONTENT_POLICY,
        1,
    )
    assert outcome.error_message
    assert rig.stored_videos() == []


@pytest.mark.parametrize(
    ("refusal", "failure_type"),
    [("invalid_input", FailureType.INVALID_INPUT), ("content_policy", FailureType.CONTENT_POLICY)],
)
async def test_a_prompt_refused_at_submission_fails_at_once_with_its_reason(
    rig: ProviderRig, refusal: str, failure_type: FailureType
) -> None:
    rig.fake.script("refused", Scenario(rejected=refusal))  # type: ignore[arg-type]
    outcome = await _run(rig.adapter(), "refused")
    assert (outcome.status, outcome.failure_type, outcome.attempts) == (TaskStatus.FAILED, failure_type, 1)
    assert rig.fake.jobs == {}


async def test_a_transient_job_failure_is_retried_by_the_worker_and_then_succeeds(rig: ProviderRig) -> None:
    rig.fake.script("flaky", Scenario(failing_runs=1))
    outcome = await _run(rig.adapter(), "flaky")
    assert (outcome.status, outcome.attempts, outcome.failure_type) == (TaskStatus.SUCCEEDED, 2, None)
    assert len(rig.fake.jobs) == 2
    assert len(rig.stored_videos()) == 1


async def test_a_job_failing_on_every_attempt_fails_as_a_provider_error_after_max_attempts(
    rig: ProviderRig,
) -> None:
    rig.fake.script("broken", Scenario(outcome="error"))
    outcome = await _run(rig.adapter(), "broken", max_attempts=2)
    assert (outcome.status, outcome.failure_type, outcome.attempts) == (
        TaskStatus.FAILED,
        FailureType.PROVIDER_ERROR,
        2,
    )


async def test_a_429_waits_out_retry_after_before_submitting_again(rig: ProviderRig) -> None:
    rig.fake.script("busy", Scenario(submit_rate_limits=1, retry_after="1"))
    outcome = await _run(rig.adapter(), "busy")
    assert (outcome.status, outcome.attempts) == (TaskStatus.SUCCEEDED, 1)
    limited, accepted = [
        seen for seen in rig.fake.seen if seen.method == "POST" and "cancel" not in seen.path
    ]
    assert accepted.at - limited.at >= 1.0


async def test_a_retry_after_longer_than_allowed_fails_the_attempt_as_rate_limited(rig: ProviderRig) -> None:
    rig.fake.script("very busy", Scenario(submit_rate_limits=5, retry_after="30"))
    adapter = rig.adapter(settings=replace(FAST, max_retry_after_seconds=0.5))
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProviderFailure) as refused:
        await adapter.generate(_job(_task("very busy")))
    assert (refused.value.failure_type, refused.value.transient) == (FailureType.RATE_LIMITED, True)
    # The wait asked for (a header, or Gemini's RetryInfo body) goes with the failure: the next
    # attempt does not start sooner.
    assert refused.value.retry_after == 30.0
    assert asyncio.get_running_loop().time() - started < 5.0


async def test_status_polls_answered_500_are_tolerated_within_the_attempt(rig: ProviderRig) -> None:
    rig.fake.script("wobbly", Scenario(poll_server_errors=2, polls_until_done=2))
    outcome = await _run(rig.adapter(), "wobbly")
    assert (outcome.status, outcome.attempts) == (TaskStatus.SUCCEEDED, 1)
    assert len(rig.fake.jobs) == 1


async def test_cancel_stops_the_running_job_where_the_provider_can_and_leaves_it_alone_elsewhere(
    rig: ProviderRig,
) -> None:
    rig.fake.script("endless", Scenario(hang=True))
    adapter = rig.adapter()
    task = _task("endless")
    assert not await adapter.cancel(task.task_id)
    running = asyncio.create_task(adapter.generate(_job(task)))
    await _until(lambda: adapter.running_jobs == 1, "the job is submitted")
    if adapter.cancels_jobs:
        assert await adapter.cancel(task.task_id)
        with pytest.raises(ProviderFailure) as stopped:
            await asyncio.wait_for(running, DEADLINE_SECONDS)
        assert (stopped.value.failure_type, stopped.value.transient) == (FailureType.CANCELLED, False)
        assert rig.fake.cancels == list(rig.fake.jobs)
    else:
        # Gemini (Veo) documents no cancel and OpenAI's DELETE deletes a video rather than stop a
        # render: the worker stops waiting (the task is refunded) and the job runs on, our cost.
        assert not await adapter.cancel(task.task_id)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await adapter.close()
        assert rig.fake.cancels == []
    assert adapter.running_jobs == 0


async def test_an_attempt_that_times_out_cancels_its_job_where_the_provider_can_stop_one(
    rig: ProviderRig,
) -> None:
    rig.fake.script("endless", Scenario(hang=True))
    adapter = rig.adapter()
    outcome = await _run(adapter, "endless", max_attempts=1, timeout=0.3)
    assert (outcome.status, outcome.failure_type) == (TaskStatus.FAILED, FailureType.TIMEOUT)
    if adapter.cancels_jobs:
        await _until(lambda: rig.fake.cancels == list(rig.fake.jobs), "the abandoned job is cancelled")
    else:
        # Gemini (Veo) documents no cancel, OpenAI's DELETE deletes rather than stops: nothing is
        # sent, the job runs to its end at our cost (ADR-110).
        await adapter.close()
        assert rig.fake.cancels == []
        assert not rig.fake.requests_to(":cancel") and not [
            seen for seen in rig.fake.seen if seen.method == "DELETE"
        ]


@pytest.mark.parametrize(
    "scenario",
    [Scenario(asset_status=404), Scenario(asset=b""), Scenario(asset=b"<html>expired link</html>")],
    ids=["asset-404", "empty-asset", "not-a-video"],
)
async def test_a_video_that_cannot_be_downloaded_fails_the_task_and_stores_nothing(
    rig: ProviderRig, scenario: Scenario
) -> None:
    rig.fake.script("lost video", scenario)
    outcome = await _run(rig.adapter(), "lost video", max_attempts=2)
    assert (outcome.status, outcome.failure_type, outcome.attempts) == (
        TaskStatus.FAILED,
        FailureType.PROVIDER_ERROR,
        2,
    )
    assert outcome.video_url is None
    assert rig.stored_videos() == []


async def test_rejected_credentials_fail_permanently_without_a_retry(rig: ProviderRig) -> None:
    outcome = await _run(rig.adapter(key="wrong-key"), "a calm lake")
    assert (outcome.status, outcome.failure_type, outcome.attempts) == (
        TaskStatus.FAILED,
        FailureType.PROVIDER_ERROR,
        1,
    )
    assert "credentials" in (outcome.error_message or "")
    assert "wrong-key" not in (outcome.error_message or "")
