"""The Kubernetes configuration runs the system: every process started with the ConfigMap's and the
Secret's settings (production mode) serves a batch to settlement, then stops on SIGTERM within its
Deployment's terminationGracePeriodSeconds.

What a laptop cannot give is swapped for local equivalents: PostgreSQL, RabbitMQ and free ports
instead of cluster addresses, local video storage instead of S3 (tests/unit/deploy checks the
manifests' own values)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import yaml

from tests.invariants import check_invariants
from tests.rest_api import Api
from tests.stack import ADMIN_TOKEN, fresh_stack, stop_process

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# Cluster addresses and storage that the test replaces with the local stack's.
REPLACED = {
    "REELBATCH_DATABASE_URL",
    "REELBATCH_AMQP_URL",
    "REELBATCH_HTTP_PORT",
    "REELBATCH_PUBLIC_BASE_URL",
    "REELBATCH_ASSET_DIR",
    "REELBATCH_STORAGE",
    "REELBATCH_BILLING_GRPC_TARGET",
    "REELBATCH_BATCH_GRPC_TARGET",
    "REELBATCH_WEBHOOK_GRPC_TARGET",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
}


def _manifests() -> list[dict[str, Any]]:
    return [d for p in sorted(MANIFESTS.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def _cluster_settings() -> dict[str, str]:
    """The ConfigMap's and the example Secret's settings, cluster addresses left out."""
    settings: dict[str, str] = {}
    for document in _manifests():
        settings |= document.get("data", {}) if document["kind"] == "ConfigMap" else {}
        settings |= document.get("stringData", {}) if document["kind"] == "Secret" else {}
    kept = {name: value for name, value in settings.items() if name not in REPLACED}
    return {
        **kept,
        # The test client's admin token, and production's refusals of the tests' unsafe switches.
        "REELBATCH_ADMIN_TOKEN": ADMIN_TOKEN,
        "REELBATCH_WEBHOOK_ALLOW_HTTP": "0",
        "REELBATCH_WEBHOOK_ALLOW_PRIVATE": "0",
        "REELBATCH_INPUT_URL_ALLOW_HTTP": "0",
        "REELBATCH_INPUT_URL_ALLOW_PRIVATE": "0",
        "REELBATCH_METRICS_PORT": "0",  # processes of other tests may hold the default ports
        # One host in place of the cluster's S3: every process sees the same asset directory.
        "REELBATCH_STORAGE": "local",
        "REELBATCH_ASSET_DIR_SHARED": "true",
    }


def _grace_periods() -> dict[str, float]:
    return {
        document["metadata"]["name"]: float(
            document["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        )
        for document in _manifests()
        if document["kind"] == "Deployment"
    }


def test_the_cluster_settings_serve_a_batch_and_every_process_stops_within_its_grace(tmp_path: Path) -> None:
    settings = _cluster_settings()
    assert settings["REELBATCH_ENV"] == "production"
    with fresh_stack(tmp_path, settings, workers=1) as stack:
        api = Api(stack.base_url)
        assert api.http.get("/healthz").status_code == 200
        assert api.http.get("/readyz").status_code == 200
        customer = api.new_customer(credits=100)
        items = [{"prompt": f"a lighthouse, take {n}", "model": "sora-2"} for n in range(3)]
        created = api.create_batch(customer, items)
        assert created.status_code == 202, created.text
        batch = api.wait_until_settled(customer, created.json()["batch_id"])
        assert (batch["status"], batch["settlement_status"]) == ("completed", "settled")
        check_invariants(stack.database_url).assert_clean()

        grace = _grace_periods()
        for name, process in list(stack.processes.items()):
            deployment = "worker" if name.startswith("worker") else name
            began = time.monotonic()
            assert stop_process(process, signal.SIGTERM, grace[deployment]) == 0, stack.log(name)
            assert time.monotonic() - began < grace[deployment]
