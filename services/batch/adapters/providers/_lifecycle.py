"""The life cycle of a remote job, journaled so a crash never pays a provider twice (ADR-110).

A job goes submit -> poll (with a growing interval) -> download the video -> store it. Every
submission is journaled through `ProviderJob.journal`: the intent row before the create call, the
job id in the step that learns it and before any poll, and the job's end. A job recorded by a
process that died comes back as `ProviderJob.resume` and is polled again instead of submitted
again; only a job the provider answers 404 for (`JobUnknown`) is replaced by a new submission.

The fault point `provider.after_create` (libs.fault_points) kills the process between the create
call and the write of its answer: the one window in which a job can exist that we do not know of.

Cancelling differs by provider: Replicate and fal stop a running job; the Gemini API documents no
cancel for Veo operations and OpenAI's `DELETE /v1/videos/{id}` deletes a video rather than stopping
a render, so for those a job we stop watching is `abandoned`: it may finish and be billed to us,
never to the customer (the task is refunded either way).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Generic, Self, TypeVar, Unpack

from libs import fault_points
from services.batch import metrics as batch_metrics
from services.batch.adapters.providers._remote import (
    AdapterWiring,
    JobUnknown,
    NoAnswer,
    ProviderHttp,
    ProviderUnavailable,
    QuotaCheck,
    QuotaExhausted,
    Refusal,
    RemoteJobSettings,
)
from services.batch.adapters.storage import AssetStorage
from services.batch.domain.batch import TaskId
from services.batch.domain.provider import FailureType, ProviderFailure, ProviderJob, VideoAsset
from services.batch.domain.provider_jobs import JobJournal, ProviderJobStatus, idempotency_key

log = logging.getLogger(__name__)

HandleT = TypeVar("HandleT")
FAULT_AFTER_CREATE = "provider.after_create"
_POLL_GROWTH = 1.5


class _NoJournal:
    """The journal of a job nobody records (an adapter used on its own)."""

    async def intend(self, provider: str, idempotency_key: str | None) -> None:
        return None

    async def submitted(self, provider_job_id: str, handle: str) -> None:
        return None

    async def finished(self, status: ProviderJobStatus, failure: ProviderFailure | None = None) -> None:
        return None


NO_JOURNAL: JobJournal = _NoJournal()


class RemoteJobProvider(ABC, Generic[HandleT]):
    """A `CancellableProvider` for APIs that create a job, are polled, and then offer a video.

    Subclasses say how to submit, read, describe and restore a job and how to cancel it; this
    class runs the journaled life cycle. A job we give up on (attempt timed out, task cancelled,
    provider unreachable) is cancelled at the provider in the background where its API can stop
    it; a job still running when the worker shuts down is left running (`detach`) for the next
    worker to resume.
    """

    # Whether the provider's API stops a running job (see the module docstring).
    cancels_jobs: ClassVar[bool] = True
    # The header carrying an idempotency key on the create call, for a provider that documents one.
    # None of ours does (ADR-110): an intent without a job id is then a job in doubt.
    idempotency_header: ClassVar[str | None] = None

    def __init__(
        self,
        http: ProviderHttp,
        storage: AssetStorage,
        *,
        model_ids: Mapping[str, str],
        settings: RemoteJobSettings,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = http
        self._storage = storage
        self._model_ids = dict(model_ids)
        self._settings = settings
        self._sleep = sleep
        self._running: dict[TaskId, HandleT] = {}
        self._cancel_requested: set[TaskId] = set()
        self._abandoning: set[asyncio.Task[None]] = set()
        self._detached = False
        # Models whose provider account is out of quota: (until when on the monotonic clock, why).
        self._cooldowns: dict[str, tuple[float, QuotaExhausted]] = {}

    @classmethod
    def over_http(
        cls,
        *,
        provider: str,
        base_url: str,
        credentials: Mapping[str, str],
        refusal: Refusal,
        quota: QuotaCheck | None = None,
        **wiring: Unpack[AdapterWiring],
    ) -> Self:
        """An adapter with its own HTTP client (nothing connects before the first call)."""
        http = ProviderHttp(
            provider=provider,
            base_url=base_url,
            credentials=credentials,
            refusal=refusal,
            settings=wiring["settings"],
            transport=wiring.get("transport"),
            quota=quota,
        )
        return cls(http, wiring["storage"], model_ids=wiring["model_ids"], settings=wiring["settings"])

    @property
    def durable_jobs(self) -> bool:
        """Its jobs cost money and outlive this process: the worker journals them."""
        return True

    @property
    def running_jobs(self) -> int:
        """Jobs submitted by this process and not finished yet."""
        return len(self._running)

    def model_id(self, model: str) -> str:
        """The provider's name for one of our models (our name when none is configured)."""
        return self._model_ids.get(model, model)

    def _job_id(self, created: dict[str, Any], field: str, what: str) -> str:
        """The handle field of a creation answer; a transient failure when the provider left it out."""
        value = created.get(field)
        if not isinstance(value, str) or not value:
            raise ProviderUnavailable(
                FailureType.PROVIDER_ERROR, f"{self._http.provider} answered without {what}"
            )
        return value

    @abstractmethod
    async def _submit(self, job: ProviderJob, headers: Mapping[str, str]) -> HandleT:
        """Creates the job at the provider, sending `headers` (an idempotency key) with the call."""

    @abstractmethod
    async def _check(self, handle: HandleT) -> str | None:
        """The video's URL once the job succeeded, None while it runs; raises when it failed
        (`JobUnknown` when the provider does not know the job)."""

    @abstractmethod
    async def _cancel_remote(self, handle: HandleT) -> bool:
        """Asks the provider to stop the job; whether it accepted."""

    @abstractmethod
    def _describe(self, handle: HandleT) -> tuple[str, str]:
        """The provider's job id, and the handle as text for the journal (`_restore` reads it)."""

    @abstractmethod
    def _restore(self, text: str) -> HandleT:
        """The handle a journal row describes."""

    def detach(self) -> None:
        """The worker is shutting down: jobs it stops watching from now on keep running at the
        provider (not cancelled), recorded as running, for the next worker to resume."""
        self._detached = True

    async def generate(self, job: ProviderJob) -> VideoAsset:
        """Resumes the attempt's recorded job or submits one, polls it, downloads and stores the
        video; raises `ProviderFailure` on any failure."""
        journal = job.journal or NO_JOURNAL
        if job.resume is not None and job.resume.handle:
            try:
                return await self._follow(job, self._restore(job.resume.handle), journal)
            except JobUnknown:
                log.warning(
                    "%s no longer knows the job of task %s; submitting it again",
                    self._http.provider,
                    job.task_id,
                )
        return await self._follow(job, await self._create(job, journal), journal)

    async def _create(self, job: ProviderJob, journal: JobJournal) -> HandleT:
        self._check_cooldown(job.model)
        key = idempotency_key(job.task_id, job.attempt) if self.idempotency_header else None
        await journal.intend(self._http.provider, key)
        headers = {self.idempotency_header: key} if self.idempotency_header and key else {}
        try:
            handle = await self._submit(job, headers)
        except NoAnswer as lost:
            # The create call may have made a job we will never hear of.
            lost.in_doubt = True
            await journal.finished(ProviderJobStatus.IN_DOUBT, lost)
            raise
        except QuotaExhausted as exhausted:
            await journal.finished(ProviderJobStatus.REFUSED, exhausted)
            self._cool_down(job.model, exhausted)
            raise
        except ProviderFailure as refused:
            await journal.finished(ProviderJobStatus.REFUSED, refused)
            raise
        except BaseException:
            # Cancelled (attempt timeout, cancelled batch) while the create call was in flight.
            # On shutdown the row stays `submitting`: the next claim marks it in doubt.
            if not self._detached:
                await self._record_quietly(journal, ProviderJobStatus.IN_DOUBT)
            raise
        fault_points.reach(FAULT_AFTER_CREATE)
        provider_job_id, text = self._describe(handle)
        try:
            await journal.submitted(provider_job_id, text)
        except Exception:
            # The job exists but its id could not be written (our database out of reach): it
            # must not run unobserved while the task's next attempt makes another one, so it is
            # stopped now (recorded as its end, if the database is back by then).
            self._abandon(handle, journal, cancel_sent=False)
            raise
        return handle

    def cooling_down(self, model: str) -> bool:
        """Whether our account here was found out of quota for `model` within the cooldown: a
        create call would be refused without being sent (failover skips the route, ADR-149)."""
        cooling = self._cooldowns.get(model)
        return cooling is not None and time.monotonic() < cooling[0]

    def _check_cooldown(self, model: str) -> None:
        cooling = self._cooldowns.get(model)
        if cooling is None:
            return
        until, why = cooling
        if time.monotonic() >= until:
            del self._cooldowns[model]
            return
        # Not one more call while the account is out of quota: the task fails as the last did.
        raise QuotaExhausted(f"{why.message} (cooling down, not called)")

    def _cool_down(self, model: str, exhausted: QuotaExhausted) -> None:
        # The operator's signal: a metric and an error log, once per exhausted answer.
        batch_metrics.provider_quota_exhausted(self._http.provider, model)
        log.error(
            "%s: our account is out of quota for %s (%s); its tasks fail (refunded) for %.0fs",
            self._http.provider,
            model,
            exhausted.message,
            self._settings.quota_cooldown_seconds,
        )
        self._cooldowns[model] = (time.monotonic() + self._settings.quota_cooldown_seconds, exhausted)

    async def _follow(self, job: ProviderJob, handle: HandleT, journal: JobJournal) -> VideoAsset:
        self._running[job.task_id] = handle
        try:
            video_url = await self._poll(handle)
            content = await self._http.download(video_url)
        except JobUnknown as lost:
            await journal.finished(ProviderJobStatus.LOST, lost)
            raise
        except ProviderFailure as failure:
            cancelled = job.task_id in self._cancel_requested
            if isinstance(failure, ProviderUnavailable):
                self._abandon(handle, journal, cancel_sent=cancelled)
            else:
                status = ProviderJobStatus.CANCELLED if cancelled else ProviderJobStatus.FAILED
                await journal.finished(status, failure)
            if cancelled:
                raise ProviderFailure(
                    FailureType.CANCELLED, f"cancelled at {self._http.provider}", transient=False
                ) from failure
            raise
        except BaseException:
            # Our own timeout or a cancelled task: the job must not keep running unobserved,
            # unless the worker is shutting down and the next one resumes it.
            if not self._detached:
                self._abandon(handle, journal, cancel_sent=job.task_id in self._cancel_requested)
            raise
        finally:
            self._running.pop(job.task_id, None)
            self._cancel_requested.discard(job.task_id)
        asset = await self._storage.store(job.batch_id, job.task_id, content)
        # The video exists and is stored: it is delivered even if its end cannot be written now.
        # The row then stays `running` (billed, as the job is) and the orphan sweep ends it once
        # the task has succeeded, so a journal hiccup never pays for the video twice.
        await self._record_quietly(journal, ProviderJobStatus.SUCCEEDED)
        return asset

    async def cancel(self, task_id: TaskId) -> bool:
        """Asks the provider to stop the task's running job; its `generate` then fails `cancelled`.

        False when no job runs here for the task, or when the provider cannot stop one.
        """
        handle = self._running.get(task_id)
        if handle is None or not self.cancels_jobs:
            return False
        self._cancel_requested.add(task_id)
        try:
            return await self._cancel_remote(handle)
        except ProviderFailure as failure:
            log.warning("%s refused to cancel task %s: %s", self._http.provider, task_id, failure.message)
            return False

    async def stop_recorded(self, handle: str) -> bool:
        """Asks the provider to stop a job recorded by any worker (its journal `handle`); False
        when the provider cannot stop jobs or refused."""
        if not self.cancels_jobs:
            return False
        try:
            return await self._cancel_remote(self._restore(handle))
        except ProviderFailure as failure:
            log.warning("%s refused to stop an orphaned job: %s", self._http.provider, failure.message)
            return False

    async def _poll(self, handle: HandleT) -> str:
        delay = self._settings.poll_seconds
        errors = 0
        while True:
            await self._sleep(delay)
            try:
                video_url = await self._check(handle)
            except ProviderUnavailable:
                errors += 1
                if errors > self._settings.max_poll_errors:
                    raise
            else:
                errors = 0
                if video_url is not None:
                    return video_url
            delay = min(delay * _POLL_GROWTH, self._settings.max_poll_seconds)

    def _abandon(self, handle: HandleT, journal: JobJournal, *, cancel_sent: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._stop(handle, journal, cancel_sent))
        self._abandoning.add(task)
        task.add_done_callback(self._abandoning.discard)

    async def _stop(self, handle: HandleT, journal: JobJournal, cancel_sent: bool) -> None:
        stopped = cancel_sent
        if self.cancels_jobs and not cancel_sent:
            try:
                stopped = await self._cancel_remote(handle)
            except ProviderFailure as failure:
                log.warning("%s: could not cancel an abandoned job: %s", self._http.provider, failure.message)
        status = ProviderJobStatus.CANCELLED if stopped else ProviderJobStatus.ABANDONED
        await self._record_quietly(journal, status)

    @staticmethod
    async def _record_quietly(journal: JobJournal, status: ProviderJobStatus) -> None:
        # The journal write of a job we stop watching must not hide why we stopped.
        try:
            await journal.finished(status)
        except Exception:
            log.warning("could not record a provider job as %s", status.value, exc_info=True)

    async def close(self) -> None:
        """Lets background cancellations finish (bounded by the HTTP timeout), then closes the client."""
        if self._abandoning:
            await asyncio.gather(*self._abandoning, return_exceptions=True)
        await self._http.close()


class StringHandles:
    """For adapters whose job handle is the provider's job id itself."""

    def _describe(self, handle: str) -> tuple[str, str]:
        return handle, handle

    def _restore(self, text: str) -> str:
        return text
