"""Google Veo through the Gemini API: `predictLongRunning`, then operation polling.

Contract: `POST /v1beta/models/{model}:predictLongRunning` with `{"instances": [{"prompt", "image"?,
"lastFrame"?, "referenceImages"?}], "parameters"?: {"aspectRatio", "resolution", "negativePrompt",
"seed", "durationSeconds", "generateAudio"}}` (images as `{"bytesBase64Encoded", "mimeType"}`)
answers an operation `{"name"}`; `GET /v1beta/{name}` answers `{"done", "error"?, "response"?}`
where a success carries `response.generateVideoResponse.generatedSamples[].video.uri` (downloaded
with the API key) and a safety refusal carries `raiMediaFilteredCount`/`raiMediaFilteredReasons`.
The key travels in the `x-goog-api-key` header, never in the URL, so it cannot reach an access log.

No cancel and no idempotency key (ADR-110): the Gemini API documents only getting an operation
for Veo (the official google-genai SDKs expose `operations.get`, no cancel, for the Gemini API),
and `predictLongRunning` takes no request id. A job we stop watching runs to its end at our cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Unpack

import httpx

from services.batch.adapters.generation_fields import ImageNames, SettingNames, add_images, add_settings
from services.batch.adapters.providers._inputs import base64_text
from services.batch.adapters.providers._lifecycle import RemoteJobProvider, StringHandles
from services.batch.adapters.providers._remote import (
    AdapterWiring,
    refusal_classifier,
    refusal_of_input,
    snippet,
)
from services.batch.domain.generation import InputImage
from services.batch.domain.provider import FailureType, ProviderFailure, ProviderJob

PROVIDER = "veo"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

# google.rpc.Code values an operation's `error.code` may carry.
_CANCELLED = 1
_INVALID_INPUT_CODES = frozenset({3, 9, 11})  # INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
_DEADLINE_EXCEEDED = 4
_RESOURCE_EXHAUSTED = 8
_CREDENTIAL_CODES = frozenset({7, 16})  # PERMISSION_DENIED, UNAUTHENTICATED

# The Gemini API's names of the instance's images and of the parameters.
_IMAGES = ImageNames("image", "lastFrame", "referenceImages")
_PARAMETERS = SettingNames("aspectRatio", "resolution", "negativePrompt", "seed", "generateAudio")


def _google_error(body: dict[str, Any]) -> tuple[str, str]:
    error = body.get("error")
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("status", "")), str(error.get("message", ""))


@refusal_classifier(PROVIDER)
def classify_refusal(response: httpx.Response, body: dict[str, Any] | None) -> ProviderFailure:
    """A 4xx answer: `{"error": {"code", "message", "status"}}`."""
    status, message = _google_error(body) if body is not None else ("", snippet(response))
    text = f"veo refused the request ({status or response.status_code}): {message}"
    if status in ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE") or response.status_code == 400:
        return refusal_of_input(text)
    return ProviderFailure(FailureType.PROVIDER_ERROR, text, transient=False)


def classify_operation_error(error: dict[str, Any]) -> ProviderFailure:
    """A finished operation's `error` (a google.rpc.Status)."""
    code = error.get("code")
    text = f"veo operation failed (code {code}): {error.get('message', '')}"
    if code == _CANCELLED:
        return ProviderFailure(FailureType.CANCELLED, text, transient=False)
    if code in _INVALID_INPUT_CODES:
        return refusal_of_input(text)
    if code == _DEADLINE_EXCEEDED:
        return ProviderFailure(FailureType.TIMEOUT, text)
    if code == _RESOURCE_EXHAUSTED:
        return ProviderFailure(FailureType.RATE_LIMITED, text)
    if code in _CREDENTIAL_CODES:
        return ProviderFailure(FailureType.PROVIDER_ERROR, text, transient=False)
    return ProviderFailure(FailureType.PROVIDER_ERROR, text)


def video_uri(operation: dict[str, Any]) -> str:
    """The first generated sample's URI of a successful operation; raises for a safety refusal."""
    response = operation.get("response")
    generated = response.get("generateVideoResponse") if isinstance(response, dict) else None
    if not isinstance(generated, dict):
        raise ProviderFailure(FailureType.PROVIDER_ERROR, "veo operation finished without a response")
    samples = generated.get("generatedSamples") or []
    for sample in samples:
        video = sample.get("video") if isinstance(sample, dict) else None
        if isinstance(video, dict) and isinstance(video.get("uri"), str):
            return str(video["uri"])
    if generated.get("raiMediaFilteredCount"):
        reasons = "; ".join(str(reason) for reason in generated.get("raiMediaFilteredReasons") or [])
        raise ProviderFailure(FailureType.CONTENT_POLICY, f"veo filtered the video: {reasons}")
    raise ProviderFailure(FailureType.PROVIDER_ERROR, "veo operation finished without a video")


def _image(image: InputImage) -> dict[str, str]:
    return {"bytesBase64Encoded": base64_text(image), "mimeType": image.mime_type}


def _reference_image(image: InputImage) -> dict[str, Any]:
    return {"image": _image(image), "referenceType": "asset"}


def predict_request(job: ProviderJob) -> dict[str, Any]:
    """The predictLongRunning body: the instance (prompt, first frame `image`, `lastFrame`,
    `referenceImages` of type asset) and only the `parameters` the item set."""
    instance: dict[str, Any] = {"prompt": job.prompt}
    add_images(instance, job.images, _IMAGES, _image, encode_reference=_reference_image)
    parameters: dict[str, Any] = {}
    add_settings(parameters, job.settings, _PARAMETERS)
    if job.duration_seconds:
        parameters["durationSeconds"] = job.duration_seconds
    body: dict[str, Any] = {"instances": [instance]}
    if parameters:
        body["parameters"] = parameters
    return body


class VeoProvider(StringHandles, RemoteJobProvider[str]):
    """Veo models through the Gemini API; the job handle is the operation name."""

    cancels_jobs = False

    @classmethod
    def connect(
        cls, *, api_key: str, base_url: str = DEFAULT_BASE_URL, **wiring: Unpack[AdapterWiring]
    ) -> VeoProvider:
        """An adapter sending the key as `x-goog-api-key` (nothing connects before the first call)."""
        return cls.over_http(
            provider=PROVIDER,
            base_url=base_url,
            credentials={"x-goog-api-key": api_key},
            refusal=classify_refusal,
            **wiring,
        )

    async def _submit(self, job: ProviderJob, headers: Mapping[str, str]) -> str:
        operation = await self._http.send_json(
            "POST",
            f"/v1beta/models/{self.model_id(job.model)}:predictLongRunning",
            json=predict_request(job),
            headers=headers,
        )
        return self._job_id(operation, "name", "an operation name")

    async def _check(self, handle: str) -> str | None:
        operation = await self._http.send_json("GET", f"/v1beta/{handle}", job_lookup=True)
        if not operation.get("done"):
            return None
        error = operation.get("error")
        if isinstance(error, dict):
            raise classify_operation_error(error)
        return video_uri(operation)

    async def _cancel_remote(self, handle: str) -> bool:
        # The Gemini API documents no cancel for Veo operations: nothing to ask.
        return False
