"""Answers only some providers give, read as their public docs say (issue 26, item 3):
Replicate's `aborted`, OpenAI's `429 insufficient_quota` and its safety refusals at create."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.batch.domain.batch import TaskStatus
from services.batch.domain.provider import FailureType
from tests.fakes.provider_state import FakeProvider, Scenario
from tests.integration.providers.conftest import FAKES, ProviderRig
from tests.integration.providers.test_provider_adapters import _run


async def _rig(name: str, fakes: dict[str, FakeProvider], tmp_path: Path) -> ProviderRig:
    fake = fakes[name]
    fake.reset()
    return ProviderRig(name, fake, tmp_path / "assets", FAKES[name][2], [])


@pytest.fixture
async def replicate_rig(
    fake_providers: dict[str, FakeProvider], tmp_path: Path
) -> AsyncIterator[ProviderRig]:
    rig = await _rig("replicate", fake_providers, tmp_path)
    yield rig
    for adapter in rig._adapters:
        await adapter.close()


@pytest.fixture
async def openai_rig(fake_providers: dict[str, FakeProvider], tmp_path: Path) -> AsyncIterator[ProviderRig]:
    rig = await _rig("openai", fake_providers, tmp_path)
    yield rig
    for adapter in rig._adapters:
        await adapter.close()


async def test_an_aborted_replicate_prediction_is_terminal_and_neither_polled_nor_cancelled(
    replicate_rig: ProviderRig,
) -> None:
    replicate_rig.fake.script("too late", Scenario(outcome="aborted"))
    outcome = await _run(replicate_rig.adapter(), "too late", max_attempts=1)
    assert (outcome.status, outcome.failure_type) == (TaskStatus.FAILED, FailureType.TIMEOUT)
    assert "aborted" in (outcome.error_message or "")
    (job,) = replicate_rig.fake.jobs.values()
    assert job.polls == 1
    assert replicate_rig.fake.cancels == []


async def test_an_openai_account_out_of_quota_fails_the_task_for_good_and_cools_the_model_down(
    openai_rig: ProviderRig,
) -> None:
    openai_rig.fake.default = Scenario(out_of_quota=True)
    adapter = openai_rig.adapter()
    first = await _run(adapter, "a calm lake", max_attempts=3)
    assert (first.status, first.failure_type, first.attempts) == (
        TaskStatus.FAILED,
        FailureType.PROVIDER_ERROR,
        1,
    )
    assert "insufficient_quota" in (first.error_message or "")
    creates = len(openai_rig.fake.requests_to("/v1/videos"))
    # During the cooldown the next task fails the same way without a call to the API.
    second = await _run(adapter, "another lake", max_attempts=3)
    assert (second.status, second.failure_type, second.attempts) == (
        TaskStatus.FAILED,
        FailureType.PROVIDER_ERROR,
        1,
    )
    assert "cooling down" in (second.error_message or "")
    assert len(openai_rig.fake.requests_to("/v1/videos")) == creates


async def test_a_safety_refusal_at_create_is_a_content_policy_failure(openai_rig: ProviderRig) -> None:
    openai_rig.fake.script("a violent scene", Scenario(rejected="content_policy"))
    outcome = await _run(openai_rig.adapter(), "a violent scene")
    assert (outcome.status, outcome.failure_type, outcome.attempts) == (
        TaskStatus.FAILED,
        FailureType.CONTENT_POLICY,
        1,
    )
