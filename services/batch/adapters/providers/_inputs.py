"""Input images in the forms provider APIs take them: base64 (Gemini), a data URI (Replicate,
fal), a multipart file (OpenAI)."""

from __future__ import annotations

import base64
from typing import Any

from services.batch.adapters.generation_fields import SettingNames, add_settings
from services.batch.domain.generation import GenerationSettings, InputImage

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_SNAKE_CASE = SettingNames("aspect_ratio", "resolution", "negative_prompt", "seed", "generate_audio")


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
    add_settings(fields, settings, _SNAKE_CASE)
    return fields
