"""docker-compose.yml: every Reelbatch container (and the migration) loads its settings as
production, two replicas of each, videos in the compose MinIO that browsers reach on localhost."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from libs.config import Settings

COMPOSE = Path(__file__).resolve().parents[3] / "docker-compose.yml"
# `${NAME:?message}` and `${NAME}`: what the operator exports before `docker compose up`.
_INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::\?[^}]*)?\}")


def _compose() -> dict[str, Any]:
    text = _INTERPOLATION.sub(lambda found: f"{found.group(1).lower()}-0123456789", COMPOSE.read_text())
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def _reelbatch_services() -> list[str]:
    services: dict[str, Any] = _compose()["services"]
    return sorted(name for name, service in services.items() if service.get("build") == ".")


def test_every_reelbatch_container_and_the_migration_are_in_the_file() -> None:
    assert _reelbatch_services() == ["batch", "billing", "gateway", "migrate", "webhook", "worker"]


@pytest.mark.parametrize("service", _reelbatch_services())
def test_each_container_loads_production_settings_with_videos_in_minio(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    compose = _compose()
    for name in [name for name in os.environ if name.startswith("REELBATCH_")]:
        monkeypatch.delenv(name)
    for name, value in compose["services"][service]["environment"].items():
        monkeypatch.setenv(name, str(value))
    settings = Settings()  # refuses unsafe production values, and local disk with replicas

    assert settings.env == "production"
    assert settings.replicas == 2
    assert settings.video_storage == "s3", "containers of two replicas share no disk"
    minio = compose["services"]["minio"]
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.s3_public_endpoint_url == f"http://localhost:{minio['ports'][0].split(':')[0]}"
    assert settings.s3_access_key_id == minio["environment"]["MINIO_ROOT_USER"]
    assert settings.s3_secret_access_key.get_secret_value() == minio["environment"]["MINIO_ROOT_PASSWORD"]
    assert compose["services"][service]["depends_on"]["minio"] == {"condition": "service_healthy"}
