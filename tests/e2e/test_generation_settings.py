"""Generation settings end to end through REST (issue 25): the model catalogue, an uploaded input
image, items with settings and images served by a local file server, priced from their settings;
an image that cannot be fetched fails its item as invalid_input, refunded; every broken setting of
a request is answered at once with its item's index. I1-I6 are checked after each test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.rest_api import Api, Customer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class _Images(BaseHTTPRequestHandler):
    """/frame.png is a PNG, /text.txt is not an image, anything else is a 404."""

    def do_GET(self) -> None:
        bodies = {"/frame.png": (PNG, "image/png"), "/text.txt": (b"not an image", "text/plain")}
        found = bodies.get(self.path)
        if found is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", found[1])
        self.send_header("Content-Length", str(len(found[0])))
        self.end_headers()
        self.wfile.write(found[0])

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def images() -> Iterator[str]:
    """A local file server of input images: its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _upload(api: Api, customer: Customer, content: bytes, name: str = "frame.png") -> str:
    uploaded = api.http.post(
        "/api/enterprise/files",
        headers=customer.headers,
        files={"file": (name, content, "application/octet-stream")},
        data={"purpose": "video_input"},
    )
    assert uploaded.status_code == 201, uploaded.text
    body = uploaded.json()
    assert body["content_type"] == "image/png" and body["bytes"] == len(content)
    file_id: str = body["file_id"]
    return file_id


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


def test_settings_and_input_images_are_priced_passed_on_and_a_failed_fetch_is_refunded(
    api: Api, images: str
) -> None:
    customer = api.new_customer(credits=1_000)
    file_id = _upload(api, customer, PNG)
    items: list[dict[str, object]] = [
        {
            "prompt": "a lighthouse, slow pan",
            "model": "veo-3-fast",
            "duration_seconds": 6,
            "settings": {
                "aspect_ratio": "9:16",
                "resolution": "1080p",
                "audio": True,
                "seed": 42,
                "negative_prompt": "no text",
                "first_frame": {"url": f"{images}/frame.png"},
            },
        },
        {
            "prompt": "the same lighthouse at night",
            "model": "veo-3",
            "settings": {
                "first_frame": {"file_id": file_id},
                "last_frame": {"url": f"{images}/frame.png"},
                "reference_images": [{"file_id": file_id}],
            },
        },
        {
            "prompt": "a missing frame",
            "model": "veo-3",
            "settings": {"first_frame": {"url": f"{images}/gone.png"}},
        },
        {
            "prompt": "not an image",
            "model": "veo-3",
            "settings": {"first_frame": {"url": f"{images}/text.txt"}},
        },
        {"prompt": "plain", "model": "sora-2"},
    ]

    accepted = _create(api, customer, items)

    assert accepted.status_code == 202, accepted.text  # type: ignore[attr-defined]
    body = accepted.json()  # type: ignore[attr-defined]
    # veo-3-fast: (2 + 1 for 1080p + 1 for audio) x 6 s = 24; veo-3 20 each; sora-2 10.
    assert body["required_credits"] == 24 + 20 + 20 + 20 + 10
    assert body["cost_per_video"] is None
    batch = api.wait_until_settled(customer, body["batch_id"])
    assert (batch["success_count"], batch["failed_count"]) == (3, 2)
    assert batch["refunded_credits"] == 40
    tasks = api.tasks(customer, body["batch_id"])
    first, second, missing, not_image, plain = tasks
    assert first["status"] == "succeeded" and first["credits_charged"] == 24
    assert first["settings"] == items[0]["settings"]
    assert first["duration_seconds"] == 6
    assert second["settings"]["first_frame"]["file_id"] == file_id
    for failed in (missing, not_image):
        assert (failed["status"], failed["failure_type"]) == ("failed", "invalid_input")
        assert failed["attempts"] == 0
        assert (failed["credits_charged"], failed["credits_refunded"]) == (0, 20)
    assert "404" in missing["error_message"]
    assert "not a PNG, JPEG or WebP" in not_image["error_message"]
    assert plain["settings"] is None and plain["credits_charged"] == 10
    refunds = [
        entry for entry in api.ledger(customer, body["batch_id"]) if entry["ref_type"] == "batch_refund"
    ]
    assert sorted(entry["credits_delta"] for entry in refunds) == [20, 20]


def test_every_broken_setting_is_answered_at_once_with_its_item(api: Api) -> None:
    customer = api.new_customer(credits=1_000)
    other = api.new_customer(credits=0)
    foreign = _upload(api, other, PNG)
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
