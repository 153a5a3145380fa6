"""OpenAI videos (Sora): create, poll, download.

Contract: `POST /v1/videos` with `{"model", "prompt"}` answers a video job `{"id", "status"}`;
`GET /v1/videos/{id}` answers `status` in queued, in_progress, completed, failed (with
`error: {"code", "message"}`); `GET /v1/videos/{id}/content` streams the MP4. Errors are
`{"error": {"message", "type", "code"}}` (`moderation_blocked` for refused prompts). The API has
no cancel endpoint and `DELETE /v1/videos/{id}` deletes a video, it is not documented as stopping
a render, so a job we stop watching runs to its end at our cost (ADR-110); the create call takes
no idempotency key.

OpenAI shut this API and the Sora 2 models down on 2026-09-24 with no replacement (ADR-146): the
adapter has no default URL and api.openai.com is refused by the settings; it serves only a
service that still speaks the contract, at the URL the operator names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Unpack

import httpx

from services.batch.adapters.providers._inputs import file_name
from services.batch.adapters.providers._lifecycle import RemoteJobProvider, StringHandles
from services.batch.adapters.providers._remote import (
    AdapterWiring,
    Multipart,
    ProviderUnavailable,
    QuotaExhausted,
    error_body,
    failed_job,
    mentions_content_policy,
    refusal_classifier,
    refusal_of_input,
    snippet,
)
from services.batch.domain.provider import FailureType, ProviderFailure, ProviderJob

PROVIDER = "openai"

_RUNNING = frozenset({"queued", "in_progress"})


def _error_fields(error: Any) -> tuple[str, str]:
    if not isinstance(error, dict):
        return "", str(error or "")
    return str(error.get("code") or error.get("type") or ""), str(error.get("message", ""))


@refusal_classifier(PROVIDER)
def classify_refusal(response: httpx.Response, body: dict[str, Any] | None) -> ProviderFailure:
    """A 4xx answer: `{"error": {"message", "type", "code"}}`."""
    code, message = _error_fields(body.get("error")) if body is not None else ("", snippet(response))
    text = f"openai refused the request ({code or response.status_code}): {message}"
    if mentions_content_policy(code):
        return ProviderFailure(FailureType.CONTENT_POLICY, text)
    if response.status_code == httpx.codes.BAD_REQUEST:
        return refusal_of_input(text)
    return ProviderFailure(FailureType.PROVIDER_ERROR, text, transient=False)


def quota_exhausted(response: httpx.Response) -> QuotaExhausted | None:
    """A 429 whose error is `insufficient_quota`: the account ran out of credit or hit its
    monthly budget; retrying cannot help (unlike a rate limit, `rate_limit_exceeded`)."""
    body = error_body(response)
    code, message = _error_fields(body.get("error")) if body is not None else ("", "")
    if code != "insufficient_quota":
        return None
    return QuotaExhausted(f"openai: our account is out of quota (insufficient_quota): {message}")


def classify_job_error(error: Any) -> ProviderFailure:
    """A failed job's `error`: moderation is a content-policy refusal, the rest a provider fault."""
    code, message = _error_fields(error)
    return failed_job(f"openai video failed ({code}): {message}", code, message)


# Our (aspect ratio, resolution) as the videos API's `size` (width x height).
_SIZES = {
    ("16:9", "720p"): "1280x720",
    ("9:16", "720p"): "720x1280",
    ("16:9", "1024p"): "1792x1024",
    ("9:16", "1024p"): "1024x1792",
}


def create_fields(model_id: str, job: ProviderJob) -> dict[str, str]:
    """The create call's fields: model, prompt, `seconds` (a string) and `size` when the item set
    them (the first frame, if any, is the `input_reference` file)."""
    fields = {"model": model_id, "prompt": job.prompt}
    if job.duration_seconds:
        fields["seconds"] = str(job.duration_seconds)
    settings = job.settings
    if settings.aspect_ratio or settings.resolution:
        wanted = (settings.aspect_ratio or "16:9", settings.resolution or "720p")
        size = _SIZES.get(wanted)
        if size is None:
            message = f"openai has no video size for aspect ratio {wanted[0]} at {wanted[1]}"
            raise ProviderFailure(FailureType.INVALID_INPUT, message, transient=False)
        fields["size"] = size
    return fields


class OpenAIVideosProvider(StringHandles, RemoteJobProvider[str]):
    """The retired OpenAI Videos contract (/v1/videos) at a service that still serves it; the job
    handle is the video id."""

    cancels_jobs = False

    @classmethod
    def connect(cls, *, api_key: str, base_url: str, **wiring: Unpack[AdapterWiring]) -> OpenAIVideosProvider:
        """An adapter of the /v1/videos contract at `base_url` sending the key as a bearer
        (nothing connects before the first call)."""
        return cls.over_http(
            provider=PROVIDER,
            base_url=base_url,
            credentials={"Authorization": f"Bearer {api_key}"},
            refusal=classify_refusal,
            quota=quota_exhausted,
            **wiring,
        )

    async def _submit(self, job: ProviderJob, headers: Mapping[str, str]) -> str:
        fields = create_fields(self.model_id(job.model), job)
        reference = job.images.first_frame
        if reference is None:
            video = await self._http.send_json("POST", "/v1/videos", json=fields, headers=headers)
        else:
            # An input reference travels as a file: the create call is then multipart/form-data.
            upload = (
                "input_reference",
                (file_name("input_reference", reference), reference.content, reference.mime_type),
            )
            video = await self._http.send_json(
                "POST", "/v1/videos", form=Multipart(fields=fields, files=[upload]), headers=headers
            )
        return self._job_id(video, "id", "a video id")

    async def _check(self, handle: str) -> str | None:
        video = await self._http.send_json("GET", f"/v1/videos/{handle}", job_lookup=True)
        status = video.get("status")
        if status == "completed":
            return f"/v1/videos/{handle}/content"
        if status == "failed":
            raise classify_job_error(video.get("error"))
        if status in _RUNNING:
            return None
        raise ProviderUnavailable(FailureType.PROVIDER_ERROR, f"openai answered an unknown status {status!r}")

    async def _cancel_remote(self, handle: str) -> bool:
        # DELETE removes a video; it is not documented as stopping a render: nothing to ask.
        return False
