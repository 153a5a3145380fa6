"""The simulated provider: no network, deterministic, latency configurable.

Markers in the prompt choose the outcome: `#fail` is refused by content policy, `#flaky` fails
transiently on attempts 1 and 2 and succeeds on 3, `#timeout` never answers in time. Anything
else succeeds with a small but real MP4 file. With a call log, each call appends one JSON line
(task, attempt, start and end time, pid, outcome) as it ends: what a provider would bill us for.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time
from pathlib import Path

from services.batch.adapters.storage import AssetStorage, LocalDirectoryStorage
from services.batch.domain.provider import FailureType, ProviderFailure, ProviderJob, VideoAsset

FAIL_MARKER = "#fail"
FLAKY_MARKER = "#flaky"
TIMEOUT_MARKER = "#timeout"
FLAKY_FAILED_ATTEMPTS = 2
# Far past any sensible provider timeout: the worker's own timeout is what ends the attempt.
NEVER_SECONDS = 24 * 3600.0


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def placeholder_mp4(label: str) -> bytes:
    """A few hundred bytes starting with a valid 'ftyp' box (then a 'free' box with a label)."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41")
    note = f"reelbatch simulated video {label}".encode().ljust(256, b"\0")
    return ftyp + _box(b"free", note)


class SimulatedProvider:
    """A `VideoProvider` that stores its assets through `storage`.

    Without a `storage`, videos go to `asset_dir/{batch_id}/{task_id}.mp4` (local directory).
    """

    def __init__(
        self,
        *,
        latency_seconds: float,
        asset_dir: Path,
        public_base_url: str,
        storage: AssetStorage | None = None,
        call_log: Path | None = None,
    ) -> None:
        self._latency = latency_seconds
        self._storage = storage or LocalDirectoryStorage(asset_dir, public_base_url)
        self._call_log = call_log

    async def generate(self, job: ProviderJob) -> VideoAsset:
        """Sleeps the configured latency, then answers as the prompt's marker says."""
        call_log = self._call_log
        if call_log is None:
            return await self._generate(job)
        started = time.time()
        outcome = "cancelled"
        try:
            asset = await self._generate(job)
            outcome = "succeeded"
            return asset
        except ProviderFailure as failure:
            outcome = failure.failure_type.value
            raise
        finally:
            _append_call(call_log, job, started, outcome)

    async def _generate(self, job: ProviderJob) -> VideoAsset:
        if TIMEOUT_MARKER in job.prompt:
            await asyncio.sleep(NEVER_SECONDS)
        if self._latency > 0:
            await asyncio.sleep(self._latency)
        if FAIL_MARKER in job.prompt:
            raise ProviderFailure(FailureType.CONTENT_POLICY, "blocked by content policy (simulated)")
        if FLAKY_MARKER in job.prompt and job.attempt <= FLAKY_FAILED_ATTEMPTS:
            raise ProviderFailure(
                FailureType.PROVIDER_ERROR, f"provider error on attempt {job.attempt} (simulated)"
            )
        return await self._storage.store(job.batch_id, job.task_id, placeholder_mp4(str(job.task_id)))


def _append_call(call_log: Path, job: ProviderJob, started: float, outcome: str) -> None:
    """Appends one call's line to `call_log`."""
    line = json.dumps(
        {
            "task_id": str(job.task_id),
            "attempt": job.attempt,
            "start": started,
            "end": time.time(),
            "pid": os.getpid(),
            "outcome": outcome,
        }
    )
    # One O_APPEND write per line: whole lines even from several processes, none lost to a buffer
    # when the process is killed.
    descriptor = os.open(call_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, (line + "\n").encode())
    finally:
        os.close(descriptor)
