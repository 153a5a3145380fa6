"""What the real provider adapters share: classified HTTP calls, the job life cycle, cancellation.

A remote job goes submit -> poll (with a growing interval) -> download the video -> store it.
HTTP trouble becomes a `ProviderFailure` the worker's retry loop understands: 429 waits out
`Retry-After` inside the attempt (up to a bound, then `rate_limited`), 5xx and network errors are
transient `provider_error`/`timeout`, 4xx refusals are classified by each provider. Credentials are
sent only to the provider's own API origin (never to the CDN a video is downloaded from) and never
logged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, NotRequired, Self, TypedDict, TypeVar, Unpack

import httpx

from services.batch.adapters.storage import AssetStorage
from services.batch.domain.batch import TaskId
from services.batch.domain.provider import FailureType, ProviderFailure, ProviderJob, VideoAsset

log = logging.getLogger(__name__)

HandleT = TypeVar("HandleT")
# A provider's reading of a 4xx answer (other than 429) into a failure.
Refusal = Callable[[httpx.Response], ProviderFailure]
# The same reading, given the error body as a JSON object (None when it is not one).
BodyRefusal = Callable[[httpx.Response, dict[str, Any] | None], ProviderFailure]

_MAX_REDIRECTS = 5
_ERROR_SNIPPET_CHARS = 300
_POLL_GROWTH = 1.5
_CONTENT_POLICY_HINTS = (
    "content policy",
    "content_policy",
    "moderation",
    "safety",
    "sensitive",
    "nsfw",
    "(e005)",
    "responsible ai",
    "prohibited",
)


@dataclass(frozen=True)
class RemoteJobSettings:
    """How patiently an adapter waits on its provider."""

    poll_seconds: float = 5.0
    max_poll_seconds: float = 30.0
    # A 429 asking for a longer wait than this (in total, per request) fails the attempt instead.
    max_retry_after_seconds: float = 60.0
    # Consecutive failed status polls tolerated before the attempt is given up.
    max_poll_errors: int = 3
    max_asset_bytes: int = 512 * 1024 * 1024
    http_timeout_seconds: float = 30.0


class ProviderUnavailable(ProviderFailure):
    """The provider could not be reached, timed out or answered 5xx/429: the job may still run."""


def mentions_content_policy(text: str) -> bool:
    """Whether a provider's error text reads like a safety or moderation refusal."""
    lowered = text.lower()
    return any(hint in lowered for hint in _CONTENT_POLICY_HINTS)


def refusal_of_input(message: str) -> ProviderFailure:
    """A refused prompt: content policy when the message says so, invalid input otherwise."""
    if mentions_content_policy(message):
        return ProviderFailure(FailureType.CONTENT_POLICY, message)
    return ProviderFailure(FailureType.INVALID_INPUT, message)


def failed_job(message: str, *evidence: str) -> ProviderFailure:
    """A job that ran and failed, classified from its `evidence` (error code or text).

    Content policy when any evidence reads like a safety refusal, else a transient provider fault.
    """
    if any(mentions_content_policy(text) for text in evidence):
        return ProviderFailure(FailureType.CONTENT_POLICY, message)
    return ProviderFailure(FailureType.PROVIDER_ERROR, message)


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """The wait a response asks for: delta-seconds or an HTTP date; None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response body as a JSON object, or a transient failure when it is anything else."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderUnavailable(
            FailureType.PROVIDER_ERROR,
            f"unreadable answer from the provider (HTTP {response.status_code}): {snippet(response)}",
        )
    return body


def snippet(response: httpx.Response) -> str:
    """The start of a response body, for error messages."""
    try:
        return response.text[:_ERROR_SNIPPET_CHARS]
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return "<unreadable body>"


def rejected_credentials(provider: str, response: httpx.Response) -> ProviderFailure:
    """401/403: our configuration is wrong; retrying cannot help."""
    return ProviderFailure(
        FailureType.PROVIDER_ERROR,
        f"{provider} refused our credentials (HTTP {response.status_code})",
        transient=False,
    )


def error_body(response: httpx.Response) -> dict[str, Any] | None:
    """A 4xx answer's body as a JSON object; None when it is anything else."""
    try:
        return json_object(response)
    except ProviderUnavailable:
        return None


