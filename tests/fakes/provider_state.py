"""What every fake provider shares: per-prompt scenarios, job progress, a log of requests.

Each fake server (veo, replicate, fal, openai_videos) renders these states in its provider's own
JSON shapes and status codes. Tests script a prompt's behaviour with `FakeProvider.script`.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from services.batch.adapters.providers.simulated import placeholder_mp4

VALID_MP4 = placeholder_mp4("fake provider video")


class JobState(StrEnum):
    """Where a fake job is, as seen by one status poll."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CONTENT_POLICY = "content_policy"
    CANCELLED = "cancelled"
    SERVER_ERROR = "server_error"
    # Replicate: the prediction's deadline passed before it started.
    ABORTED = "aborted"


@dataclass
class Scenario:
    """How the fake treats jobs of one prompt."""

    polls_until_done: int = 1
    # Besides the polls: the job renders for this long after its creation (a slow provider).
    render_seconds: float = 0.0
    outcome: Literal["success", "content_policy", "error", "aborted"] = "success"
    # The first N jobs of this prompt end in a (transient) provider error, later ones in `outcome`.
    failing_runs: int = 0
    # Refused at submission with a 4xx.
    rejected: Literal["invalid_input", "content_policy"] | None = None
    # The first N submissions are answered 429 with this Retry-After.
    submit_rate_limits: int = 0
    # Submissions are answered 429 because our account is out of quota (OpenAI's insufficient_quota).
    out_of_quota: bool = False
    retry_after: str = "1"
    # The first N status polls of each job are answered 500.
    poll_server_errors: int = 0
    hang: bool = False
    asset_status: int = 200
    asset: bytes = VALID_MP4


@dataclass
class FakeJob:
    """One job the fake accepted."""

    id: str
    prompt: str
    model: str
    scenario: Scenario
    fails: bool
    poll_errors_left: int
    created_at: float = field(default_factory=time.monotonic)
    polls: int = 0
    cancelled: bool = False
    finished: bool = False
    # What the job was asked for besides its prompt, as the provider received it (field -> value;
    # uploaded files as (content type, bytes)).
    inputs: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class SeenRequest:
    """A request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    at: float


class RateLimited(Exception):
    """Answer 429 with `retry_after`."""

    def __init__(self, retry_after: str) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class OutOfQuota(Exception):
    """Answer 429: the account is out of quota (retrying cannot help)."""


class Rejected(Exception):
    """Answer a 4xx refusal of this kind."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass
