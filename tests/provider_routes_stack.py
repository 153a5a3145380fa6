"""Stacks whose `veo-3` renders at fake providers over routes (issue 26 items 4 and 6, ADR-148,
ADR-149): a fake Gemini API (Veo) as the model's own route, a fake fal queue as its fallback.

The fakes count what they received: their counts, not ours, prove the budget and the failover.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from tests.fakes import fal, openai_videos, veo
from tests.fakes.provider_state import FakeProvider
from tests.fakes.server import serving
from tests.stack_protocol import RunningStack

MODEL = "veo-3"
PRICE = 20
VEO_JOB_COST = 84_000
FAL_JOB_COST = 100_000


@contextmanager
def fake_veo() -> Iterator[FakeProvider]:
    """A fake Gemini API serving Veo until the block ends."""
    state = veo.veo_state()
    with serving(veo.veo_app(state), state) as fake:
        yield fake


@contextmanager
def fake_openai() -> Iterator[FakeProvider]:
    """A fake OpenAI videos API until the block ends."""
    state = openai_videos.openai_videos_state()
    with serving(openai_videos.openai_videos_app(state), state) as fake:
        yield fake


@contextmanager
def fake_fal() -> Iterator[FakeProvider]:
    """A fake fal queue until the block ends."""
    state = fal.fal_state()
    with serving(fal.fal_app(state), state) as fake:
        yield fake


def route_overrides(
    gemini: FakeProvider,
    fal_queue: FakeProvider | None = None,
    *,
    requests_per_minute: int | None = None,
    poll_seconds: float = 0.2,
) -> dict[str, str]:
    """Settings of a stack pricing `veo-3` at 20 credits on the fake Gemini API (with a rate
    budget if given) and, when `fal_queue` is given, on the fake fal as its fallback route."""
    price: dict[str, Any] = {
        "provider": "veo",
        "provider_model": "veo-3.0-generate-001",
        "credits_per_video": PRICE,
        "provider_cost_usd_micros": VEO_JOB_COST,
        "max_attempts": 3,
    }
    if requests_per_minute is not None:
        price["requests_per_minute"] = requests_per_minute
    settings = {
        "REELBATCH_GEMINI_API_KEY": veo.API_KEY,
        "REELBATCH_GEMINI_BASE_URL": gemini.api_url,
        "REELBATCH_PROVIDER_POLL_SECONDS": str(poll_seconds),
        "REELBATCH_PROVIDER_POLL_MAX_SECONDS": str(poll_seconds),
        "REELBATCH_PROVIDER_TIMEOUT_SECONDS": "30",
        "REELBATCH_PROVIDER_HTTP_TIMEOUT_SECONDS": "3",
        "REELBATCH_RETRY_BASE_SECONDS": "0.2",
        "REELBATCH_RETRY_MAX_SECONDS": "0.5",
        "REELBATCH_BREAKER_FAILURE_THRESHOLD": "3",
        "REELBATCH_TASK_LEASE_SECONDS": "8",
    }
    if fal_queue is not None:
        price["fallback_routes"] = [
            {"provider": "fal", "provider_model": "fal-ai/veo3", "provider_cost_usd_micros": FAL_JOB_COST}
        ]
        settings["REELBATCH_FAL_KEY"] = fal.FAL_KEY
        settings["REELBATCH_FAL_QUEUE_URL"] = fal_queue.api_url
    return {"REELBATCH_PRICING": json.dumps({MODEL: price}), **settings}


def jobs_by_route(stack: RunningStack) -> dict[tuple[str, str], tuple[int, int]]:
    """(provider, status) -> (jobs, their recorded cost in US dollar micros), from the journal."""
    with psycopg.connect(stack.database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        rows = conn.execute(
            "SELECT provider, status, count(*), coalesce(sum(cost_usd_micros), 0) FROM batch.provider_jobs "
            "GROUP BY 1, 2"
        ).fetchall()
    return {(str(provider), str(status)): (int(count), int(cost)) for provider, status, count, cost in rows}


def quota_route_overrides(openai: FakeProvider, fal_queue: FakeProvider) -> dict[str, str]:
    """Settings of a stack pricing `sora-2` at OpenAI with fal as its fallback route."""
    price = {
        "provider": "openai",
        "credits_per_video": 10,
        "provider_cost_usd_micros": 24_000,
        "max_attempts": 3,
        "fallback_routes": [
            {"provider": "fal", "provider_model": "fal-ai/sora-2", "provider_cost_usd_micros": FAL_JOB_COST}
        ],
    }
    return {
        "REELBATCH_PRICING": json.dumps({"sora-2": price}),
        "REELBATCH_OPENAI_API_KEY": openai_videos.API_KEY,
        "REELBATCH_OPENAI_BASE_URL": openai.api_url,
        "REELBATCH_FAL_KEY": fal.FAL_KEY,
        "REELBATCH_FAL_QUEUE_URL": fal_queue.api_url,
        "REELBATCH_PROVIDER_POLL_SECONDS": "0.2",
        "REELBATCH_PROVIDER_POLL_MAX_SECONDS": "0.2",
        "REELBATCH_PROVIDER_TIMEOUT_SECONDS": "30",
        "REELBATCH_TASK_LEASE_SECONDS": "8",
    }
