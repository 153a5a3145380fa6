"""Generation settings end to end through REST (issue 25): the model catalogue, every broken
setting of a request answered at once with its item's index, an upload that is not an image. Items
with settings and input images run in the 10,000-line round trip (test_batch_io.py). I1-I6 are
checked after each test."""

from __future__ import annotations

from tests.e2e.input_images import PNG, upload_image
from tests.rest_api import Api, Customer


def _create(api: Api, customer: Customer, items: list[dict[str, object]]) -> object:
    return api.http.post("/api/enterprise/video-batch", json={"items": items}, headers=customer.headers)


def test_models_document_each_models_settings_limits_and_prices(api: Api) -> None:
    customer = api.new_customer(credits=0)

    models = api.http.get("/api/enterprise/models", headers=customer.headers)
    alias = api.http.get("/api/enterprise/pricing", headers=customer.headers)

    assert models.status_code == 200, models.text
    assert alias.json() == models.json()
    catalogue = {item["model"]: item for item in models.json()["items"]}
    fast = catalogue["veo-3-fast"]
    assert (fast["pricing_unit"], fast["credits_per_second"], fast["min_seconds"], fast["max_seconds"]) == (
        "second",
        2,
        4,
        8,
    )
    assert fast["settings"]["resolutions"] == [
        {"value": "720p", "extra_credits": 0},
        {"value": "1080p", "extra_credits": 1},
    ]
    assert (fast["settings"]["audio"], fast["settings"]["audio_extra_credits"]) == (True, 1)
    sora = catalogue["sora-2"]["settings"]
    assert (sora["seed"], sora["negative_prompt"], sora["first_frame"], sora["last_frame"]) == (
        False,
        False,
        True,
        False,
    )
    assert catalogue["veo-3"]["settings"]["max_reference_images"] == 3
    # The price list says which models are real and through which provider (ADR-146).
    assert (catalogue["sora-2"]["provider"], catalogue["sora-2"]["simulated"]) == ("simulated", True)
    veo = catalogue["veo-3.1"]
    assert (veo["provider"], veo["simulated"], veo["credits_per_second"], veo["max_seconds"]) == (
        "veo",
        False,
        60,
        8,
    )


def test_every_broken_setting_is_answered_at_once_with_its_item(api: Api) -> None:
    customer = api.new_customer(credits=1_000)
    other = api.new_customer(credits=0)
    foreign = upload_image(api, other, PNG)
    items: list[dict[str, object]] = [
        {"prompt": "ok", "model": "sora-2"},
        {"prompt": "a", "model": "sora-2", "settings": {"aspect_ratio": "4:3", "seed": 1}},
        {
            "prompt": "b",
            "model": "veo-3",
            "settings": {"last_frame": {"url": "https://images.example/x.png"}},
        },
        {"prompt": "c", "model": "veo-3", "settings": {"first_frame": {"file_id": foreign}}},
        {
            "prompt": "d",
            "model": "veo-3",
            "settings": {"first_frame": {"url": "http://169.254.169.254/x.png"}},
        },
        {"prompt": "e", "model": "veo-3", "settings": {"audio": False, "resolution": "8k"}},
    ]

    refused = _create(api, customer, items)

    assert refused.status_code == 422, refused.text  # type: ignore[attr-defined]
    errors = refused.json()["error"]["errors"]  # type: ignore[attr-defined]
    found = {(tuple(error["loc"]), error["code"]) for error in errors}
    assert {
        (("items", 1, "settings", "aspect_ratio"), "invalid_value"),
        (("items", 1, "settings", "seed"), "not_supported"),
        (("items", 2, "settings", "last_frame"), "invalid_value"),
        (("items", 3, "settings", "first_frame", "file_id"), "unknown_file"),
        (("items", 4, "settings", "first_frame", "url"), "invalid_url"),
        (("items", 5, "settings", "audio"), "not_supported"),
        (("items", 5, "settings", "resolution"), "invalid_value"),
    } <= found
    assert not [error for error in errors if error["loc"][:2] == ["items", 0]]
    assert api.credits(customer)["available_credits"] == 1_000


def test_an_upload_that_is_not_an_image_is_refused(api: Api) -> None:
    customer = api.new_customer(credits=0)

    refused = api.http.post(
        "/api/enterprise/files",
        headers=customer.headers,
        files={"file": ("notes.txt", b"hello", "image/png")},
    )

    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["errors"][0]["loc"] == ["file"]
