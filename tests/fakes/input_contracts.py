"""What each fake provider accepts beyond the prompt, after its public API: the field names,
value types and image encodings of Gemini's Veo, OpenAI's videos API, Replicate's Veo input and
fal's Veo queue input. A body that breaks them is refused as the provider refuses it (a 400/422),
so an adapter that speaks another dialect fails its tests."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

_ASPECT_RATIOS = {"16:9", "9:16"}
_RESOLUTIONS = {"720p", "1080p"}
_IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp"}


def _base64_image(value: Any, where: str) -> list[str]:
    if not isinstance(value, dict) or set(value) != {"bytesBase64Encoded", "mimeType"}:
        return [f"{where} must be {{bytesBase64Encoded, mimeType}}"]
    if value["mimeType"] not in ("image/png", "image/jpeg"):
        return [f"{where}.mimeType must be image/png or image/jpeg"]
    try:
        base64.b64decode(value["bytesBase64Encoded"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        return [f"{where}.bytesBase64Encoded is not base64"]
    return []


def veo_problems(body: Any) -> list[str]:
    """Gemini API `predictLongRunning` for Veo: instances[0] and parameters."""
    problems: list[str] = []
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        return ["instances must hold one instance"]
    instance = instances[0]
    extra = set(instance) - {"prompt", "image", "lastFrame", "referenceImages"}
    problems += [f"unknown instance field {name}" for name in sorted(extra)]
    if not isinstance(instance.get("prompt"), str):
        problems.append("instance.prompt must be a string")
    for name in ("image", "lastFrame"):
        if name in instance:
            problems += _base64_image(instance[name], f"instance.{name}")
    if "lastFrame" in instance and "image" not in instance:
        problems.append("lastFrame needs image")
    for index, reference in enumerate(instance.get("referenceImages", [])):
        if not isinstance(reference, dict) or reference.get("referenceType") not in ("asset", "style"):
            problems.append(f"referenceImages[{index}].referenceType must be asset or style")
        else:
            problems += _base64_image(reference.get("image"), f"referenceImages[{index}].image")
    parameters = body.get("parameters", {})
    known = {"aspectRatio", "resolution", "negativePrompt", "seed", "durationSeconds", "generateAudio"}
    problems += [f"unknown parameter {name}" for name in sorted(set(parameters) - known)]
    checks: dict[str, Check] = {
        "aspectRatio": lambda v: v in _ASPECT_RATIOS,
        "resolution": lambda v: v in _RESOLUTIONS,
        "negativePrompt": lambda v: isinstance(v, str),
        "seed": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "durationSeconds": lambda v: v in (4, 5, 6, 8),
        "generateAudio": lambda v: isinstance(v, bool),
    }
    problems += [
        f"parameters.{name} is invalid"
        for name, ok in checks.items()
        if name in parameters and not ok(parameters[name])
    ]
    return problems


def openai_problems(fields: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> list[str]:
    """OpenAI `POST /v1/videos`: model, prompt, seconds ("4", "8", "12"), size, input_reference file."""
    problems = [
        f"unknown field {name}" for name in sorted(set(fields) - {"model", "prompt", "seconds", "size"})
    ]
    if "seconds" in fields and fields["seconds"] not in ("4", "8", "12"):
        problems.append("seconds must be one of '4', '8', '12'")
    if "size" in fields and fields["size"] not in ("720x1280", "1280x720", "1024x1792", "1792x1024"):
        problems.append("size is not supported")
    problems += [f"unknown file {name}" for name in sorted(set(files) - {"input_reference"})]
    if "input_reference" in files and files["input_reference"][0] not in _IMAGE_TYPES:
        problems.append("input_reference must be an image")
    return problems


def _image_url(value: Any) -> bool:
    return isinstance(value, str) and (
        value.startswith(("https://", "http://"))
        or value.split(",", 1)[0] in {f"data:{t};base64" for t in _IMAGE_TYPES}
    )


_COMMON: dict[str, Check] = {
    "prompt": lambda v: isinstance(v, str),
    "aspect_ratio": lambda v: v in _ASPECT_RATIOS,
    "resolution": lambda v: v in _RESOLUTIONS,
    "negative_prompt": lambda v: isinstance(v, str),
    "seed": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "generate_audio": lambda v: isinstance(v, bool),
}


def replicate_problems(document: Any) -> list[str]:
    """Replicate's google/veo-3.1 input: image, last_frame, reference_images (URLs or data URIs)."""
    checks: dict[str, Check] = {
        **_COMMON,
        "duration": lambda v: v in (4, 6, 8),
        "image": _image_url,
        "last_frame": _image_url,
        "reference_images": lambda v: isinstance(v, list) and 1 <= len(v) <= 3 and all(map(_image_url, v)),
    }
    return _checked(document, checks)


def fal_problems(document: Any) -> list[str]:
    """fal's Veo input: duration "4s"/"6s"/"8s", image_url, first_frame_url/last_frame_url, image_urls."""
    checks: dict[str, Check] = {
        **_COMMON,
        "duration": lambda v: v in ("4s", "6s", "8s"),
        "image_url": _image_url,
        "first_frame_url": _image_url,
        "last_frame_url": _image_url,
        "image_urls": lambda v: isinstance(v, list) and all(map(_image_url, v)),
    }
    problems = _checked(document, checks)
    if isinstance(document, dict) and ("first_frame_url" in document) != ("last_frame_url" in document):
        problems.append("first_frame_url and last_frame_url go together")
    return problems


def _checked(document: Any, checks: dict[str, Check]) -> list[str]:
    if not isinstance(document, dict):
        return ["input must be an object"]
    problems = [f"unknown input {name}" for name in sorted(set(document) - set(checks))]
    problems += [
        f"input.{name} is invalid"
        for name, ok in checks.items()
        if name in document and not ok(document[name])
    ]
    return problems
