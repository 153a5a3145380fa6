"""Input images in the forms provider APIs take them: base64 (Gemini), a data URI (Replicate,
fal), a multipart file (OpenAI)."""

from __future__ import annotations

import base64

from services.batch.domain.generation import InputImage

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
