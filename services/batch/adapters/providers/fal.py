"""fal.ai queue: submit, status, result, cancel.

Contract: `POST https://queue.fal.run/{model_id}` with the model's input (`{"prompt"}`) answers
`{"request_id", "status_url", "response_url", "cancel_url"}`; `GET {status_url}` answers `status`
in IN_QUEUE, IN_PROGRESS, COMPLETED (a failed request may carry `error`/`error_type`);
`GET {response_url}` answers the model's output (`{"video": {"url"}}`) or an error
(`{"detail": ...}`, 422 for refused input); `PUT {cancel_url}` answers 202 CANCELLATION_REQUESTED
or 400 ALREADY_COMPLETED. The key travels as `Authorization: Key ...`. fal's platform headers
(timeouts, priority, retries, storage) include no idempotency key (ADR-110).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Unpack

import httpx

from services.batch.adapters.providers._inputs import data_uri, snake_case_settings
from services.batch.adapters.providers._lifecycle import RemoteJobProvider
from services.batch.adapters.providers._remote import (
    AdapterWiring,
    ProviderUnavailable,
    failed_job,
    mentions_content_policy,
    refusal_classifier,
    refusal_of_input,
    snippet,
)
from services.batch.domain.provider import FailureType, ProviderFailure, ProviderJob

PROVIDER = "fal"
DEFAULT_QUEUE_URL = "https://queue.fal.run"

_RUNNING = frozenset({"IN_QUEUE", "IN_PROGRESS"})


@dataclass(frozen=True)
class FalRequest:
    """A queued request and the URLs fal gave for it (they strip model sub-paths correctly)."""

    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


def _detail_text(detail: Any) -> tuple[str, bool]:
    """The text of a `detail` (a string or a list of `{"msg", "type"}`); whether it is a policy refusal."""
    if isinstance(detail, list):
        messages = [str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail]
        types = [str(item.get("type", "")) for item in detail if isinstance(item, dict)]
        text = "; ".join(messages)
        return text, any(mentions_content_policy(kind) for kind in types) or mentions_content_policy(text)
    text = str(detail)
    return text, mentions_content_policy(text)


@refusal_classifier(PROVIDER)
def classify_refusal(response: httpx.Response, body: dict[str, Any] | None) -> ProviderFailure:
    """A 4xx answer: `{"detail": "..." | [{"loc", "msg", "type"}]}`."""
    text, policy = _detail_text(body.get("detail", "")) if body is not None else (snippet(response), False)
    message = f"fal refused the request (HTTP {response.status_code}): {text}"
    if policy:
        return ProviderFailure(FailureType.CONTENT_POLICY, message)
    if response.status_code in (httpx.codes.BAD_REQUEST, httpx.codes.UNPROCESSABLE_ENTITY):
        return refusal_of_input(message)
    return ProviderFailure(FailureType.PROVIDER_ERROR, message, transient=False)


def video_url(result: dict[str, Any]) -> str:
    """The video URL of a model output `{"video": {"url"}}` (or `{"video": url}`)."""
    video = result.get("video")
    url = video.get("url") if isinstance(video, dict) else video
    if isinstance(url, str) and url:
        return url
    raise ProviderFailure(FailureType.PROVIDER_ERROR, "fal result has no video URL")


def request_input(job: ProviderJob) -> dict[str, Any]:
    """The queue request's input, in fal's Veo names: aspect_ratio, resolution, duration ("8s"),
    negative_prompt, seed, generate_audio; images as data URIs: `image_url` (image-to-video),
    `first_frame_url` and `last_frame_url` (first-last-frame), `image_urls` (reference-to-video)."""
    settings, images = job.settings, job.images
    document: dict[str, Any] = {"prompt": job.prompt, **snake_case_settings(settings)}
    if job.duration_seconds:
        document["duration"] = f"{job.duration_seconds}s"
    if images.first_frame is not None and images.last_frame is not None:
        document["first_frame_url"] = data_uri(images.first_frame)
        document["last_frame_url"] = data_uri(images.last_frame)
    elif images.first_frame is not None:
        document["image_url"] = data_uri(images.first_frame)
    if images.reference_images:
        document["image_urls"] = [data_uri(image) for image in images.reference_images]
    return document


class FalProvider(RemoteJobProvider[FalRequest]):
    """fal.ai queue models; the job handle is the request with its URLs."""

    @classmethod
    def connect(
        cls, *, api_key: str, queue_url: str = DEFAULT_QUEUE_URL, **wiring: Unpack[AdapterWiring]
    ) -> FalProvider:
        """An adapter sending the key as `Authorization: Key` (nothing connects before the first call)."""
        return cls.over_http(
            provider=PROVIDER,
            base_url=queue_url,
            credentials={"Authorization": f"Key {api_key}"},
            refusal=classify_refusal,
            **wiring,
        )

    async def _submit(self, job: ProviderJob, headers: Mapping[str, str]) -> FalRequest:
        model_id = self.model_id(job.model)
        queued = await self._http.send_json("POST", f"/{model_id}", json=request_input(job), headers=headers)
        request_id = self._job_id(queued, "request_id", "a request id")
        # Status and result live under the app id (owner/app), without the endpoint's sub-path.
        base = f"/{'/'.join(model_id.split('/')[:2])}/requests/{request_id}"
        return FalRequest(
            request_id=request_id,
            status_url=str(queued.get("status_url") or f"{base}/status"),
            response_url=str(queued.get("response_url") or base),
            cancel_url=str(queued.get("cancel_url") or f"{base}/cancel"),
        )

    async def _check(self, handle: FalRequest) -> str | None:
        status = await self._http.send_json("GET", handle.status_url, job_lookup=True)
        state = status.get("status")
        if state in _RUNNING:
            return None
        if state in ("CANCELED", "CANCELLED"):
            raise ProviderFailure(FailureType.CANCELLED, "fal request was cancelled", transient=False)
        error = status.get("error")
        if error:
            detail = f"{status.get('error_type', '')} {error}"
            raise failed_job(f"fal request failed: {detail.strip()}", detail)
        if state == "COMPLETED":
            return video_url(await self._http.send_json("GET", handle.response_url))
        raise ProviderUnavailable(FailureType.PROVIDER_ERROR, f"fal answered an unknown status {state!r}")

    def _describe(self, handle: FalRequest) -> tuple[str, str]:
        return handle.request_id, json.dumps(asdict(handle))

    def _restore(self, text: str) -> FalRequest:
        return FalRequest(**json.loads(text))

    async def _cancel_remote(self, handle: FalRequest) -> bool:
        try:
            await self._http.send("PUT", handle.cancel_url)
        except ProviderFailure as refused:
            if refused.failure_type in (FailureType.INVALID_INPUT, FailureType.CONTENT_POLICY):
                return False  # 400 ALREADY_COMPLETED: nothing left to stop.
            raise
        return True
