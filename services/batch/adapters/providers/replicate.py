"""Replicate predictions: create, poll, cancel.

Contract: `POST /v1/models/{owner}/{name}/predictions` (or `POST /v1/predictions` with a
`version` when the model id is `owner/name:version`) with `{"input": {"prompt"}}` answers a
prediction `{"id", "status"}`; `GET /v1/predictions/{id}` answers `status` in starting,
processing, succeeded, failed, canceled, aborted (its deadline passed before it started:
terminal, not billed), with `output` (a URL or a list of URLs) or `error`;
`POST /v1/predictions/{id}/cancel` stops it. Errors are `{"title", "detail", "status"}`.
Replicate's create call documents the `Prefer` and `Cancel-After` headers and no idempotency key
(ADR-110): an intent without a prediction id is a job in doubt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Unpack

import httpx

from services.batch.adapters.generation_fields import ImageNames, add_images
from services.batch.adapters.providers._inputs import data_uri, snake_case_settings
from services.batch.adapters.providers._lifecycle import RemoteJobProvider, StringHandles
from services.batch.adapters.providers._remote import (
    AdapterWiring,
    ProviderUnavailable,
    failed_job,
    refusal_classifier,
    refusal_of_input,
    snippet,
)
from services.batch.domain.provider import FailureType, ProviderFailure, ProviderJob

PROVIDER = "replicate"
DEFAULT_BASE_URL = "https://api.replicate.com"

_RUNNING = frozenset({"starting", "processing"})
_IMAGES = ImageNames("image", "last_frame", "reference_images")


@refusal_classifier(PROVIDER)
def classify_refusal(response: httpx.Response, body: dict[str, Any] | None) -> ProviderFailure:
    """A 4xx answer (problem details: `{"title", "detail", "status"}`)."""
    detail = f"{body.get('title', '')}: {body.get('detail', '')}" if body is not None else snippet(response)
    text = f"replicate refused the request (HTTP {response.status_code}) {detail}"
    if response.status_code in (httpx.codes.BAD_REQUEST, httpx.codes.UNPROCESSABLE_ENTITY):
        return refusal_of_input(text)
    # 402 (out of credit at Replicate), 404 (no such model): ours to fix, not worth a retry.
    return ProviderFailure(FailureType.PROVIDER_ERROR, text, transient=False)


def output_url(output: Any) -> str:
    """The video URL of a prediction's `output` (a URL, a list of URLs, or `{"video": url}`)."""
    if isinstance(output, list) and output:
        output = output[0]
    if isinstance(output, dict):
        output = output.get("video") or output.get("url")
    if isinstance(output, str) and output:
        return output
    raise ProviderFailure(FailureType.PROVIDER_ERROR, "replicate prediction succeeded without a video URL")


def classify_prediction_error(error: Any) -> ProviderFailure:
    """A failed prediction's `error` text: a safety refusal (E005 and kin) or a provider fault."""
    return failed_job(f"replicate prediction failed: {error}", str(error))


def prediction_input(job: ProviderJob) -> dict[str, Any]:
    """The prediction's `input`, in the names Replicate's video models use (google/veo-3.1: image,
    last_frame, reference_images, aspect_ratio, resolution, duration, negative_prompt, seed,
    generate_audio); images as data URIs."""
    document: dict[str, Any] = {"prompt": job.prompt, **snake_case_settings(job.settings)}
    if job.duration_seconds:
        document["duration"] = job.duration_seconds
    add_images(document, job.images, _IMAGES, data_uri)
    return document


class ReplicateProvider(StringHandles, RemoteJobProvider[str]):
    """Replicate models; the job handle is the prediction id."""

    @classmethod
    def connect(
        cls, *, api_token: str, base_url: str = DEFAULT_BASE_URL, **wiring: Unpack[AdapterWiring]
    ) -> ReplicateProvider:
        """An adapter sending the token as a bearer (nothing connects before the first call)."""
        return cls.over_http(
            provider=PROVIDER,
            base_url=base_url,
            credentials={"Authorization": f"Bearer {api_token}"},
            refusal=classify_refusal,
            **wiring,
        )

    async def _submit(self, job: ProviderJob, headers: Mapping[str, str]) -> str:
        model_id = self.model_id(job.model)
        payload: dict[str, Any] = {"input": prediction_input(job)}
        path = f"/v1/models/{model_id}/predictions"
        if ":" in model_id:
            path = "/v1/predictions"
            payload["version"] = model_id.split(":", 1)[1]
        prediction = await self._http.send_json("POST", path, json=payload, headers=headers)
        return self._job_id(prediction, "id", "an id")

    async def _check(self, handle: str) -> str | None:
        prediction = await self._http.send_json("GET", f"/v1/predictions/{handle}", job_lookup=True)
        status = prediction.get("status")
        if status == "succeeded":
            return output_url(prediction.get("output"))
        if status == "failed":
            raise classify_prediction_error(prediction.get("error"))
        if status == "canceled":
            raise ProviderFailure(FailureType.CANCELLED, "replicate prediction was canceled", transient=False)
        if status == "aborted":
            # Terminal: its deadline passed before it started (not billed, per Replicate). Another
            # attempt may start in time; nothing left to poll or cancel.
            raise ProviderFailure(FailureType.TIMEOUT, "replicate aborted the prediction before it started")
        if status in _RUNNING:
            return None
        raise ProviderUnavailable(FailureType.PROVIDER_ERROR, f"replicate answered status {status!r}")

    async def _cancel_remote(self, handle: str) -> bool:
        await self._http.send("POST", f"/v1/predictions/{handle}/cancel")
        return True
