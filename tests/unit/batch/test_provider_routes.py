"""A route's rate budget (ADR-148) and how `run_task` fails over between routes (ADR-149)."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from libs.price_list import ModelPricing
from services.batch.bootstrap import model_routes
from services.batch.domain.batch import TaskId, TaskStatus
from services.batch.domain.execution import run_task
from services.batch.domain.provider import FailureType, ProviderFailure
from services.batch.domain.provider_jobs import ProviderJobStatus, RecordedJob, plan_resume
from services.batch.domain.rate_budget import RateBudget, draw
from services.batch.domain.routing import RoutePick, RouteWait
from tests.unit.batch.test_batch_execution import POLICY, TASK, RecordedSleeps, ScriptedProvider

MINUTE = RateBudget(limit=3, window_seconds=60.0, margin_seconds=1.0)


def test_a_budget_grants_up_to_its_limit_in_any_window_then_says_when_the_oldest_leaves() -> None:
    grants: tuple[float, ...] = ()
    for now in (0.0, 10.0, 20.0):
        taken = draw(grants, now, MINUTE)
        assert taken.granted
        grants = taken.grants
    refused = draw(grants, 30.0, MINUTE)
    assert (refused.granted, refused.grants, refused.wait_seconds) == (False, grants, 31.0)
    # The first grant counts for the window plus the margin: still there at 60.9, gone at 61.0.
    assert not draw(grants, 60.9, MINUTE).granted
    later = draw(grants, 61.0, MINUTE)
    assert (later.granted, later.grants) == (True, (10.0, 20.0, 61.0))


def test_a_lowered_limit_waits_until_enough_grants_have_left() -> None:
    refused = draw((0.0, 1.0, 2.0, 3.0), 5.0, RateBudget(limit=2, window_seconds=60.0, margin_seconds=1.0))
    # Four grants in the window, two allowed: the third oldest (2.0) must leave first.
    assert (refused.granted, refused.wait_seconds) == (False, 58.0)


def test_no_window_of_the_budget_ever_holds_more_than_its_limit() -> None:
    grants: tuple[float, ...] = ()
    granted: list[float] = []
    now = 0.0
    while now < 300.0:
        taken = draw(grants, now, MINUTE)
        if taken.granted:
            granted.append(now)
        grants = taken.grants
        now += 0.25
    assert all(sum(start <= at < start + 60.0 for at in granted) <= 3 for start in granted)
    assert len(granted) == 15  # 3 per 61 s over 300 s


def test_a_model_lists_its_routes_in_order_with_their_breakers_budgets_and_costs() -> None:
    price = ModelPricing.model_validate(
        {
            "provider": "veo",
            "provider_model": "veo-3.0-generate-001",
            "credits_per_video": 20,
            "provider_cost_usd_micros": 84_000,
            "requests_per_minute": 50,
            "fallback_routes": [
                {"provider": "fal", "provider_model": "fal-ai/veo3", "provider_cost_usd_micros": 90_000}
            ],
        }
    )
    routes = model_routes("veo-3", price)
    assert [
        (r.provider, r.breaker_key, r.budget_key, r.requests_per_minute, r.provider_cost_usd_micros)
        for r in routes
    ] == [
        ("veo", "veo-3", "veo:veo-3.0-generate-001", 50, 84_000),
        ("fal", "veo-3@fal", "fal:fal-ai/veo3", None, 90_000),
    ]


@pytest.mark.parametrize(
    "fallbacks",
    [
        [{"provider": "veo"}],  # the model's own provider again
        [{"provider": "simulated"}],  # not a remote provider
    ],
)
def test_fallback_routes_must_be_other_remote_providers(fallbacks: list[dict[str, str]]) -> None:
    with pytest.raises(ValidationError):
        ModelPricing.model_validate(
            {"provider": "veo", "credits_per_video": 20, "fallback_routes": fallbacks}
        )


class ScriptedRouter:
    """Routes from a script: a route name to pick, a wait, or a failure; records what was asked."""

    def __init__(self, providers: dict[str, ScriptedProvider], script: list[str | float]) -> None:
        self.providers = providers
        self.script = script
        self.asked: list[tuple[str | None, bool]] = []

    async def pick(
        self, pinned: str | None, *, needs_budget: bool
    ) -> RoutePick | RouteWait | ProviderFailure:
        self.asked.append((pinned, needs_budget))
        step = self.script[len(self.asked) - 1]
        if isinstance(step, float):
            return RouteWait(step)
        return RoutePick(step, self.providers[step])

    def has_alternative(self, route: str) -> bool:
        return len(self.providers) > 1


class QuotaRefusal(ProviderFailure):
    def __init__(self) -> None:
        super().__init__(FailureType.PROVIDER_ERROR, "out of quota", transient=False)
        self.route_down = True


async def test_waiting_for_a_route_costs_no_attempt_and_holds_no_slot() -> None:
    fal = ScriptedProvider([None])
    router = ScriptedRouter({"fal": fal}, [0.5, 0.5, "fal"])
    sleeps = RecordedSleeps()
    outcome = await run_task(TASK, ScriptedProvider([]), POLICY, sleep=sleeps, router=router)
    assert (outcome.status, outcome.attempts, fal.attempts, sleeps.delays) == (
        TaskStatus.SUCCEEDED,
        1,
        [1],
        [0.5, 0.5],
    )


async def test_a_route_out_of_quota_sends_the_task_to_the_next_route_at_no_attempts_cost() -> None:
    veo, fal = ScriptedProvider([QuotaRefusal()]), ScriptedProvider([None])
    router = ScriptedRouter({"veo": veo, "fal": fal}, ["veo", "fal"])
    outcome = await run_task(TASK, veo, POLICY, sleep=RecordedSleeps(), router=router)
    assert (outcome.status, veo.attempts, fal.attempts) == (TaskStatus.SUCCEEDED, [1], [2])


async def test_a_job_in_doubt_pins_the_task_to_its_route() -> None:
    lost = ProviderFailure(FailureType.PROVIDER_ERROR, "no answer")
    lost.in_doubt = True
    veo = ScriptedProvider([lost, None])
    router = ScriptedRouter({"veo": veo, "fal": ScriptedProvider([])}, ["veo", "veo"])
    outcome = await run_task(TASK, veo, POLICY, sleep=RecordedSleeps(), router=router, pinned_route=None)
    assert outcome.status is TaskStatus.SUCCEEDED
    assert router.asked == [(None, True), ("veo", True)]


async def test_a_resumed_job_needs_no_budget_and_stays_on_its_route() -> None:
    job = RecordedJob(uuid.uuid4(), TaskId(TASK.task_id), 2, "fal", ProviderJobStatus.RUNNING, "j", "j")
    plan = plan_resume([job], 3)
    assert plan.pinned_route == "fal"
    fal = ScriptedProvider([None])
    router = ScriptedRouter({"fal": fal}, ["fal"])
    outcome = await run_task(
        TASK,
        fal,
        POLICY,
        sleep=RecordedSleeps(),
        router=router,
        first_attempt=plan.first_attempt,
        resume=plan.resume,
        pinned_route=plan.pinned_route,
    )
    assert (outcome.status, outcome.attempts, router.asked) == (TaskStatus.SUCCEEDED, 2, [("fal", False)])


def test_a_task_with_a_job_in_doubt_stays_on_that_route_after_a_crash() -> None:
    doubt = RecordedJob(uuid.uuid4(), TaskId(TASK.task_id), 1, "veo", ProviderJobStatus.SUBMITTING)
    assert plan_resume([doubt], 3).pinned_route == "veo"
    failed = RecordedJob(uuid.uuid4(), TaskId(TASK.task_id), 1, "veo", ProviderJobStatus.FAILED, "j", "j")
    assert plan_resume([failed], 3).pinned_route is None
