"""Generation settings as stored in `tasks.settings` (JSON; NULL for an item that sets nothing)."""

from __future__ import annotations

import json
from typing import Any

from services.batch.adapters.generation_fields import ImageNames, SettingNames, add_images, add_settings
from services.batch.domain.generation import NO_SETTINGS, GenerationSettings, ImageRef

# The column's names: the domain's own.
_STORED_SETTINGS = SettingNames("aspect_ratio", "resolution", "negative_prompt", "seed", "audio")
_STORED_IMAGES = ImageNames("first_frame", "last_frame", "reference_images")


def _image(image: ImageRef) -> dict[str, str]:
    return {"url": image.url} if image.url else {"file_id": image.file_id}


def settings_json(settings: GenerationSettings) -> str | None:
    """The column's value: only what the item set, None when it set nothing."""
    if settings is NO_SETTINGS or settings.is_empty:
        return None
    document: dict[str, Any] = {}
    add_settings(document, settings, _STORED_SETTINGS)
    add_images(document, settings, _STORED_IMAGES, _image)
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def _image_of(value: Any) -> ImageRef | None:
    if not isinstance(value, dict):
        return None
    return ImageRef(url=str(value.get("url", "")), file_id=str(value.get("file_id", "")))


def settings_of(value: Any) -> GenerationSettings:
    """The settings of a stored column value (a JSON text or psycopg's decoded object)."""
    if value is None:
        return NO_SETTINGS
    document = json.loads(value) if isinstance(value, str | bytes) else value
    return GenerationSettings(
        aspect_ratio=document.get("aspect_ratio", ""),
        resolution=document.get("resolution", ""),
        seed=document.get("seed"),
        negative_prompt=document.get("negative_prompt", ""),
        audio=document.get("audio"),
        first_frame=_image_of(document.get("first_frame")),
        last_frame=_image_of(document.get("last_frame")),
        reference_images=tuple(
            image for image in map(_image_of, document.get("reference_images", [])) if image is not None
        ),
    )
