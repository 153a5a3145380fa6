"""OpenAI videos (Sora): create, poll, download.

Contract: `POST /v1/videos` with `{"model", "prompt"}` answers a video job `{"id", "status"}`;
`GET /v1/videos/{id}` answers `status` in queued, in_progress, completed, failed (with
`error: {"code", "message"}`); `GET /v1/videos/{id}/content` streams the MP4. Errors are
`{"error": {"message", "type", "code"}}` (`moderation_blocked` for refused prompts). The API has
no cancel endpoint: cancelling deletes the job (`DELETE /v1/videos/{id}`). OpenAI reported
shutting the API down for Sora 2 on 2026-09-24; another adapter can take its models then.
"""

from __future__ import annotations

from typing import Any, Unpack

import httpx

from services.batch.adapters.providers._remote import (
    AdapterWiring,
    ProviderUnavailable,
    RemoteJobProvider,
    failed_job,
    mentions_content_policy,
    refusal_classifier,
    refusal_of_input,
    snippet,
)
from services.batch.domain.provider import FailureType, ProviderFailure, ProviderJob

PROVIDER = "openai"
DEFAULT_BASE_URL = "https://api.openai.com"

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


def classify_job_error(error: Any) -> ProviderFailure:
    """A failed job's `error`: moderation is a content-policy refusal, the rest a provider fault."""
    code, message = _error_fields(error)
    return failed_job(f"openai video failed ({code}): {message}", code, message)


class OpenAIVideosProvider(RemoteJobProvider[str]):
    """OpenAI video models; the job handle is the video id."""

    @classmethod
    def connect(
        cls, *, api_key: str, base_url: str = DEFAULT_BASE_URL, **wiring: Unpack[AdapterWiring]
    ) -> OpenAIVideosProvider:
        """An adapter sending the key as a bearer (nothing connects before the first call)."""
        return cls.over_http(
            provider=PROVIDER,
            base_url=base_url,
            credentials={"Authorization": f"Bearer {api_key}"},
            refusal=classify_refusal,
            **wiring,
        )

    async def _submit(self, job: ProviderJob) -> str:
        video = await self._http.send_json(
            "POST", "/v1/videos", json={"model": self.model_id(job.model), "prompt": job.prompt}
        )
        return self._job_id(video, "id", "a video id")

    async def _check(self, handle: str) -> str | None:
        video = await self._http.send_json("GET", f"/v1/videos/{handle}")
        status = video.get("status")
        if status == "completed":
            return f"/v1/videos/{handle}/content"
        if status == "failed":
            raise classify_job_error(video.get("error"))
        if status in _RUNNING:
            return None
        raise ProviderUnavailable(FailureType.PROVIDER_ERROR, f"openai answered an unknown status {status!r}")

    async def _cancel_remote(self, handle: str) -> bool:
        await self._http.send("DELETE", f"/v1/videos/{handle}")
        return True
