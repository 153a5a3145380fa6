"""The circuit breaker's state machine (ADR-113) and how `run_task` waits behind it."""

from __future__ import annotations

from services.batch.domain.batch import TaskStatus
from services.batch.domain.breaker import (
    Breaker,
    BreakerPolicy,
    BreakerState,
    Verdict,
    admit,
    after_failure,
    after_success,
    forgives,
    take_probe,
)
from services.batch.domain.execution import run_task
from services.batch.domain.provider import FailureType, ProviderFailure
from tests.unit.batch.test_batch_execution import POLICY, TASK, RecordedSleeps, ScriptedProvider

RULES = BreakerPolicy(failure_threshold=3, open_seconds=10.0, outage_limit_seconds=60.0, probe_seconds=5.0)


def _failing(times: int, now: float = 100.0) -> Breaker:
    breaker = Breaker("veo-3")
    for _ in range(times):
        breaker = after_failure(breaker, now, RULES)
    return breaker


def test_a_closed_breaker_admits_and_counts_failures_below_the_threshold() -> None:
    breaker = _failing(2)
    assert (breaker.state, breaker.failures, breaker.opens) == (BreakerState.CLOSED, 2, 0)
    assert admit(breaker, 100.0, RULES).verdict is Verdict.GO
    assert not forgives(breaker)


def test_the_threshold_th_consecutive_failure_opens_it_and_tasks_wait_until_the_probe_is_due() -> None:
    breaker = _failing(3)
    assert (breaker.state, breaker.outage_since, breaker.retry_at, breaker.opens) == (
        BreakerState.OPEN,
        100.0,
        110.0,
        1,
    )
    assert forgives(breaker)
    assert admit(breaker, 104.0, RULES) == admit(breaker, 104.0, RULES)
    assert admit(breaker, 104.0, RULES).verdict is Verdict.WAIT
    assert admit(breaker, 104.0, RULES).wait_seconds == 6.0
    assert admit(breaker, 110.0, RULES).verdict is Verdict.PROBE


def test_a_success_in_between_resets_the_count() -> None:
    breaker = after_success(_failing(2))
    assert after_failure(breaker, 100.0, RULES).state is BreakerState.CLOSED


def test_half_open_lets_one_probe_run_and_the_others_wait() -> None:
    probing = take_probe(_failing(3), 110.0, RULES)
    assert (probing.state, probing.probe_until) == (BreakerState.HALF_OPEN, 115.0)
    assert admit(probing, 111.0, RULES).verdict is Verdict.WAIT
    # The probe's worker died: another takes the probe over once it is overdue.
    assert admit(probing, 115.0, RULES).verdict is Verdict.PROBE


def test_a_failed_probe_opens_it_again_and_a_successful_one_closes_it() -> None:
    probing = take_probe(_failing(3), 110.0, RULES)
    reopened = after_failure(probing, 112.0, RULES)
    assert (reopened.state, reopened.retry_at, reopened.outage_since, reopened.opens) == (
        BreakerState.OPEN,
        122.0,
        100.0,
        1,
    )
    assert forgives(reopened)
    closed = after_success(probing)
    assert closed == Breaker("veo-3", opens=1)
    assert admit(closed, 112.0, RULES).verdict is Verdict.GO


def test_failures_of_jobs_started_before_the_opening_change_nothing_but_the_count() -> None:
    breaker = _failing(3)
    later = after_failure(breaker, 105.0, RULES)
    assert (later.state, later.retry_at, later.failures) == (BreakerState.OPEN, 110.0, 4)


def test_an_outage_past_its_limit_gives_up_and_waits_never_overrun_it() -> None:
    breaker = after_failure(take_probe(_failing(3), 150.0, RULES), 155.0, RULES)
    assert breaker.retry_at == 165.0
    assert admit(breaker, 158.0, RULES) == admit(breaker, 158.0, RULES)
    assert admit(breaker, 158.0, RULES).wait_seconds == 2.0
    assert admit(breaker, 160.0, RULES).verdict is Verdict.GIVE_UP


class ScriptedGate:
    """A breaker that opens on the first failure and lets the task through after `waits` asks."""

    def __init__(self, give_up_after: int | None = None) -> None:
        self.asked = 0
        self.failures: list[str] = []
        self.successes = 0
        self.give_up_after = give_up_after

    async def admit(self) -> ProviderFailure | None:
        self.asked += 1
        if self.give_up_after is not None and self.asked > self.give_up_after:
            return ProviderFailure(FailureType.PROVIDER_ERROR, "down too long", transient=False)
        return None

    async def failed(self, failure: ProviderFailure) -> bool:
        self.failures.append(failure.message)
        return True

    async def succeeded(self) -> None:
        self.successes += 1


async def test_failures_while_the_breaker_is_open_cost_the_task_no_attempt() -> None:
    down = [ProviderFailure(FailureType.PROVIDER_ERROR, f"503 #{n}") for n in range(5)]
    provider = ScriptedProvider([*down, None])
    gate = ScriptedGate()
    outcome = await run_task(TASK, provider, POLICY, sleep=RecordedSleeps(), gate=gate)
    # Five failures with a budget of three attempts: none counted, the sixth succeeded.
    assert (outcome.status, outcome.attempts) == (TaskStatus.SUCCEEDED, 6)
    assert (len(gate.failures), gate.successes, gate.asked) == (5, 1, 6)


async def test_a_task_waiting_past_the_outage_limit_fails_as_provider_error_without_a_new_attempt() -> None:
    provider = ScriptedProvider([ProviderFailure(FailureType.PROVIDER_ERROR, "503")] * 3)
    outcome = await run_task(
        TASK, provider, POLICY, sleep=RecordedSleeps(), gate=ScriptedGate(give_up_after=2)
    )
    assert (outcome.status, outcome.failure_type, outcome.error_message) == (
        TaskStatus.FAILED,
        FailureType.PROVIDER_ERROR,
        "down too long",
    )
    assert (outcome.attempts, provider.attempts) == (2, [1, 2])


async def test_permanent_failures_never_reach_the_breaker() -> None:
    provider = ScriptedProvider([ProviderFailure(FailureType.CONTENT_POLICY, "refused")])
    gate = ScriptedGate()
    outcome = await run_task(TASK, provider, POLICY, sleep=RecordedSleeps(), gate=gate)
    assert (outcome.failure_type, outcome.attempts, gate.failures) == (FailureType.CONTENT_POLICY, 1, [])
