"""Shared video storage across processes (issue 27 item 5, ADR-140): a system that declares two
replicas stores videos in S3 by default. A worker process uploads to a real S3-compatible server
(moto's server mode, its own OS process on 127.0.0.1; never a mock of the client); a second
gateway process, which never saw the worker's disk, redirects a video link to the object, builds
the batch's zip from the bucket and answers 410 once the retention period is over. Nothing is
written to the local asset directory.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from libs.config import Settings
from libs.s3 import S3Bucket, S3Client, S3Credentials
from services.launcher.migrate import ensure_video_bucket
from tests.e2e.jsonl_bodies import CAT_DOG_FOX, CREATE, json_lines
from tests.invariants import wait_for_all_settled
from tests.rest_api import Api
from tests.stack import free_port, fresh_stack, start_second_gateway

REGION = "us-east-1"
# moto's server accepts any key pair while its IAM authentication is off (its default).
ACCESS_KEY, SECRET_KEY = "reelbatch-test-key", "reelbatch-test-secret"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3-compatible server in a process of its own, on a free loopback port."""
    port = free_port()
    log = (Path(tmp_path_factory.mktemp("moto")) / "moto.log").open("ab")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the S3 server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)


def _s3_settings(endpoint: str, bucket: str) -> dict[str, str]:
    # No REELBATCH_STORAGE: two replicas make S3 the default (auto).
    return {
        "REELBATCH_REPLICAS": "2",
        "REELBATCH_S3_ENDPOINT_URL": endpoint,
        "REELBATCH_S3_BUCKET": bucket,
        "REELBATCH_S3_REGION": REGION,
        "REELBATCH_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "REELBATCH_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "REELBATCH_METRICS_PORT": "0",
    }


async def _object(endpoint: str, bucket: str, key: str) -> bytes:
    client = S3Client(
        S3Bucket(endpoint, bucket, REGION), S3Credentials(ACCESS_KEY, SECRET_KEY), timeout_seconds=10
    )
    try:
        return await client.get_object(key)
    finally:
        await client.close()


def test_two_replicas_store_videos_in_s3_by_default_and_any_gateway_serves_them(
    s3_endpoint: str, tmp_path: Path
) -> None:
    bucket = f"videos-{uuid.uuid4().hex[:12]}"
    overrides = _s3_settings(s3_endpoint, bucket)
    # What `reelbatch migrate` does first: the bucket does not exist yet, so it is created.
    settings = Settings(
        s3_endpoint_url=s3_endpoint,
        s3_bucket=bucket,
        s3_region=REGION,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SecretStr(SECRET_KEY),
        replicas=2,
    )
    assert settings.video_storage == "s3"
    asyncio.run(ensure_video_bucket(settings))
    asyncio.run(ensure_video_bucket(settings))  # an existing bucket is left as it is

    with fresh_stack(tmp_path, overrides, workers=1) as stack:
        other = Api(start_second_gateway(stack))
        api = Api(stack.base_url)
        customer = api.new_customer(credits=1_000)
        batch_id = api.create_settled_batch(customer, CAT_DOG_FOX)

        # The second gateway serves what the worker process uploaded.
        results = json_lines(other.http.get(f"{CREATE}/{batch_id}/results", headers=customer.headers))
        assert [line["custom_id"] for line in results] == ["cat", "fox"]
        task_ids = [line["task_id"] for line in results]
        stored = [asyncio.run(_object(s3_endpoint, bucket, f"{batch_id}/{task}.mp4")) for task in task_ids]
        assert all(video[4:8] == b"ftyp" for video in stored), "the worker uploaded each video"

        link = other.http.get(results[0]["video_url"], headers=customer.headers)
        assert link.status_code == 307, link.text
        redirect = other.http.get(link.headers["Location"])
        assert redirect.status_code == 307, redirect.text
        assert redirect.headers["Location"].startswith(f"{s3_endpoint}/{bucket}/{batch_id}/")
        assert "X-Amz-Signature=" in redirect.headers["Location"]
        # The presigned URL needs no credentials: a browser follows it.
        video = httpx.get(redirect.headers["Location"], timeout=10)
        assert video.status_code == 200 and video.content == stored[0]

        archive = other.http.get(f"{CREATE}/{batch_id}/videos.zip", headers=customer.headers)
        assert archive.status_code == 200, archive.text
        with zipfile.ZipFile(io.BytesIO(archive.content)) as opened:
            assert opened.namelist() == ["videos/00000-cat.mp4", "videos/00002-fox.mp4", "manifest.jsonl"]
            assert [opened.read("videos/00000-cat.mp4"), opened.read("videos/00002-fox.mp4")] == stored

        # Nothing went to the local asset directory the processes share here.
        assert not list((tmp_path / "assets").rglob("*.mp4"))

        # Past the retention period (30 days by default), either gateway answers 410.
        with psycopg.connect(stack.database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            conn.execute(
                "UPDATE batch.batches SET finished_at = finished_at - interval '31 days' WHERE id = %s",
                (batch_id,),
            )
        for gateway in (api, other):
            gone = gateway.http.get(link.headers["Location"])
            assert gone.status_code == 410, gone.text
            assert gone.json()["error"]["code"] == "video_expired"
        wait_for_all_settled(stack.database_url)


def test_a_replicated_process_on_local_disk_refuses_to_start(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "REELBATCH_REPLICAS": "2",
        "REELBATCH_STORAGE": "local",
        "REELBATCH_ADMIN_TOKEN": "an-admin-token-long-enough",
    }
    refused = _refused_start(["serve", "gateway"], env)
    assert "the configuration is refused" in refused
    assert "REELBATCH_REPLICAS=2 with REELBATCH_STORAGE=local" in refused
    assert "REELBATCH_ASSET_DIR_SHARED=true" in refused
    assert "Traceback" not in refused

    # S3 chosen by default with replicas, but no bucket: refused as clearly.
    without_bucket = {**env, "REELBATCH_STORAGE": "auto"}
    refused = _refused_start(["worker"], without_bucket)
    assert "REELBATCH_STORAGE=auto with REELBATCH_REPLICAS=2 stores videos in S3" in refused


def _refused_start(arguments: list[str], env: dict[str, str]) -> str:
    """What `reelbatch ARGUMENTS` printed when it refused to start (exit status 1)."""
    refused = subprocess.run(
        [sys.executable, "-m", "services.launcher", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1, refused.stderr
    return refused.stderr
