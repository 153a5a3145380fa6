"""A model priced on a real adapter (Veo, on its fake server) run by a real batch worker."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from reelbatch.proto.batch.v1 import batch_pb2

from libs.config import Settings
from services.batch.adapters.providers._lifecycle import RemoteJobProvider
from services.batch.bootstrap import build_providers
from services.batch.entrypoints.worker import run_worker
from tests.fakes import veo
from tests.fakes.provider_state import VALID_MP4, FakeProvider, Scenario
from tests.integration.batch.batch_harness import (
    EventTap,
    FakeBillingServer,
    batch_server,
    eventually,
    running,
    tenant,
)

if TYPE_CHECKING:
    from tests.integration.batch.batch_harness import BatchStub


async def _finished_batch(stub: BatchStub, tenant_id: str, batch_id: str) -> batch_pb2.Batch:
    async def done() -> batch_pb2.Batch | None:
        batch = await stub.GetBatch(batch_pb2.GetBatchRequest(tenant_id=tenant_id, batch_id=batch_id))
        finished: batch_pb2.Batch | None = batch if batch.finished_at.seconds else None
        return finished

    return await eventually(done)


async def test_a_veo_priced_model_runs_on_a_worker_and_failed_downloads_are_refunded(
    make_settings: Callable[..., Settings],
    fake_billing: FakeBillingServer,
    event_tap: EventTap,
    fake_providers: dict[str, FakeProvider],
) -> None:
    fake = fake_providers["veo"]
    fake.reset()
    fake.script("a lake #policy", Scenario(outcome="content_policy"))
    fake.script("a lake #lost", Scenario(asset_status=404))
    settings = make_settings(
        pricing={
            "veo-3": {
                "provider": "veo",
                "provider_model": "veo-3.0-generate-001",
                "credits_per_video": 20,
                "max_attempts": 2,
            }
        },
        gemini_api_key=veo.API_KEY,
        gemini_base_url=fake.api_url,
        provider_poll_seconds=0.01,
        provider_poll_max_seconds=0.02,
        provider_timeout_seconds=5.0,
    )
    providers = build_providers(settings)
    assert sorted(providers) == ["simulated", "veo"]
    tenant_id = tenant()
    fake_billing.servicer.balances[tenant_id] = 1000
    prompts = ["a calm lake", "a lake #policy", "a lake #lost"]
    try:
        async with (
            batch_server(settings) as stub,
            running(functools.partial(run_worker, providers=providers), settings),
        ):
            created = await stub.CreateBatch(
                batch_pb2.CreateBatchRequest(
                    tenant_id=tenant_id,
                    items=[batch_pb2.BatchItem(prompt=prompt, model="veo-3") for prompt in prompts],
                )
            )
            batch = await _finished_batch(stub, tenant_id, created.batch_id)
            page = await stub.ListTasks(
                batch_pb2.ListTasksRequest(tenant_id=tenant_id, batch_id=created.batch_id)
            )
    finally:
        for provider in providers.values():
            if isinstance(provider, RemoteJobProvider):
                await provider.close()

    succeeded, refused, lost = sorted(page.tasks, key=lambda task: task.batch_index)
    assert (batch.status, batch.credits_spent, batch.refunded_credits) == ("partial", 20, 40)
    assert (succeeded.status, succeeded.attempts) == ("succeeded", 1)
    assert succeeded.video_url == f"http://videos.test/videos/{created.batch_id}/{succeeded.task_id}.mp4"
    video = Path(settings.asset_dir) / created.batch_id / f"{succeeded.task_id}.mp4"
    assert video.read_bytes() == VALID_MP4
    assert (refused.status, refused.failure_type, refused.attempts) == ("failed", "content_policy", 1)
    assert (lost.status, lost.failure_type, lost.attempts, lost.video_url) == (
        "failed",
        "provider_error",
        2,
        "",
    )
    assert not (Path(settings.asset_dir) / created.batch_id / f"{lost.task_id}.mp4").exists()
    failures = await event_tap.wait_for("task.failed", created.batch_id, count=2)
    assert sorted(event.failure_type for event in failures) == ["content_policy", "provider_error"]
    assert {job.model for job in fake.jobs.values()} == {"veo-3.0-generate-001"}
