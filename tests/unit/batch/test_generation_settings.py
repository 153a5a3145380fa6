"""Generation settings against a model's capabilities: every violation with its item's path,
the priced options of an item, and input images recognised by their bytes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from libs.price_list import DEFAULT_PRICING, ModelSettings
from services.batch.domain.generation import (
    NO_SETTINGS,
    GenerationSettings,
    ImageRef,
    ModelCapabilities,
    UrlPolicy,
    image_problem,
    image_type,
    options_key,
    options_of_key,
    price_options,
    settings_violations,
)

VEO = ModelCapabilities(
    aspect_ratios=("16:9", "9:16"),
    resolutions={"720p": 0, "1080p": 5},
    seed=True,
    negative_prompt=True,
    first_frame=True,
    last_frame=True,
    max_reference_images=2,
)
SORA = ModelCapabilities(aspect_ratios=("16:9", "9:16"), resolutions={"720p": 0}, first_frame=True)
AUDIO = ModelCapabilities(audio_credits=1, resolutions={"720p": 0, "1080p": 1})
FILE = "file-" + "a" * 32
HTTPS = UrlPolicy()


def _codes(model: str, settings: GenerationSettings, capabilities: ModelCapabilities) -> set[tuple[str, str]]:
    found = settings_violations(7, model, settings, capabilities, HTTPS, frozenset({FILE}))
    return {(violation.field, violation.code) for violation in found}


def test_settings_a_model_takes_pass() -> None:
    settings = GenerationSettings(
        aspect_ratio="9:16",
        resolution="1080p",
        seed=3,
        negative_prompt="no text",
        first_frame=ImageRef(url="https://images.example/a.png"),
        last_frame=ImageRef(file_id=FILE),
        reference_images=(ImageRef(file_id=FILE),),
    )
    assert _codes("veo-3", settings, VEO) == set()


def test_every_setting_a_model_does_not_take_is_named_with_the_items_path() -> None:
    settings = GenerationSettings(
        aspect_ratio="1:1",
        resolution="1080p",
        seed=3,
        negative_prompt="x",
        audio=True,
        last_frame=ImageRef(url="https://images.example/b.png"),
        reference_images=(ImageRef(url="https://images.example/c.png"),),
    )
    assert _codes("sora-2", settings, SORA) == {
        ("items[7].settings.aspect_ratio", "invalid_value"),
        ("items[7].settings.resolution", "invalid_value"),
        ("items[7].settings.seed", "not_supported"),
        ("items[7].settings.negative_prompt", "not_supported"),
        ("items[7].settings.audio", "not_supported"),
        ("items[7].settings.last_frame", "not_supported"),
        ("items[7].settings.reference_images", "not_supported"),
    }


def test_images_need_one_source_a_known_file_and_an_https_url() -> None:
    settings = GenerationSettings(
        first_frame=ImageRef(url="ftp://images.example/a.png"),
        last_frame=ImageRef(file_id="file-" + "b" * 32),
        reference_images=(
            ImageRef(),
            ImageRef(url="https://images.example/a.png", file_id=FILE),
            ImageRef(FILE),
        ),
    )
    assert _codes("veo-3", settings, VEO) == {
        ("items[7].settings.first_frame.url", "invalid_url"),
        ("items[7].settings.last_frame.file_id", "unknown_file"),
        ("items[7].settings.reference_images", "too_many"),
        ("items[7].settings.reference_images[0]", "invalid_value"),
        ("items[7].settings.reference_images[1]", "invalid_value"),
        ("items[7].settings.reference_images[2].url", "invalid_url"),
    }


def test_a_last_frame_needs_a_first_frame_and_a_seed_fits_32_bits() -> None:
    settings = GenerationSettings(seed=2**32, last_frame=ImageRef(file_id=FILE))
    assert _codes("veo-3", settings, VEO) == {
        ("items[7].settings.seed", "invalid_value"),
        ("items[7].settings.last_frame", "invalid_value"),
    }


def test_priced_options_are_the_effective_resolution_and_audio() -> None:
    # An item that sets nothing gets the free defaults (audio off, the first resolution).
    assert price_options(NO_SETTINGS, AUDIO) == (("audio", "off"), ("resolution", "720p"))
    assert price_options(GenerationSettings(audio=False, resolution="1080p"), AUDIO) == (
        ("audio", "off"),
        ("resolution", "1080p"),
    )
    # Settings billing does not price never split a quote line.
    assert price_options(GenerationSettings(aspect_ratio="9:16", seed=1), SORA) == (("resolution", "720p"),)
    key = options_key(price_options(GenerationSettings(audio=True), AUDIO))
    assert key == "audio=on;resolution=720p"
    assert options_of_key(key) == (("audio", "on"), ("resolution", "720p"))
    assert options_of_key("") == ()


def test_images_are_recognised_by_their_bytes_not_their_name() -> None:
    assert image_type(b"\x89PNG\r\n\x1a\n...") == "image/png"
    assert image_type(b"\xff\xd8\xff\xe0...") == "image/jpeg"
    assert image_type(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert image_type(b"RIFF\x10\x00\x00\x00WAVEfmt ") is None
    assert image_type(b"GIF89a") is None
    assert image_problem(b"", 100) == "the image is empty"
    assert image_problem(b"\x89PNG\r\n\x1a\n" + b"0" * 100, 100) == "the image is larger than 100 bytes"
    assert image_problem(b"<svg/>", 100) == "the image is not a PNG, JPEG or WebP file"


def test_the_price_list_refuses_settings_whose_defaults_would_cost_extra() -> None:
    # An item that sets nothing must keep the model's base price (clients written before settings
    # existed pay what they paid).
    with pytest.raises(ValidationError):
        ModelSettings(resolutions={"1080p": 5, "720p": 0})
    with pytest.raises(ValidationError):
        ModelSettings(audio_credits=1, audio_default=True)
    with pytest.raises(ValidationError):
        ModelSettings(last_frame=True)
    assert ModelSettings(audio_credits=1, resolutions={"720p": 0, "1080p": 1}).audio_default is False
    for model, price in DEFAULT_PRICING.items():
        capabilities = ModelCapabilities(**price.settings.as_fields())
        defaults = dict(price_options(NO_SETTINGS, capabilities))
        assert defaults.get("audio", "off") == "off", model
        assert price.settings.resolutions.get(defaults.get("resolution", ""), 0) == 0, model
