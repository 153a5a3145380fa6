"""Provider adapters without a network: error classification, 429 handling, downloads, storage."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from libs.config import Settings
from services.batch.adapters.providers import fal, openai_videos, replicate, veo
from services.batch.adapters.providers._lifecycle import RemoteJobProvider
from services.batch.adapters.providers._remote import (
    ProviderHttp,
    ProviderUnavailable,
    RemoteJobSettings,
    mentions_content_policy,
    retry_after_seconds,
)
from services.batch.adapters.providers.simulated import placeholder_mp4
from services.batch.adapters.storage import InvalidVideo, LocalDirectoryStorage, require_mp4
from services.batch.bootstrap import build_providers
from services.batch.domain.batch import BatchId, TaskId
from services.batch.domain.provider import FailureType, ProviderFailure, ProviderJob, VideoAsset

MP4 = placeholder_mp4("unit")
SETTINGS = RemoteJobSettings(poll_seconds=0.5, max_poll_seconds=1.0, max_retry_after_seconds=10.0)
Handler = Callable[[httpx.Request], httpx.Response]


def _http(handler: Handler, sleeps: list[float], settings: RemoteJobSettings = SETTINGS) -> ProviderHttp:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return ProviderHttp(
        provider="test",
        base_url="https://api.example",
        credentials={"Authorization": "Bearer secret"},
        refusal=lambda response: ProviderFailure(
            FailureType.INVALID_INPUT, f"refused {response.status_code}"
        ),
        settings=settings,
        transport=httpx.MockTransport(handler),
        sleep=sleep,
    )


def _answers(*responses: httpx.Response) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    return handler, seen


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "3"})) == 3.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": later}), now) == 7.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "-5"})) == 0.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Response(429)) is None


async def test_a_429_is_waited_out_for_its_retry_after_then_the_request_is_sent_again() -> None:
    handler, seen = _answers(
        httpx.Response(429, headers={"Retry-After": "2"}),
        httpx.Response(429),
        httpx.Response(200, json={"id": "job-1"}),
    )
    sleeps: list[float] = []
    answer = await _http(handler, sleeps).send_json("POST", "/jobs", json={"prompt": "x"})
    assert answer == {"id": "job-1"}
    # The second 429 has no Retry-After: the poll interval stands in for it.
    assert sleeps == [2.0, 0.5]
    assert len(seen) == 3


async def test_a_retry_after_beyond_the_bound_is_a_transient_rate_limited_failure() -> None:
    handler, _ = _answers(
        httpx.Response(429, headers={"Retry-After": "6"}), httpx.Response(429, headers={"Retry-After": "6"})
    )
    sleeps: list[float] = []
    with pytest.raises(ProviderUnavailable) as limited:
        await _http(handler, sleeps).send("POST", "/jobs")
    assert (limited.value.failure_type, limited.value.transient) == (FailureType.RATE_LIMITED, True)
    assert sleeps == [6.0]


@pytest.mark.parametrize(
    ("error", "failure_type"),
    [
        (httpx.ConnectError("refused"), FailureType.PROVIDER_ERROR),
        (httpx.ReadTimeout("slow"), FailureType.TIMEOUT),
    ],
)
async def test_network_trouble_is_a_transient_failure(error: Exception, failure_type: FailureType) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(ProviderUnavailable) as failed:
        await _http(handler, []).send("GET", "/jobs/1")
    assert (failed.value.failure_type, failed.value.transient) == (failure_type, True)


async def test_a_5xx_is_transient_and_a_4xx_goes_to_the_providers_classifier() -> None:
    handler, _ = _answers(httpx.Response(503, text="overloaded"), httpx.Response(400))
    http = _http(handler, [])
    with pytest.raises(ProviderUnavailable) as unavailable:
        await http.send("GET", "/jobs/1")
    assert unavailable.value.transient and "503" in unavailable.value.message
    with pytest.raises(ProviderFailure) as refused:
        await http.send("GET", "/jobs/1")
    assert (refused.value.failure_type, refused.value.message) == (FailureType.INVALID_INPUT, "refused 400")


async def test_a_download_redirected_to_another_host_does_not_carry_the_credentials() -> None:
    handler, seen = _answers(
        httpx.Response(302, headers={"Location": "https://cdn.example/v.mp4"}),
        httpx.Response(200, content=MP4),
    )
    content = await _http(handler, []).download("/files/v:download")
    assert content == MP4
    assert seen[0].headers["authorization"] == "Bearer secret"
    assert seen[1].url.host == "cdn.example"
    assert "authorization" not in seen[1].headers


async def test_a_download_over_the_size_limit_or_not_found_fails_as_a_provider_error() -> None:
    small = RemoteJobSettings(max_asset_bytes=100)
    handler, _ = _answers(httpx.Response(200, content=b"x" * 101), httpx.Response(404))
    http = _http(handler, [], small)
    for expected in ("larger than 100 bytes", "HTTP 404"):
        with pytest.raises(ProviderFailure) as failed:
            await http.download("https://cdn.example/v.mp4")
        assert failed.value.failure_type is FailureType.PROVIDER_ERROR
        assert failed.value.transient and expected in failed.value.message


def test_content_policy_wording_is_recognised_across_providers() -> None:
    assert mentions_content_policy("The input or output was flagged as sensitive (E005)")
    assert mentions_content_policy("moderation_blocked")
    assert mentions_content_policy("content_policy_violation")
    assert not mentions_content_policy("CUDA error: out of memory")


@pytest.mark.parametrize(
    ("code", "failure_type", "transient"),
    [
        (1, FailureType.CANCELLED, False),
        (3, FailureType.INVALID_INPUT, False),
        (4, FailureType.TIMEOUT, True),
        (8, FailureType.RATE_LIMITED, True),
        (7, FailureType.PROVIDER_ERROR, False),
        (13, FailureType.PROVIDER_ERROR, True),
    ],
)
def test_veo_operation_errors_map_to_failure_types(
    code: int, failure_type: FailureType, transient: bool
) -> None:
    failure = veo.classify_operation_error({"code": code, "message": "m"})
    assert (failure.failure_type, failure.transient) == (failure_type, transient)


def test_veo_reads_the_video_uri_and_treats_filtered_media_as_content_policy() -> None:
    done = {
        "done": True,
        "response": {"generateVideoResponse": {"generatedSamples": [{"video": {"uri": "u"}}]}},
    }
    assert veo.video_uri(done) == "u"
    filtered = {
        "response": {"generateVideoResponse": {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": ["r"]}}
    }
    with pytest.raises(ProviderFailure) as refused:
        veo.video_uri(filtered)
    assert (refused.value.failure_type, refused.value.transient) == (FailureType.CONTENT_POLICY, False)


def test_replicate_output_may_be_a_url_a_list_or_an_object() -> None:
    assert replicate.output_url("https://d/v.mp4") == "https://d/v.mp4"
    assert replicate.output_url(["https://d/1.mp4", "https://d/2.mp4"]) == "https://d/1.mp4"
    assert replicate.output_url({"video": "https://d/v.mp4"}) == "https://d/v.mp4"
    with pytest.raises(ProviderFailure):
        replicate.output_url(None)
    assert (
        replicate.classify_prediction_error("flagged as sensitive (E005)").failure_type
        is FailureType.CONTENT_POLICY
    )
    assert replicate.classify_prediction_error("CUDA OOM").transient


def test_fal_and_openai_refusals_are_classified_from_their_error_bodies() -> None:
    policy = httpx.Response(422, json={"detail": [{"msg": "flagged", "type": "content_policy_violation"}]})
    missing = httpx.Response(422, json={"detail": [{"msg": "field required", "type": "value_error.missing"}]})
    assert fal.classify_refusal(policy).failure_type is FailureType.CONTENT_POLICY
    assert fal.classify_refusal(missing).failure_type is FailureType.INVALID_INPUT
    moderated = httpx.Response(400, json={"error": {"message": "blocked", "code": "moderation_blocked"}})
    invalid = httpx.Response(400, json={"error": {"message": "bad seconds", "code": "invalid_value"}})
    unauthorized = httpx.Response(
        401, json={"error": {"message": "sk-xxx is wrong", "code": "invalid_api_key"}}
    )
    assert openai_videos.classify_refusal(moderated).failure_type is FailureType.CONTENT_POLICY
    assert openai_videos.classify_refusal(invalid).failure_type is FailureType.INVALID_INPUT
    rejected = openai_videos.classify_refusal(unauthorized)
    assert (rejected.failure_type, rejected.transient) == (FailureType.PROVIDER_ERROR, False)
    assert "sk-xxx" not in rejected.message


class MemoryStorage:
    """Keeps videos in a dict."""

    def __init__(self) -> None:
        self.videos: dict[str, bytes] = {}

    async def store(self, batch_id: BatchId, task_id: TaskId, content: bytes) -> VideoAsset:
        require_mp4(content)
        self.videos[f"{batch_id}/{task_id}"] = content
        return VideoAsset(path="", url=f"memory://{batch_id}/{task_id}", size_bytes=len(content))


async def test_a_replicate_model_pinned_to_a_version_is_created_through_the_version_endpoint() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(201, json={"id": "p1", "status": "starting"})
        if request.url.path == "/v1/predictions/p1":
            return httpx.Response(
                200, json={"id": "p1", "status": "succeeded", "output": "https://cdn.example/p1.mp4"}
            )
        return httpx.Response(200, content=MP4)

    storage = MemoryStorage()
    adapter = replicate.ReplicateProvider.connect(
        api_token="r8_secret",
        storage=storage,
        model_ids={"veo-3": "google/veo-3:abc123"},
        settings=RemoteJobSettings(poll_seconds=0.001, max_poll_seconds=0.001),
        transport=httpx.MockTransport(handler),
    )
    job = ProviderJob(TaskId(uuid.uuid4()), BatchId(uuid.uuid4()), "a lake", "veo-3", 1)
    asset = await adapter.generate(job)
    await adapter.close()
    assert asset.url == f"memory://{job.batch_id}/{job.task_id}"
    create = seen[0]
    assert (create.url.path, create.read()) == (
        "/v1/predictions",
        b'{"input":{"prompt":"a lake"},"version":"abc123"}',
    )
    assert "authorization" not in seen[-1].headers
    assert "r8_secret" not in repr(adapter._http)


@pytest.mark.parametrize("content", [b"", b"<html>gone</html>", b"\x00" * 64])
def test_only_mp4_files_are_accepted_as_videos(content: bytes) -> None:
    with pytest.raises(InvalidVideo) as refused:
        require_mp4(content)
    assert (refused.value.failure_type, refused.value.transient) == (FailureType.PROVIDER_ERROR, True)


async def test_local_storage_writes_the_video_in_place_without_leftovers(tmp_path: Path) -> None:
    storage = LocalDirectoryStorage(tmp_path, "http://videos.test/")
    batch_id, task_id = BatchId(uuid.uuid4()), TaskId(uuid.uuid4())
    await storage.store(batch_id, task_id, placeholder_mp4("old"))
    asset = await storage.store(batch_id, task_id, MP4)
    assert asset.url == f"http://videos.test/videos/{batch_id}/{task_id}.mp4"
    assert [path.name for path in (tmp_path / str(batch_id)).iterdir()] == [f"{task_id}.mp4"]
    assert Path(asset.path).read_bytes() == MP4  # noqa: ASYNC240 (a tiny file in a test)
    with pytest.raises(InvalidVideo):
        await storage.store(batch_id, TaskId(uuid.uuid4()), b"")
    assert len(list((tmp_path / str(batch_id)).iterdir())) == 1


async def test_real_adapters_are_registered_only_for_configured_credentials() -> None:
    settings = Settings(
        gemini_api_key="g-key",
        fal_key="f-key",
        pricing={
            "veo-3": {"provider": "veo", "credits_per_video": 20, "provider_model": "veo-3.0-generate-001"},
            "kling": {"provider": "fal", "credits_per_video": 15},
            "sora-2": {"credits_per_video": 10},
        },
    )
    providers = build_providers(settings)
    assert sorted(providers) == ["fal", "simulated", "veo"]
    veo_adapter, fal_adapter = providers["veo"], providers["fal"]
    assert isinstance(veo_adapter, RemoteJobProvider) and isinstance(fal_adapter, RemoteJobProvider)
    assert veo_adapter.model_id("veo-3") == "veo-3.0-generate-001"
    assert fal_adapter.model_id("kling") == "kling"
    assert "g-key" not in repr(settings)
    await veo_adapter.close()
    await fal_adapter.close()


async def test_no_more_requests_reach_httpx_at_once_than_the_provider_has_pooled_connections() -> None:
    # httpcore scans every waiting request and every connection each time one frees: thousands
    # queued inside it held the worker's event loop for minutes (ADR-161). They wait before it.
    running, most = 0, 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001)
        running -= 1
        return httpx.Response(200, json={"status": "processing"})

    http = ProviderHttp(
        provider="test",
        base_url="https://api.example",
        credentials={},
        refusal=lambda response: ProviderFailure(FailureType.INVALID_INPUT, "refused"),
        settings=RemoteJobSettings(connections=3),
        transport=httpx.MockTransport(handler),
    )
    try:
        answers = await asyncio.gather(*(http.send_json("GET", f"/v1/predictions/{n}") for n in range(50)))
    finally:
        await http.close()
    assert len(answers) == 50
    assert most == 3
