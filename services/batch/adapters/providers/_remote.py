"""What the real provider adapters share: classified HTTP calls, the job life cycle, cancellation.

A remote job goes submit -> poll (with a growing interval) -> download the video -> store it.
The life cycle itself, journaled so a crash never submits a job twice, is `_lifecycle`'s.
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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NotRequired, TypedDict, Unpack

import httpx

from services.batch.adapters.storage import AssetStorage
from services.batch.domain.provider import FailureType, ProviderFailure

log = logging.getLogger(__name__)

# A provider's reading of a 429 answer: the account's quota is spent (None: a plain rate limit).
QuotaCheck = Callable[[httpx.Response], "QuotaExhausted | None"]
# A provider's reading of a 4xx answer (other than 429) into a failure.
Refusal = Callable[[httpx.Response], ProviderFailure]
# The same reading, given the error body as a JSON object (None when it is not one).
BodyRefusal = Callable[[httpx.Response, dict[str, Any] | None], ProviderFailure]

_MAX_REDIRECTS = 5
# Connections to one provider's API at once (httpx's default), all of them kept alive: the
# default of `RemoteJobSettings.connections`.
_CONNECTIONS = 100
_ERROR_SNIPPET_CHARS = 300
_CONTENT_POLICY_HINTS = (
    "content policy",
    "content_policy",
    "moderation",
    "safety",
    "sensitive",
    "nsfw",
    "(e005)",
    # OpenAI's safety system refusing a create call (`sentinel_block`), beside `moderation_blocked`.
    "sentinel",
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
    # Pooled connections to the provider's API, all kept alive (ADR-157, ADR-161).
    connections: int = _CONNECTIONS
    # After the provider said our account is out of quota, tasks of that model fail at once
    # (refunded) for this long instead of hammering its API.
    quota_cooldown_seconds: float = 300.0


class ProviderUnavailable(ProviderFailure):
    """The provider could not be reached, timed out or answered 5xx/429: the job may still run."""


class NoAnswer(ProviderUnavailable):
    """The request got no answer (timeout, connection lost): it may or may not have taken effect."""


class QuotaExhausted(ProviderFailure):
    """The provider account is out of quota or credit (e.g. OpenAI's `429 insufficient_quota`):
    retrying cannot help until an operator acts, so the attempt fails for good (refunded)."""

    def __init__(self, message: str) -> None:
        super().__init__(FailureType.PROVIDER_ERROR, message, transient=False)
        self.route_down = True


class JobUnknown(ProviderFailure):
    """The provider answered 404/410 for a job we recorded: it does not know it (any more)."""

    def __init__(self, message: str) -> None:
        super().__init__(FailureType.PROVIDER_ERROR, message)


# Answers to a job lookup meaning the provider does not know the job.
_UNKNOWN_JOB_STATUSES = frozenset({httpx.codes.NOT_FOUND, httpx.codes.GONE})


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
    """The wait a response asks for: its Retry-After (delta-seconds or an HTTP date), else a
    `google.rpc.RetryInfo` in its error body; None when neither is there or readable.

    Google APIs (the Gemini API among them) carry the wait of a 429 in the body, often without
    the header: `{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
    "retryDelay": "38s"}]}}` (a protobuf Duration in JSON: seconds with an "s").
    """
    value = response.headers.get("retry-after")
    if value is None:
        return _retry_info_delay(response)
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


def _retry_info_delay(response: httpx.Response) -> float | None:
    body = error_body(response)
    error = body.get("error") if body is not None else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                return None
    return None


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
        quota: QuotaCheck | None = None,
    ) -> None:
        self.provider = provider
        self._credentials = dict(credentials)
        self._refusal = refusal
        self._quota = quota
        self._settings = settings
        self._sleep = sleep
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(
                settings.http_timeout_seconds, connect=min(10.0, settings.http_timeout_seconds)
            ),
            transport=transport,
            follow_redirects=False,
            # Every connection kept alive (httpx keeps 20 of its 100): a worker polling thousands
            # of jobs otherwise closes and reopens ~80 connections per burst, twice the CPU per
            # request (ADR-157).
            limits=httpx.Limits(
                max_connections=settings.connections, max_keepalive_connections=settings.connections
            ),
        )
        self._origin = _origin(self._client.base_url)
        # At most one request per connection handed to httpx at a time; the others wait here.
        # httpcore's pool scans every waiting request against every connection each time one
        # frees up: 2,000 jobs starting at once held its event loop for minutes (ADR-161), where
        # an asyncio semaphore's queue costs nothing per waiter.
        self._gate = asyncio.Semaphore(settings.connections)

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
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        form: Multipart | None = None,
        headers: Mapping[str, str] | None = None,
        job_lookup: bool = False,
    ) -> httpx.Response:
        """Sends one API request (a JSON body, or a multipart `form` of fields and files); waits
        out 429s up to the configured bound; raises on errors.

        `job_lookup`: the request reads a job we recorded, so 404/410 raise `JobUnknown`.
        """
        target = self._resolve(url)
        waited = 0.0
        while True:
            try:
                async with self._gate:
                    response = await self._client.request(
                        method,
                        target,
                        json=json,
                        data=form.fields if form is not None else None,
                        files=form.files if form is not None else None,
                        headers={**self._headers_for(target), **(headers or {})},
                    )
            except httpx.TimeoutException as error:
                raise NoAnswer(
                    FailureType.TIMEOUT, f"{self.provider} did not answer {method} in time"
                ) from error
            except httpx.TransportError as error:
                raise NoAnswer(
                    FailureType.PROVIDER_ERROR, f"{self.provider} unreachable: {type(error).__name__}"
                ) from error
            if response.status_code == httpx.codes.TOO_MANY_REQUESTS:
                exhausted = self._quota(response) if self._quota is not None else None
                if exhausted is not None:
                    raise exhausted
                delay = retry_after_seconds(response)
                delay = self._settings.poll_seconds if delay is None else delay
                if waited + delay > self._settings.max_retry_after_seconds:
                    raise ProviderUnavailable(
                        FailureType.RATE_LIMITED,
                        f"{self.provider} rate limited us (retry after {delay:g}s)",
                        retry_after=delay,
                    )
                waited += delay
                await self._sleep(delay)
                continue
            if response.status_code >= httpx.codes.INTERNAL_SERVER_ERROR:
                # A 503 may say when to come back: the next attempt waits at least that long.
                raise ProviderUnavailable(
                    FailureType.PROVIDER_ERROR,
                    f"{self.provider} answered HTTP {response.status_code}: {snippet(response)}",
                    retry_after=retry_after_seconds(response),
                )
            if job_lookup and response.status_code in _UNKNOWN_JOB_STATUSES:
                raise JobUnknown(f"{self.provider} does not know the job (HTTP {response.status_code})")
            if response.status_code >= httpx.codes.BAD_REQUEST:
                raise self._refusal(response)
            return response

    async def send_json(self, method: str, url: str, **request: Unpack[RequestOptions]) -> dict[str, Any]:
        """`send`, then the body as a JSON object."""
        return json_object(await self.send(method, url, **request))

    async def download(self, url: str) -> bytes:
        """Fetches a video, following redirects by hand so credentials never leave the API origin.

        Any failure (network, non-200, too large) is a transient `provider_error`: the attempt is
        lost, the task is not paid without its file.
        """
        target = self._resolve(url)
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                async with (
                    self._gate,
                    self._client.stream("GET", target, headers=self._headers_for(target)) as response,
                ):
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


class RequestOptions(TypedDict, total=False):
    """The keywords of `ProviderHttp.send`, which `send_json` passes on as they are."""

    json: Any
    form: Multipart | None
    headers: Mapping[str, str] | None
    job_lookup: bool


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


class AdapterWiring(TypedDict):
    """What every remote adapter is built with besides its provider's URL and credentials."""

    storage: AssetStorage
    model_ids: Mapping[str, str]
    settings: RemoteJobSettings
    transport: NotRequired[httpx.AsyncBaseTransport | None]
