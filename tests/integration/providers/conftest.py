"""Each real provider adapter wired to its fake server (one per test), with fast polling."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from services.batch.adapters.providers._lifecycle import RemoteJobProvider
from services.batch.adapters.providers._remote import RemoteJobSettings
from services.batch.adapters.providers.fal import FalProvider
from services.batch.adapters.providers.openai_videos import OpenAIVideosProvider
from services.batch.adapters.providers.replicate import ReplicateProvider
from services.batch.adapters.providers.veo import VeoProvider
from services.batch.adapters.storage import LocalDirectoryStorage
from tests.fakes import fal, openai_videos, replicate, veo
from tests.fakes.provider_state import FakeProvider
from tests.fakes.server import serving

# The batch service fixtures (migrated database, fake billing, settings, event tap), reused as is.
from tests.integration.batch.conftest import (  # noqa: F401
    batch_database_url,
    event_tap,
    fake_billing,
    make_settings,
)

FAST = RemoteJobSettings(
    poll_seconds=0.01, max_poll_seconds=0.02, max_retry_after_seconds=5.0, http_timeout_seconds=5.0
)

# Our model name -> the provider's, as the price list's `provider_model` would say.
MODEL_IDS = {
    "veo": {"veo-3": "veo-3.0-generate-001"},
    "replicate": {"veo-3": "google/veo-3"},
    "fal": {"veo-3": "fal-ai/veo3/fast"},
    "openai": {"veo-3": "sora-2"},
}

Adapter = RemoteJobProvider[Any]


def _veo(
    fake: FakeProvider, key: str | None, settings: RemoteJobSettings, storage: LocalDirectoryStorage
) -> Adapter:
    return VeoProvider.connect(
        api_key=key or veo.API_KEY,
        storage=storage,
        model_ids=MODEL_IDS["veo"],
        settings=settings,
        base_url=fake.api_url,
    )


def _replicate(
    fake: FakeProvider, key: str | None, settings: RemoteJobSettings, storage: LocalDirectoryStorage
) -> Adapter:
    return ReplicateProvider.connect(
        api_token=key or replicate.API_TOKEN,
        storage=storage,
        model_ids=MODEL_IDS["replicate"],
        settings=settings,
        base_url=fake.api_url,
    )


def _fal(
    fake: FakeProvider, key: str | None, settings: RemoteJobSettings, storage: LocalDirectoryStorage
) -> Adapter:
    return FalProvider.connect(
        api_key=key or fal.FAL_KEY,
        storage=storage,
        model_ids=MODEL_IDS["fal"],
        settings=settings,
        queue_url=fake.api_url,
    )


def _openai(
    fake: FakeProvider, key: str | None, settings: RemoteJobSettings, storage: LocalDirectoryStorage
) -> Adapter:
    return OpenAIVideosProvider.connect(
        api_key=key or openai_videos.API_KEY,
        storage=storage,
        model_ids=MODEL_IDS["openai"],
        settings=settings,
        base_url=fake.api_url,
    )


FAKES: dict[
    str, tuple[Callable[[], FakeProvider], Callable[[FakeProvider], FastAPI], Callable[..., Adapter]]
] = {
    "veo": (veo.veo_state, veo.veo_app, _veo),
    "replicate": (replicate.replicate_state, replicate.replicate_app, _replicate),
    "fal": (fal.fal_state, fal.fal_app, _fal),
    "openai": (openai_videos.openai_videos_state, openai_videos.openai_videos_app, _openai),
}


@dataclass
class ProviderRig:
    """An adapter, the fake it talks to, and the directory its videos land in."""

    name: str
    fake: FakeProvider
    asset_dir: Path
    _build: Callable[..., Adapter]
    _adapters: list[Adapter]

    def adapter(self, *, key: str | None = None, settings: RemoteJobSettings = FAST) -> Adapter:
        """A fresh adapter on the fake (closed when the test ends)."""
        storage = LocalDirectoryStorage(self.asset_dir, "http://videos.test")
        built = self._build(self.fake, key, settings, storage)
        self._adapters.append(built)
        return built

    def stored_videos(self) -> list[Path]:
        return sorted(path for path in self.asset_dir.rglob("*") if path.is_file())


@pytest.fixture(scope="session")
def fake_providers() -> Iterator[dict[str, FakeProvider]]:
    """One fake server per provider for the whole session."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(serving(make_app(state), state))
            for name, (make_state, make_app, _) in FAKES.items()
            for state in [make_state()]
        }


@pytest.fixture(params=sorted(FAKES))
async def rig(
    request: pytest.FixtureRequest, fake_providers: dict[str, FakeProvider], tmp_path: Path
) -> AsyncIterator[ProviderRig]:
    """One provider's adapter factory and its freshly reset fake."""
    fake = fake_providers[request.param]
    fake.reset()
    rig = ProviderRig(request.param, fake, tmp_path / "assets", FAKES[request.param][2], [])
    try:
        yield rig
    finally:
        for adapter in rig._adapters:
            await adapter.close()
