"""What a video provider must offer, in domain terms, and how its failures are classified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from libs.vocabulary import TRANSIENT_FAILURES

# The failure types are the shared vocabulary's (libs/vocabulary.py), named here for the batch domain.
from libs.vocabulary import FailureType as FailureType
from services.batch.domain.batch import BatchId, TaskId
from services.batch.domain.generation import NO_IMAGES, NO_SETTINGS, GenerationSettings, ResolvedImages

if TYPE_CHECKING:
    from services.batch.domain.provider_jobs import JobJournal, RecordedJob


def is_transient(failure_type: FailureType) -> bool:
    """Transient failures are worth another attempt; the others fail the task at once."""
    return failure_type in TRANSIENT_FAILURES


@dataclass(frozen=True)
class ProviderJob:
    """One attempt at generating one video."""

    task_id: TaskId
    batch_id: BatchId
    prompt: str
    model: str
    attempt: int
    # The video length priced (0: per-video model, the provider's default) and the item's
    # settings, with its input images already fetched; adapters pass them in their API's terms.
    duration_seconds: int = 0
    settings: GenerationSettings = NO_SETTINGS
    images: ResolvedImages = NO_IMAGES
    # Where a remote adapter records its submission (durable provider jobs, ADR-110; None for the
    # simulated provider), and the recorded job of this attempt to poll instead of submitting.
    journal: JobJournal | None = None
    resume: RecordedJob | None = None


@dataclass(frozen=True)
class VideoAsset:
    """A generated video: where we stored it and where customers fetch it."""

    path: str
    url: str
    size_bytes: int


class ProviderFailure(Exception):
    """A classified failure of one attempt."""

    def __init__(
        self,
        failure_type: FailureType,
        message: str,
        *,
        transient: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.failure_type = failure_type
        self.message = message
        self.transient = is_transient(failure_type) if transient is None else transient
        # The wait the provider asked for (Retry-After, a RetryInfo body) before trying again:
        # the next attempt never starts sooner.
        self.retry_after = retry_after
        # The route cannot serve any task now (our account there is out of quota): another route
        # may take the task at no attempt's cost (ADR-149).
        self.route_down = False
        # The create call's answer was lost: a job may exist at this route, so the task stays on it.
        self.in_doubt = False


class VideoProvider(Protocol):
    """Submits a job and awaits its video (polling or waiting as the provider requires)."""

    async def generate(self, job: ProviderJob) -> VideoAsset:
        """Returns the asset or raises ProviderFailure."""
        ...


class CancellableProvider(VideoProvider, Protocol):
    """A provider whose API can stop a running job."""

    async def cancel(self, task_id: TaskId) -> bool:
        """Asks the provider to stop the job running for `task_id`; False when none is running here.

        The `generate` call of that task then fails with `FailureType.CANCELLED`.
        """
        ...
