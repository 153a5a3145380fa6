"""Each real adapter passes an item's generation settings and input images to its provider in
that provider's own terms; the fakes refuse any field their public API does not have."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from services.batch.domain.batch import BatchId, TaskId
from services.batch.domain.generation import GenerationSettings, ImageRef, InputImage, ResolvedImages
from services.batch.domain.provider import FailureType, ProviderFailure, ProviderJob
from tests.integration.providers.conftest import ProviderRig

PNG = b"\x89PNG\r\n\x1a\n" + b"first frame"
JPEG = b"\xff\xd8\xff" + b"last frame"
WEBP = b"RIFF\x00\x00\x00\x00WEBP" + b"reference"

IMAGES = ResolvedImages(
    first_frame=InputImage(PNG, "image/png"),
    last_frame=InputImage(JPEG, "image/jpeg"),
    reference_images=(InputImage(PNG, "image/png"),),
)
FULL = GenerationSettings(
    aspect_ratio="9:16",
    resolution="1080p",
    seed=7,
    negative_prompt="no text",
    audio=False,
    first_frame=ImageRef(url="https://images.test/a.png"),
    last_frame=ImageRef(file_id="file-" + "0" * 32),
    reference_images=(ImageRef(url="https://images.test/r.png"),),
)
SORA = GenerationSettings(
    aspect_ratio="9:16", resolution="720p", first_frame=ImageRef(url="https://i.test/a")
)


def _job(settings: GenerationSettings, images: ResolvedImages, duration: int) -> ProviderJob:
    return ProviderJob(
        TaskId(uuid.uuid4()),
        BatchId(uuid.uuid4()),
        "a lighthouse at dusk",
        "veo-3",
        1,
        duration_seconds=duration,
        settings=settings,
        images=images,
    )


def _data_uri(mime: str, content: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode()}"


def _b64(mime: str, content: bytes) -> dict[str, str]:
    return {"bytesBase64Encoded": base64.b64encode(content).decode(), "mimeType": mime}


EXPECTED: dict[str, dict[str, Any]] = {
    "veo": {
        "image": _b64("image/png", PNG),
        "lastFrame": _b64("image/jpeg", JPEG),
        "referenceImages": [{"image": _b64("image/png", PNG), "referenceType": "asset"}],
        "aspectRatio": "9:16",
        "resolution": "1080p",
        "negativePrompt": "no text",
        "seed": 7,
        "durationSeconds": 8,
        "generateAudio": False,
    },
    "replicate": {
        "image": _data_uri("image/png", PNG),
        "last_frame": _data_uri("image/jpeg", JPEG),
        "reference_images": [_data_uri("image/png", PNG)],
        "aspect_ratio": "9:16",
        "resolution": "1080p",
        "negative_prompt": "no text",
        "seed": 7,
        "duration": 8,
        "generate_audio": False,
    },
    "fal": {
        "first_frame_url": _data_uri("image/png", PNG),
        "last_frame_url": _data_uri("image/jpeg", JPEG),
        "image_urls": [_data_uri("image/png", PNG)],
        "aspect_ratio": "9:16",
        "resolution": "1080p",
        "negative_prompt": "no text",
        "seed": 7,
        "duration": "8s",
        "generate_audio": False,
    },
    # OpenAI's videos API takes a size, seconds as a string and one input_reference file.
    "openai": {"size": "720x1280", "seconds": "8", "input_reference": ("image/png", PNG)},
}


async def test_settings_and_images_reach_the_provider_in_its_own_terms(rig: ProviderRig) -> None:
    job = (
        _job(SORA, ResolvedImages(first_frame=InputImage(PNG, "image/png")), 8)
        if rig.name == "openai"
        else _job(FULL, IMAGES, 8)
    )

    await rig.adapter().generate(job)

    (submitted,) = rig.fake.jobs.values()
    assert submitted.prompt == "a lighthouse at dusk"
    assert submitted.inputs == EXPECTED[rig.name]


async def test_an_item_without_settings_sends_the_prompt_alone(rig: ProviderRig) -> None:
    await rig.adapter().generate(_job(GenerationSettings(), ResolvedImages(), 0))

    (submitted,) = rig.fake.jobs.values()
    assert submitted.inputs == {}


@pytest.mark.parametrize("resolution", ["4k"])
async def test_a_value_the_provider_does_not_take_is_refused_as_invalid_input(
    rig: ProviderRig, resolution: str
) -> None:
    # The fakes hold the providers' real value sets: an adapter passing a bad value fails the item
    # as invalid_input (refunded), never retried.
    settings = GenerationSettings(aspect_ratio="1:1", resolution=resolution)
    with pytest.raises(ProviderFailure) as refused:
        await rig.adapter().generate(_job(settings, ResolvedImages(), 0))
    assert refused.value.failure_type is FailureType.INVALID_INPUT
    assert not refused.value.transient
    assert not rig.fake.jobs
