"""Every adapter journals its submission (ADR-110): the intent before the create call, the job id
before the first poll, and a recorded job is resumed instead of submitted again."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import pytest
from psycopg_pool import PoolTimeout

from services.batch.domain.batch import BatchId, TaskId
from services.batch.domain.provider import ProviderFailure, ProviderJob
from services.batch.domain.provider_jobs import ProviderJobStatus, RecordedJob
from tests.fakes.provider_state import Scenario
from tests.integration.providers.conftest import ProviderRig
from tests.integration.providers.test_provider_adapters import _until


@dataclass
class JournalLog:
    """A journal keeping what was written, and what the fake had seen when it was."""

    rig: ProviderRig
    entries: list[tuple[str, object, int, int]] = field(default_factory=list)
    handle: str | None = None

    def _seen(self, what: str, detail: object) -> None:
        polls = len([seen for seen in self.rig.fake.seen if seen.method == "GET"])
        self.entries.append((what, detail, len(self.rig.fake.jobs), polls))

    async def intend(self, provider: str, idempotency_key: str | None) -> None:
        self._seen("intend", idempotency_key)

    async def submitted(self, provider_job_id: str, handle: str) -> None:
        self.handle = handle
        self._seen("submitted", provider_job_id)

    async def finished(self, status: ProviderJobStatus, failure: ProviderFailure | None = None) -> None:
        self._seen("finished", status)


def _job(prompt: str, journal: JournalLog, resume: RecordedJob | None = None) -> ProviderJob:
    return ProviderJob(
        TaskId(uuid.uuid4()), BatchId(uuid.uuid4()), prompt, "veo-3", 1, journal=journal, resume=resume
    )


async def test_the_intent_is_written_before_the_create_call_and_the_job_id_before_any_poll(
    rig: ProviderRig,
) -> None:
    rig.fake.script("a calm lake", Scenario(polls_until_done=2))
    journal = JournalLog(rig)
    await rig.adapter().generate(_job("a calm lake", journal))
    (job_id,) = rig.fake.jobs
    # (what, detail, jobs the fake had made, status polls it had answered) at each write.
    assert [entry[0] for entry in journal.entries] == ["intend", "submitted", "finished"]
    assert journal.entries[0][1:] == (None, 0, 0)
    # The provider's own id (Veo's is the operation name, which ends with it).
    assert str(journal.entries[1][1]).endswith(job_id)
    assert journal.entries[1][2:] == (1, 0)
    assert journal.entries[2][1] is ProviderJobStatus.SUCCEEDED


async def test_a_recorded_job_is_polled_again_and_never_submitted_twice(rig: ProviderRig) -> None:
    rig.fake.script("a calm lake", Scenario(hang=True))
    first = JournalLog(rig)
    adapter = rig.adapter()
    job = _job("a calm lake", first)
    # The first worker submits and records the job, then "dies" (its adapter is dropped).
    await adapter._create(job, first)
    assert first.handle is not None and len(rig.fake.jobs) == 1
    rig.fake.script("a calm lake", Scenario(polls_until_done=1))
    for fake_job in rig.fake.jobs.values():
        fake_job.scenario = Scenario(polls_until_done=1)
    resumed = RecordedJob(
        id=uuid.uuid4(),
        task_id=job.task_id,
        attempt=1,
        provider=rig.name,
        status=ProviderJobStatus.RUNNING,
        provider_job_id=next(iter(rig.fake.jobs)),
        handle=first.handle,
    )
    second = JournalLog(rig)
    asset = await rig.adapter().generate(_job("a calm lake", second, resume=resumed))
    assert asset.size_bytes > 0
    assert len(rig.fake.jobs) == 1
    assert [entry[0] for entry in second.entries] == ["finished"]


async def test_a_recorded_job_the_provider_no_longer_knows_is_submitted_anew(rig: ProviderRig) -> None:
    journal = JournalLog(rig)
    adapter = rig.adapter()
    probe = _job("a calm lake", journal)
    await adapter._create(probe, journal)
    assert journal.handle is not None
    rig.fake.jobs.clear()  # the provider forgot every job
    lost = RecordedJob(
        id=uuid.uuid4(),
        task_id=probe.task_id,
        attempt=1,
        provider=rig.name,
        status=ProviderJobStatus.RUNNING,
        handle=journal.handle,
    )
    again = JournalLog(rig)
    await rig.adapter().generate(_job("a calm lake", again, resume=lost))
    assert [entry[:2] for entry in again.entries[:1]] == [("finished", ProviderJobStatus.LOST)]
    assert [entry[0] for entry in again.entries[1:]] == ["intend", "submitted", "finished"]
    assert len(rig.fake.jobs) == 1


async def test_a_job_running_when_the_worker_shuts_down_is_left_running_for_the_next_worker(
    rig: ProviderRig,
) -> None:
    rig.fake.script("endless", Scenario(hang=True))
    adapter = rig.adapter()
    journal = JournalLog(rig)
    running = asyncio.create_task(adapter.generate(_job("endless", journal)))
    await _until(lambda: adapter.running_jobs == 1, "the job is submitted")
    adapter.detach()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await adapter.close()
    # Not cancelled at the provider and still recorded as running: the next claim resumes it.
    assert rig.fake.cancels == []
    assert [entry[0] for entry in journal.entries] == ["intend", "submitted"]


@dataclass
class DatabaseDownAt(JournalLog):
    """A journal whose write of `failing` meets a pool with no connection to give."""

    failing: str = "submitted"

    def _seen(self, what: str, detail: object) -> None:
        super()._seen(what, detail)
        if what == self.failing and len([entry for entry in self.entries if entry[0] == what]) == 1:
            raise PoolTimeout("couldn't get a connection after 30.00 sec")


async def test_a_job_whose_id_cannot_be_journaled_is_stopped_not_left_running_unwatched(
    rig: ProviderRig,
) -> None:
    rig.fake.script("a calm lake", Scenario(hang=True))
    adapter = rig.adapter()
    journal = DatabaseDownAt(rig, failing="submitted")
    with pytest.raises(PoolTimeout):
        await adapter.generate(_job("a calm lake", journal))
    await adapter.close()  # lets the background stop finish
    (job_id,) = rig.fake.jobs
    # The task's next attempt makes a new job: this one must not render on, unwatched and unrecorded.
    if adapter.cancels_jobs:
        assert rig.fake.cancels == [job_id]
        assert journal.entries[-1][:2] == ("finished", ProviderJobStatus.CANCELLED)
    else:
        assert journal.entries[-1][:2] == ("finished", ProviderJobStatus.ABANDONED)


async def test_a_stored_video_is_delivered_even_when_its_end_cannot_be_journaled(rig: ProviderRig) -> None:
    rig.fake.script("a calm lake", Scenario(polls_until_done=1))
    journal = DatabaseDownAt(rig, failing="finished")
    asset = await rig.adapter().generate(_job("a calm lake", journal))
    # Failing the task would refund a video we paid for and retry would pay for another: the row
    # stays `running` (billed, as the job is) for the orphan sweep to end.
    assert asset.size_bytes > 0
    assert len(rig.fake.jobs) == 1
    assert [entry[0] for entry in journal.entries] == ["intend", "submitted", "finished"]
