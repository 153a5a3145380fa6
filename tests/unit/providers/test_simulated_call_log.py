"""The simulated provider's call log: one JSON line per call, whatever the call's outcome."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from services.batch.adapters.providers.simulated import SimulatedProvider
from services.batch.domain.batch import BatchId, TaskId
from services.batch.domain.provider import ProviderFailure, ProviderJob


def _job(prompt: str, attempt: int = 1) -> ProviderJob:
    return ProviderJob(TaskId(uuid.uuid4()), BatchId(uuid.uuid4()), prompt, "sora-2", attempt)


def _names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


async def test_each_call_is_logged_with_its_task_attempt_times_and_outcome(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    provider = SimulatedProvider(
        latency_seconds=0, asset_dir=tmp_path / "assets", public_base_url="http://x", call_log=log
    )
    fine, refused = _job("a cat"), _job("a cat #fail", attempt=2)
    await provider.generate(fine)
    with pytest.raises(ProviderFailure):
        await provider.generate(refused)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(line["task_id"], line["attempt"], line["outcome"]) for line in lines] == [
        (str(fine.task_id), 1, "succeeded"),
        (str(refused.task_id), 2, "content_policy"),
    ]
    assert all(line["start"] <= line["end"] for line in lines)


async def test_without_a_call_log_nothing_is_written(tmp_path: Path) -> None:
    provider = SimulatedProvider(latency_seconds=0, asset_dir=tmp_path / "assets", public_base_url="http://x")
    await provider.generate(_job("a dog"))
    assert _names(tmp_path) == ["assets"]
