"""Input images in the forms provider APIs take them: base64 (Gemini), a data URI (Replicate,
fal), a multipart file (OpenAI)."""

from __future__ import annotations

import base64
from typing import Any

from services.batch.domain.generation import GenerationSettings, InputImage

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def base64_text(image: InputImage) -> str:
    """The image's bytes in base64."""
    return base64.b64encode(image.content).decode("ascii")


def data_uri(image: InputImage) -> str:
    """`data:<type>;base64,<bytes>`: what Replicate and fal accept wherever they take an image URL."""
    return f"data:{image.mime_type};base64,{base64_text(image)}"


def file_name(stem: str, image: InputImage) -> str:
    """A file name with the extension of the image's type (multipart uploads)."""
    return f"{stem}.{_EXTENSIONS.get(image.mime_type, 'bin')}"


def snake_case_settings(settings: GenerationSettings) -> dict[str, Any]:
    """The settings Replicate's and fal's Veo inputs name alike (aspect_ratio, resolution,
    negative_prompt, seed, generate_audio), only those the item set."""
    fields: dict[str, Any] = {}
    if settings.aspect_ratio:
        fields["aspect_ratio"] = settings.aspect_ratio
    if settings.resolution:
        fields["resolution"] = settings.resolution
    if settings.negative_prompt:
        fields["negative_prompt"] = settings.negative_prompt
    if settings.seed is not None:
        fields["seed"] = settings.seed
    if settings.audio is not None:
        fields["generate_audio"] = settings.audio
    return fields
