"""The SDK against the real system: a client that crashes in the middle of a download resumes
without fetching again what it has (counted on the wire: requests and bytes), the async client
runs a batch end to end, and webhooks received by a local receiver verify through the SDK (and
through `reelbatch-client webhooks test`)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from reelbatch_client import AsyncClient, Client
from reelbatch_client.webhooks import InvalidSignature, verify_event

from tests.embedded_stack import EmbeddedStack
from tests.rest_api import Customer
from tests.sdk.conftest import CLI

CRASH_AFTER_BYTES = 100


class Crash(BaseException):
    """The client process dying mid-transfer (not an error any retry would catch)."""


@dataclass
class Wire(httpx.HTTPTransport):
    """A real transport that counts what crosses it, and can crash during one video's body."""

    crash_on_video: int | None = None
    requests: list[httpx.Request] = field(default_factory=list)
    video_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)  # the client downloads on threads

    def __post_init__(self) -> None:
        super().__init__()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = super().handle_request(request)
        if not request.url.path.startswith("/videos/"):
            return response
        body = response.read()
        videos = sum(1 for r in self.requests if r.url.path.startswith("/videos/"))
        if videos == self.crash_on_video:
            return httpx.Response(response.status_code, headers=response.headers, stream=_Dying(body))
        with self.lock:
            self.video_bytes += len(body)
        return httpx.Response(response.status_code, headers=response.headers, content=body)

    def paths(self, prefix: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.startswith(prefix)]


class _Dying(httpx.SyncByteStream):
    def __init__(self, body: bytes) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self._body[:CRASH_AFTER_BYTES]
        raise Crash


def test_a_download_killed_mid_video_resumes_without_fetching_anything_twice(
    stack: EmbeddedStack, customer: Customer, tmp_path: Path
) -> None:
    with Client(customer.api_key, stack.base_url) as client:
        items = [
            {"prompt": f"a kite {i}" + (" #fail" if i == 3 else ""), "model": "sora-2"} for i in range(30)
        ]
        batch_id = client.create_batch(items).batch_id
        client.wait(batch_id, poll_interval=0.2, timeout=60)
    out = tmp_path / "out"

    first = Wire(crash_on_video=13)
    with Client(customer.api_key, stack.base_url, transport=first) as client, pytest.raises(Crash):
        client.download_results(batch_id, out, fmt="jsonl", concurrency=1)
    done = sorted((out / "videos").glob("*.mp4"))
    partial = list((out / "videos").glob("*.part"))
    assert len(done) == 12 and len(partial) == 1 and partial[0].stat().st_size == CRASH_AFTER_BYTES

    second = Wire()
    with Client(customer.api_key, stack.base_url, transport=second) as client:
        summary = client.download_results(batch_id, out, fmt="jsonl", concurrency=4)
    progress = summary.progress
    assert (progress.videos_total, progress.videos_skipped, progress.videos_resumed) == (29, 12, 1)
    assert progress.videos_downloaded == 29 - 12 - 1
    # On the wire: no results or errors file again, one link and one file per missing video, the
    # partial one asked from where it stopped, and only the missing bytes.
    assert not second.paths(f"/api/enterprise/video-batch/{batch_id}/results")
    assert not second.paths(f"/api/enterprise/video-batch/{batch_id}/errors")
    files = second.paths("/videos/")
    assert len(files) == len(second.paths(f"/api/enterprise/video-batch/{batch_id}/tasks/")) == 17
    assert [r.headers.get("Range") for r in files if "Range" in r.headers] == [f"bytes={CRASH_AFTER_BYTES}-"]
    assert not any("X-API-Key" in r.headers for r in files)
    sizes = {path.stat().st_size for path in summary.videos}
    assert len(sizes) == 1, "every video whole, the resumed one included"
    assert second.video_bytes == progress.bytes_downloaded == sizes.pop() * 17 - CRASH_AFTER_BYTES
    assert not list((out / "videos").glob("*.part"))

    third = Wire()
    with Client(customer.api_key, stack.base_url, transport=third) as client:
        again = client.download_results(batch_id, out, fmt="jsonl")
    assert again.progress.videos_skipped == 29 and not third.paths("/videos/")


def test_the_async_client_submits_waits_pages_and_downloads(
    stack: EmbeddedStack, customer: Customer, tmp_path: Path
) -> None:
    async def scenario() -> tuple[Any, list[Any], Any]:
        async with AsyncClient(customer.api_key, stack.base_url) as client:
            items = [{"prompt": f"a lantern {i}", "model": "sora-2", "custom_id": f"l{i}"} for i in range(12)]
            accepted = await client.create_batch(items, name="lanterns")
            batch = await client.wait(accepted.batch_id, poll_interval=0.2, timeout=60)
            tasks = [task async for task in client.iter_tasks(batch.batch_id)]
            summary = await client.download_results(batch.batch_id, tmp_path, concurrency=3)
            return batch, tasks, summary

    batch, tasks, summary = asyncio.run(scenario())
    assert (batch.status, batch.name) == ("completed", "lanterns")
    assert [task.custom_id for task in tasks] == [f"l{i}" for i in range(12)]
    assert sorted(p.name for p in summary.videos) == sorted(f"l{i}.mp4" for i in range(12))
    assert summary.progress.videos_downloaded == 12


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append((dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_webhooks_received_locally_verify_through_the_sdk_as_typed_events(
    stack: EmbeddedStack, customer: Customer
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Recorder", (_Recorder,), {"received": received}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Client(customer.api_key, stack.base_url) as client:
            url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
            items = [{"prompt": "a heron", "model": "sora-2"}, {"prompt": "a heron #fail", "model": "sora-2"}]
            batch_id = client.create_batch(items, webhook_url=url).batch_id
            batch = client.wait(batch_id, poll_interval=0.2, timeout=60)
            secret = client.signing_secret().secret
            _wait_for(lambda: len(received) >= 2)
    finally:
        server.shutdown()
        server.server_close()
    events = [verify_event(body, headers, secret) for headers, body in received]
    assert sorted(event.type for event in events) == ["batch.completed", "batch.queued"]
    completed = next(event for event in events if event.type == "batch.completed")
    assert completed.data.batch_id == batch_id
    assert (completed.data.credits_spent, completed.data.refunded_credits) == (
        batch.credits_spent,
        batch.refunded_credits,
    )
    headers, body = received[0]
    with pytest.raises(InvalidSignature):
        verify_event(body.replace(b"batch", b"batcH", 1), headers, secret)
    with pytest.raises(InvalidSignature):
        verify_event(body, headers, "whsec_" + "A" * 32)


def test_the_cli_webhook_receiver_verifies_a_batchs_events(
    stack: EmbeddedStack, customer: Customer, cli_env: dict[str, str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    receiver = subprocess.Popen(
        [
            CLI,
            "webhooks",
            "test",
            "--listen",
            f"127.0.0.1:{port}",
            "--count",
            "2",
            "--timeout",
            "60",
            "--json",
        ],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: _listening(port) or receiver.poll() is not None)
        with Client(customer.api_key, stack.base_url) as client:
            client.create_batch(
                [{"prompt": "an otter", "model": "sora-2"}], webhook_url=f"http://127.0.0.1:{port}/h"
            )
        out, err = receiver.communicate(timeout=90)
    finally:
        receiver.kill()
    assert receiver.returncode == 0, out + err
    verified = json.loads(out)["verified"]
    assert sorted(event["type"] for event in verified) == ["batch.completed", "batch.queued"]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(condition: Any, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