class FakeProvider:
    """State of one fake provider server; `api_url` and `asset_url` are set once it listens.

    Assets are served on another origin (`localhost` instead of `127.0.0.1`), as from a CDN, so
    tests can check that credentials never travel there.
    """

    credential_header: str
    credential_value: str
    default: Scenario = field(default_factory=Scenario)
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    seen: list[SeenRequest] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    api_url: str = ""
    asset_url: str = ""
    # Until this monotonic time every API call (not asset downloads) answers 503: an outage.
    down_until: float = 0.0
    # The provider's own requests-per-minute limit on create calls, as (calls, window seconds):
    # one more within the window is answered 429, as the Gemini API does past a project's RPM.
    create_limit: tuple[int, float] | None = None
    # When each create call arrived (monotonic), and how many were refused for the limit.
    create_times: list[float] = field(default_factory=list)
    limit_refusals: int = 0
    _runs: Counter[str] = field(default_factory=Counter)
    _rate_limited: Counter[str] = field(default_factory=Counter)

    def script(self, prompt: str, scenario: Scenario) -> None:
        """Jobs whose prompt is exactly `prompt` follow `scenario`."""
        self.scenarios[prompt] = scenario

    def reset(self) -> None:
        """Forgets scripts, jobs and requests (between tests sharing one server)."""
        self.default = Scenario()
        self.scenarios.clear()
        self.jobs.clear()
        self.seen.clear()
        self.cancels.clear()
        self._runs.clear()
        self._rate_limited.clear()
        self.down_until = 0.0
        self.create_limit = None
        self.create_times.clear()
        self.limit_refusals = 0

    def go_down(self, seconds: float) -> None:
        """Answers every API call with 503 for `seconds` (the provider is down), then recovers."""
        self.down_until = time.monotonic() + seconds

    def listening_on(self, port: int) -> None:
        self.api_url = f"http://127.0.0.1:{port}"
        self.asset_url = f"http://localhost:{port}"

    def authorized(self, request: Request) -> bool:
        return request.headers.get(self.credential_header) == self.credential_value

    def submit(self, prompt: str, model: str, inputs: dict[str, object] | None = None) -> FakeJob:
        """Accepts a job, or raises RateLimited / Rejected as the prompt's scenario says."""
        scenario = self.scenarios.get(prompt, self.default)
        now = time.monotonic()
        self.create_times.append(now)
        if self.create_limit is not None:
            calls, window = self.create_limit
            if sum(now - window < at <= now for at in self.create_times) > calls:
                self.limit_refusals += 1
                raise RateLimited("10")
        if self._rate_limited[prompt] < scenario.submit_rate_limits:
            self._rate_limited[prompt] += 1
            raise RateLimited(scenario.retry_after)
        if scenario.out_of_quota:
            raise OutOfQuota
        if scenario.rejected is not None:
            raise Rejected(scenario.rejected)
        run = self._runs[prompt]
        self._runs[prompt] += 1
        job = FakeJob(
            id=uuid.uuid4().hex,
            prompt=prompt,
            model=model,
            scenario=scenario,
            fails=run < scenario.failing_runs,
            poll_errors_left=scenario.poll_server_errors,
            inputs=dict(inputs or {}),
        )
        self.jobs[job.id] = job
        return job

    def poll(self, job: FakeJob) -> JobState:
        """Advances the job by one status poll."""
        if job.poll_errors_left > 0:
            job.poll_errors_left -= 1
            return JobState.SERVER_ERROR
        if job.cancelled:
            return JobState.CANCELLED
        if job.scenario.hang:
            return JobState.RUNNING
        job.polls += 1
        rendering = time.monotonic() - job.created_at < job.scenario.render_seconds
        if rendering or job.polls < job.scenario.polls_until_done:
            return JobState.RUNNING
        job.finished = True
        if job.fails or job.scenario.outcome == "error":
            return JobState.FAILED
        if job.scenario.outcome == "content_policy":
            return JobState.CONTENT_POLICY
        if job.scenario.outcome == "aborted":
            return JobState.ABORTED
        return JobState.SUCCEEDED

    def cancel(self, job: FakeJob) -> bool:
        """Marks a running job cancelled; False when it already finished."""
        self.cancels.append(job.id)
        if job.finished:
            return False
        job.cancelled = True
        return True

    def asset_link(self, job: FakeJob) -> str:
        return f"{self.asset_url}/assets/{job.id}.mp4"

    def busiest_window(self, seconds: float) -> int:
        """The most create calls that arrived within any `seconds` (the provider's own count)."""
        times = sorted(self.create_times)
        return max((sum(start <= at < start + seconds for at in times) for start in times), default=0)

    def creates_per_prompt(self) -> Counter[str]:
        """How many jobs the fake created for each prompt (its own count of create calls that
        made a job)."""
        return Counter(job.prompt for job in list(self.jobs.values()))

    def requests_to(self, path_part: str) -> list[SeenRequest]:
        return [seen for seen in self.seen if path_part in seen.path]

    def install(self, app: FastAPI) -> None:
        """Adds the request log and the asset route (on the CDN origin) to a fake's app."""

        @app.middleware("http")
        async def record(request: Request, call_next):  # type: ignore[no-untyped-def]
            self.seen.append(
                SeenRequest(request.method, request.url.path, dict(request.headers), time.monotonic())
            )
            if time.monotonic() < self.down_until and not request.url.path.startswith("/assets/"):
                return JSONResponse({"error": "service unavailable"}, status_code=503)
            return await call_next(request)

        @app.get("/assets/{job_id}.mp4")
        async def asset(job_id: str) -> Response:
            job = self.jobs.get(job_id)
            if job is None or job.scenario.asset_status != 200:
                status = 404 if job is None else job.scenario.asset_status
                return JSONResponse({"error": "not found"}, status_code=status)
            return Response(job.scenario.asset, media_type="video/mp4")
