"""Backoff, the simulated provider and the attempt loop of one task (no I/O beyond a temp dir)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from services.batch.adapters.providers.simulated import SimulatedProvider
from services.batch.domain.batch import BatchId, TaskId, TaskStatus, TenantId
from services.batch.domain.execution import AttemptPolicy, ClaimedTask, run_task
from services.batch.domain.provider import (
    FailureType,
    ProviderFailure,
    ProviderJob,
    VideoAsset,
    is_transient,
)
from services.batch.domain.retry import BackoffPolicy


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    policy = BackoffPolicy(base_seconds=1.0, cap_seconds=5.0)
    assert [policy.ceiling(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.ceiling(10_000) == 5.0


def test_backoff_delay_stays_within_zero_and_the_ceiling() -> None:
    policy = BackoffPolicy(base_seconds=0.5, cap_seconds=30.0)
    assert policy.delay(3, uniform=lambda: 0.0) == 0.0
    assert policy.delay(3, uniform=lambda: 0.999) == pytest.approx(0.999 * 2.0)
    assert all(0.0 <= policy.delay(4) <= 4.0 for _ in range(1000))


def test_backoff_counts_attempts_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        BackoffPolicy(1.0, 2.0).ceiling(0)


def test_transient_failures_are_the_retryable_ones() -> None:
    assert {f for f in FailureType if is_transient(f)} == {
        FailureType.TIMEOUT,
        FailureType.PROVIDER_ERROR,
        FailureType.RATE_LIMITED,
    }


def _job(prompt: str, attempt: int = 1) -> ProviderJob:
    return ProviderJob(TaskId(uuid.uuid4()), BatchId(uuid.uuid4()), prompt, "sora-2", attempt)


def _simulated(tmp_path: Path) -> SimulatedProvider:
    return SimulatedProvider(latency_seconds=0.001, asset_dir=tmp_path, public_base_url="http://videos.test/")


async def test_simulated_success_writes_a_small_mp4_and_returns_its_url(tmp_path: Path) -> None:
    job = _job("a cat on a mat")
    asset = await _simulated(tmp_path).generate(job)
    content = Path(asset.path).read_bytes()  # noqa: ASYNC240 (a test reading a tiny file)
    assert Path(asset.path) == tmp_path / str(job.batch_id) / f"{job.task_id}.mp4"
    assert content[4:8] == b"ftyp"
    assert 100 < len(content) == asset.size_bytes < 2000
    assert asset.url == f"http://videos.test/videos/{job.batch_id}/{job.task_id}.mp4"


async def test_simulated_fail_marker_is_a_permanent_content_policy_refusal(tmp_path: Path) -> None:
    with pytest.raises(ProviderFailure) as refused:
        await _simulated(tmp_path).generate(_job("a cat #fail"))
    assert refused.value.failure_type is FailureType.CONTENT_POLICY
    assert not refused.value.transient
    assert refused.value.message == "blocked by content policy (simulated)"


async def test_simulated_flaky_marker_fails_twice_then_succeeds(tmp_path: Path) -> None:
    provider = _simulated(tmp_path)
    for attempt in (1, 2):
        with pytest.raises(ProviderFailure) as refused:
            await provider.generate(_job("#flaky cat", attempt))
        assert refused.value.failure_type is FailureType.PROVIDER_ERROR
        assert refused.value.transient
    asset = await provider.generate(_job("#flaky cat", 3))
    assert asset.size_bytes > 0
    assert asset.path.endswith(".mp4")


async def test_simulated_timeout_marker_never_answers(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_simulated(tmp_path).generate(_job("#timeout")), 0.05)


class ScriptedProvider:
    """Answers attempts from a script: an exception to raise, or success."""

    def __init__(self, script: list[BaseException | None]) -> None:
        self.script = script
        self.attempts: list[int] = []

    async def generate(self, job: ProviderJob) -> VideoAsset:
        self.attempts.append(job.attempt)
        step = self.script[len(self.attempts) - 1]
        if step is not None:
            raise step
        return VideoAsset(path="/dev/null", url=f"http://v/{job.task_id}.mp4", size_bytes=1)


TASK = ClaimedTask(
    task_id=TaskId(uuid.uuid4()),
    batch_id=BatchId(uuid.uuid4()),
    tenant_id=TenantId(uuid.uuid4()),
    batch_index=0,
    prompt="p",
    model="sora-2",
    unit_price=10,
    claim_token=uuid.uuid4(),
    claims=1,
)
POLICY = AttemptPolicy(max_attempts=3, timeout_seconds=1.0, backoff=BackoffPolicy(1.0, 30.0))


class RecordedSleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


async def test_transient_failures_are_retried_until_success_and_attempts_are_recorded() -> None:
    provider = ScriptedProvider([ProviderFailure(FailureType.RATE_LIMITED, "slow down"), None])
    sleeps = RecordedSleeps()
    outcome = await run_task(TASK, provider, POLICY, sleep=sleeps, uniform=lambda: 0.5)
    assert outcome.status is TaskStatus.SUCCEEDED
    assert outcome.attempts == 2
    assert outcome.video_url == f"http://v/{TASK.task_id}.mp4"
    assert outcome.claim_token == TASK.claim_token
    assert sleeps.delays == [0.5]


async def test_a_permanent_failure_fails_after_one_attempt() -> None:
    provider = ScriptedProvider([ProviderFailure(FailureType.INVALID_INPUT, "bad prompt")])
    outcome = await run_task(TASK, provider, POLICY, sleep=RecordedSleeps())
    assert outcome.status is TaskStatus.FAILED
    assert outcome.attempts == 1
    assert outcome.failure_type is FailureType.INVALID_INPUT
    assert outcome.error_message == "bad prompt"
    assert provider.attempts == [1]


async def test_transient_failures_stop_at_max_attempts_with_the_last_failure() -> None:
    provider = ScriptedProvider([ProviderFailure(FailureType.PROVIDER_ERROR, f"5xx #{n}") for n in (1, 2, 3)])
    sleeps = RecordedSleeps()
    outcome = await run_task(TASK, provider, POLICY, sleep=sleeps, uniform=lambda: 1.0)
    assert outcome.status is TaskStatus.FAILED
    assert outcome.failure_type is FailureType.PROVIDER_ERROR
    assert outcome.error_message == "5xx #3"
    assert outcome.attempts == 3
    assert sleeps.delays == [1.0, 2.0]


async def test_an_attempt_past_the_timeout_is_a_timeout_failure() -> None:
    class Silent:
        async def generate(self, job: ProviderJob) -> VideoAsset:
            await asyncio.sleep(60)
            raise AssertionError("unreachable")

    policy = AttemptPolicy(max_attempts=2, timeout_seconds=0.01, backoff=BackoffPolicy(0.0, 0.0))
    outcome = await run_task(TASK, Silent(), policy)
    assert outcome.failure_type is FailureType.TIMEOUT
    assert outcome.attempts == 2


async def test_an_unexpected_exception_is_an_internal_failure_without_retry() -> None:
    provider = ScriptedProvider([KeyError("boom"), None])
    outcome = await run_task(TASK, provider, POLICY, sleep=RecordedSleeps())
    assert outcome.failure_type is FailureType.INTERNAL
    assert outcome.attempts == 1
    assert outcome.error_message == "internal error: KeyError"


async def test_a_pool_timeout_is_retried_not_a_task_failure() -> None:
    # A worker starting thousands of jobs at once can find its pool empty for a moment (ADR-161).
    provider = ScriptedProvider([PoolTimeout("couldn't get a connection after 30.00 sec"), None])
    sleeps = RecordedSleeps()
    outcome = await run_task(TASK, provider, POLICY, sleep=sleeps, uniform=lambda: 0.5)
    assert outcome.status is TaskStatus.SUCCEEDED
    assert outcome.attempts == 2
    assert sleeps.delays == [0.5]


async def test_a_database_that_stays_down_fails_the_task_as_internal_after_its_attempts() -> None:
    provider = ScriptedProvider([psycopg.OperationalError("server closed the connection")] * 3)
    outcome = await run_task(TASK, provider, POLICY, sleep=RecordedSleeps())
    assert outcome.status is TaskStatus.FAILED
    assert outcome.failure_type is FailureType.INTERNAL
    assert outcome.attempts == 3
    assert outcome.error_message == "our database was unavailable: OperationalError"


async def test_our_database_being_down_is_not_counted_against_the_providers_breaker() -> None:
    counted: list[ProviderFailure] = []

    class Gate:
        async def admit(self) -> ProviderFailure | None:
            return None

        async def failed(self, failure: ProviderFailure) -> bool:
            counted.append(failure)
            return False

        async def succeeded(self) -> None:
            return None

    provider = ScriptedProvider(
        [PoolTimeout("no connection"), ProviderFailure(FailureType.PROVIDER_ERROR, "5xx"), None]
    )
    outcome = await run_task(TASK, provider, POLICY, sleep=RecordedSleeps(), gate=Gate())
    assert outcome.status is TaskStatus.SUCCEEDED
    assert [failure.message for failure in counted] == ["5xx"]


async def test_the_concurrency_slot_is_held_only_during_a_call() -> None:
    slot = asyncio.Semaphore(1)
    held: list[bool] = []

    class Observing:
        async def generate(self, job: ProviderJob) -> VideoAsset:
            held.append(slot.locked())
            raise ProviderFailure(FailureType.TIMEOUT, "t")

    async def sleep(_: float) -> None:
        held.append(slot.locked())

    await run_task(TASK, Observing(), POLICY, slot=slot, sleep=sleep)
    assert held == [True, False, True, False, True]