def refusal_classifier(provider: str) -> Callable[[BodyRefusal], Refusal]:
    """Turns a provider's reading of its error bodies into the `refusal` its `ProviderHttp` uses.

    What every provider shares stays here: 401/403 mean our credentials are wrong, whatever the
    body says (it may echo the key, so it is not quoted), and the body is read once as a JSON
    object; the decorated function only speaks the provider's error vocabulary.
    """

    def decorate(classify_body: BodyRefusal) -> Refusal:
        @functools.wraps(classify_body)
        def classify(response: httpx.Response) -> ProviderFailure:
            if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
                return rejected_credentials(provider, response)
            return classify_body(response, error_body(response))

        return classify

    return decorate


class ProviderHttp:
    """One shared httpx client for one provider, turning HTTP trouble into `ProviderFailure`s.

    `refusal` classifies a 4xx answer (other than 429) in the provider's own error vocabulary.
    """

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        credentials: Mapping[str, str],
        refusal: Callable[[httpx.Response], ProviderFailure],
        settings: RemoteJobSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.provider = provider
        self._credentials = dict(credentials)
        self._refusal = refusal
        self._settings = settings
        self._sleep = sleep
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(
                settings.http_timeout_seconds, connect=min(10.0, settings.http_timeout_seconds)
            ),
            transport=transport,
            follow_redirects=False,
        )
        self._origin = _origin(self._client.base_url)

    def __repr__(self) -> str:
        # Never let a credential reach a log line through a repr.
        return f"ProviderHttp({self.provider!r}, {str(self._client.base_url)!r})"

    def _headers_for(self, url: httpx.URL) -> dict[str, str]:
        return self._credentials if _origin(url) == self._origin else {}

    def _resolve(self, url: str) -> httpx.URL:
        return (
            self._client.base_url.join(url) if not url.startswith(("http://", "https://")) else httpx.URL(url)
        )

    async def send(
        self, method: str, url: str, *, json: Any = None, form: Multipart | None = None
    ) -> httpx.Response:
        """Sends one API request (a JSON body, or a multipart `form` of fields and files); waits
        out 429s up to the configured bound; raises on errors."""
        target = self._resolve(url)
        waited = 0.0
        while True:
            try:
                response = await self._client.request(
                    method,
                    target,
                    json=json,
                    data=form.fields if form is not None else None,
                    files=form.files if form is not None else None,
                    headers=self._headers_for(target),
                )
            except httpx.TimeoutException as error:
                raise ProviderUnavailable(
                    FailureType.TIMEOUT, f"{self.provider} did not answer {method} in time"
                ) from error
            except httpx.TransportError as error:
                raise ProviderUnavailable(
                    FailureType.PROVIDER_ERROR, f"{self.provider} unreachable: {type(error).__name__}"
                ) from error
            if response.status_code == httpx.codes.TOO_MANY_REQUESTS:
                delay = retry_after_seconds(response)
                delay = self._settings.poll_seconds if delay is None else delay
                if waited + delay > self._settings.max_retry_after_seconds:
                    raise ProviderUnavailable(
                        FailureType.RATE_LIMITED, f"{self.provider} rate limited us (retry after {delay:g}s)"
                    )
                waited += delay
                await self._sleep(delay)
                continue
            if response.status_code >= httpx.codes.INTERNAL_SERVER_ERROR:
                raise ProviderUnavailable(
                    FailureType.PROVIDER_ERROR,
                    f"{self.provider} answered HTTP {response.status_code}: {snippet(response)}",
                )
            if response.status_code >= httpx.codes.BAD_REQUEST:
                raise self._refusal(response)
            return response

    async def send_json(
        self, method: str, url: str, *, json: Any = None, form: Multipart | None = None
    ) -> dict[str, Any]:
        """`send`, then the body as a JSON object."""
        return json_object(await self.send(method, url, json=json, form=form))

    async def download(self, url: str) -> bytes:
        """Fetches a video, following redirects by hand so credentials never leave the API origin.

        Any failure (network, non-200, too large) is a transient `provider_error`: the attempt is
        lost, the task is not paid without its file.
        """
        target = self._resolve(url)
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                async with self._client.stream("GET", target, headers=self._headers_for(target)) as response:
                    if response.is_redirect and "location" in response.headers:
                        target = target.join(response.headers["location"])
                        continue
                    if response.status_code != httpx.codes.OK:
                        raise ProviderFailure(
                            FailureType.PROVIDER_ERROR,
                            f"video download from {self.provider} failed with HTTP {response.status_code}",
                        )
                    return await self._read_capped(response)
            except httpx.HTTPError as error:
                raise ProviderFailure(
                    FailureType.PROVIDER_ERROR,
                    f"video download from {self.provider} failed: {type(error).__name__}",
                ) from error
        raise ProviderFailure(
            FailureType.PROVIDER_ERROR, f"video download from {self.provider}: too many redirects"
        )

    async def _read_capped(self, response: httpx.Response) -> bytes:
        limit = self._settings.max_asset_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ProviderFailure(FailureType.PROVIDER_ERROR, f"video larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise ProviderFailure(FailureType.PROVIDER_ERROR, f"video larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def close(self) -> None:
        """Closes the connection pool."""
        await self._client.aclose()


@dataclass(frozen=True)
class Multipart:
    """A multipart/form-data body: text fields, and files as (field, (name, bytes, type))."""

    fields: dict[str, str]
    files: list[tuple[str, tuple[str, bytes, str]]]


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


class AdapterWiring(TypedDict):
    """What every remote adapter is built with besides its provider's URL and credentials."""

    storage: AssetStorage
    model_ids: Mapping[str, str]
    settings: RemoteJobSettings
    transport: NotRequired[httpx.AsyncBaseTransport | None]


class RemoteJobProvider(ABC, Generic[HandleT]):
    """A `CancellableProvider` for APIs that create a job, are polled, and then offer a video.

    Subclasses say how to submit, how to read a job's state and how to cancel; this class runs the
    life cycle. A job abandoned by us (attempt timed out, task cancelled, provider unreachable) is
    cancelled at the provider in the background so it stops costing money.
    """

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

    @classmethod
    def over_http(
        cls,
        *,
        provider: str,
        base_url: str,
        credentials: Mapping[str, str],
        refusal: Refusal,
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
        )
        return cls(http, wiring["storage"], model_ids=wiring["model_ids"], settings=wiring["settings"])

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
    async def _submit(self, job: ProviderJob) -> HandleT:
        """Creates the job at the provider."""

    @abstractmethod
    async def _check(self, handle: HandleT) -> str | None:
        """The video's URL once the job succeeded, None while it runs; raises when it failed."""

    @abstractmethod
    async def _cancel_remote(self, handle: HandleT) -> bool:
        """Asks the provider to stop the job; whether it accepted."""

    async def generate(self, job: ProviderJob) -> VideoAsset:
        """Submits, polls, downloads and stores; raises `ProviderFailure` on any failure."""
        handle = await self._submit(job)
        self._running[job.task_id] = handle
        try:
            video_url = await self._poll(handle)
            content = await self._http.download(video_url)
        except ProviderFailure as failure:
            if isinstance(failure, ProviderUnavailable):
                self._abandon(handle)
            if job.task_id in self._cancel_requested:
                raise ProviderFailure(
                    FailureType.CANCELLED, f"cancelled at {self._http.provider}", transient=False
                ) from failure
            raise
        except BaseException:
            # Our own timeout or a cancelled task: the job must not keep running unobserved.
            self._abandon(handle)
            raise
        finally:
            self._running.pop(job.task_id, None)
            self._cancel_requested.discard(job.task_id)
        return await self._storage.store(job.batch_id, job.task_id, content)

    async def cancel(self, task_id: TaskId) -> bool:
        """Asks the provider to stop the task's running job; its `generate` then fails `cancelled`."""
        handle = self._running.get(task_id)
        if handle is None:
            return False
        self._cancel_requested.add(task_id)
        try:
            return await self._cancel_remote(handle)
        except ProviderFailure as failure:
            log.warning("%s refused to cancel task %s: %s", self._http.provider, task_id, failure.message)
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

    def _abandon(self, handle: HandleT) -> None:
        task = asyncio.get_running_loop().create_task(self._cancel_quietly(handle))
        self._abandoning.add(task)
        task.add_done_callback(self._abandoning.discard)

    async def _cancel_quietly(self, handle: HandleT) -> None:
        try:
            await self._cancel_remote(handle)
        except ProviderFailure as failure:
            log.warning("%s: could not cancel an abandoned job: %s", self._http.provider, failure.message)

    async def close(self) -> None:
        """Lets background cancellations finish (bounded by the HTTP timeout), then closes the client."""
        if self._abandoning:
            await asyncio.gather(*self._abandoning, return_exceptions=True)
        await self._http.close()
