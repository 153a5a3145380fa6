"""deploy/kubernetes: the manifests validate, cover every process and every setting, and give each
process at least the shutdown time its code drains within."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from libs.config import METRICS_PORT_DEFAULTS, GrpcServiceName, Settings
from libs.messaging.contract import DISPATCH_QUEUE
from libs.rpc.server import DRAIN_NOTICE_SECONDS
from libs.service_process import BACKEND_GRACE_SECONDS
from services.batch.entrypoints.worker import DRAIN_GRACE_SECONDS, HAND_BACK_ACK_SECONDS, LOOP_STOP_SECONDS
from services.batch.use_cases.execution import HAND_BACK_UNWIND_SECONDS
from services.gateway.entrypoints.main import GRACE_SECONDS as GATEWAY_GRACE_SECONDS
from services.launcher.registry import PROCESSES

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "deploy" / "kubernetes"
CHECK = ROOT / "scripts" / "check_kubernetes.py"
OPERATIONS = ROOT / "docs" / "operations.md"
GRPC_BACKENDS: tuple[GrpcServiceName, ...] = ("billing", "batch", "webhook")
# Closing the bus, channels and database after the drain, and the kubelet's own delay.
CLOSE_MARGIN_SECONDS = 5.0


def _resources() -> list[dict[str, Any]]:
    return [
        document
        for path in sorted(MANIFESTS.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [r for r in _resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _container(deployment: str) -> dict[str, Any]:
    pod = _one("Deployment", deployment)["spec"]["template"]["spec"]
    containers: list[dict[str, Any]] = pod["containers"]
    assert len(containers) == 1
    return containers[0]


def _shared_environment() -> dict[str, str]:
    config = _one("ConfigMap", "reelbatch-config")["data"]
    secret = _one("Secret", "reelbatch-secrets")["stringData"]
    return {**config, **secret}


def _environment(deployment: str) -> dict[str, str]:
    own = {item["name"]: item["value"] for item in _container(deployment).get("env", [])}
    return {**_shared_environment(), **own}


def _env_name(field: str) -> str:
    return f"REELBATCH_{field.upper()}"


def _documented_defaults() -> set[str]:
    """The settings docs/operations.md lists as left at their code default."""
    text = OPERATIONS.read_text()
    section = text.split("### Settings left at their defaults", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"REELBATCH_[A-Z0-9_]+", section))


def _check(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), str(directory)], capture_output=True, text=True, check=False, timeout=120
    )


def test_every_manifest_validates_against_its_schema_offline() -> None:
    result = _check(MANIFESTS)
    assert result.returncode == 0, result.stderr
    assert "manifests valid" in result.stdout


def test_a_misspelt_field_or_an_unknown_kind_fails_the_check(tmp_path: Path) -> None:
    shutil.copytree(MANIFESTS, tmp_path, dirs_exist_ok=True)
    worker = tmp_path / "30-worker.yaml"
    worker.write_text(worker.read_text().replace("minReplicaCount", "minReplicas"))
    gateway = tmp_path / "40-gateway.yaml"
    gateway.write_text(gateway.read_text().replace("readinessProbe:", "readinesProbe:"))
    unknown = "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\n"
    (tmp_path / "50-unknown.yaml").write_text(unknown)
    result = _check(tmp_path)
    assert result.returncode == 1
    assert "ScaledObject/worker: spec: Additional properties are not allowed ('minReplicas'" in result.stderr
    assert "Deployment/gateway" in result.stderr and "'readinesProbe' was unexpected" in result.stderr
    assert "Gadget/g: no schema" in result.stderr


def test_every_setting_has_a_value_or_a_documented_default() -> None:
    settings = {_env_name(field) for field in Settings.model_fields}
    given = set(_shared_environment())
    for deployment in (*GRPC_BACKENDS, "gateway", "worker"):
        given |= {item["name"] for item in _container(deployment).get("env", [])}
    defaults = _documented_defaults()
    missing = sorted(settings - given - defaults)
    assert missing == [], "set them in deploy/kubernetes or document their default in docs/operations.md"
    assert sorted({name for name in given if name.startswith("REELBATCH_")} - settings) == [], "not settings"
    assert sorted(defaults - settings) == [], "docs/operations.md names settings that do not exist"
    assert sorted(defaults & given) == [], "documented as left at the default, yet set"


@pytest.mark.parametrize("deployment", [*GRPC_BACKENDS, "gateway", "worker"])
def test_each_process_loads_its_production_settings(deployment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("REELBATCH_"):
            monkeypatch.delenv(name)
    for name, value in _environment(deployment).items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # refuses unsafe production values
    assert settings.env == "production"
    assert settings.video_storage == "s3", "pods on several hosts share no disk"
    assert settings.replicas > 1, "local storage would then be refused at start (ADR-140)"
    assert settings.metrics_host == "0.0.0.0"  # scraped from outside the pod
    for backend in GRPC_BACKENDS:
        service = _one("Service", backend)["spec"]
        assert service["clusterIP"] == "None", "headless: DNS answers every pod, so the pool sees them all"
        port = service["ports"][0]["port"]
        assert settings.grpc_target(backend) == f"dns:///{backend}:{port}"


def test_each_process_runs_its_own_command_on_its_ports() -> None:
    backends: dict[str, GrpcServiceName] = {backend: backend for backend in GRPC_BACKENDS}
    for name, kind in PROCESSES.items():
        container = _container(name)
        assert container["args"] == (["worker"] if name == "worker" else ["serve", name])
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        if kind.own_metrics_port:
            assert ports["metrics"] == METRICS_PORT_DEFAULTS[name]
        if name in backends:
            listen = _environment(name)[f"REELBATCH_{name.upper()}_GRPC_LISTEN"]
            settings = Settings().model_copy(update={f"{name}_grpc_listen": listen})
            assert settings.grpc_listen(backends[name]) == f"0.0.0.0:{ports['grpc']}"
            assert container["readinessProbe"]["grpc"]["port"] == ports["grpc"]
        if name == "gateway":
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert ports["http"] == int(_environment(name)["REELBATCH_HTTP_PORT"])
        resources = container["resources"]
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
        assert container["envFrom"] == [
            {"configMapRef": {"name": "reelbatch-config"}},
            {"secretRef": {"name": "reelbatch-secrets"}},
        ]
        budget = _one("PodDisruptionBudget", name)["spec"]
        assert budget["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}
    job = _one("Job", "reelbatch-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["migrate"]


def _grace(deployment: str) -> tuple[float, float]:
    """(terminationGracePeriodSeconds, the preStop pause before SIGTERM)."""
    pod = _one("Deployment", deployment)["spec"]["template"]["spec"]
    pause = pod["containers"][0].get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    return float(pod["terminationGracePeriodSeconds"]), float(pause)


def test_kubernetes_waits_at_least_as_long_as_each_process_drains() -> None:
    drains: dict[str, float] = {
        "gateway": GATEWAY_GRACE_SECONDS,
        # Drain, then hand back what still runs (ADR-139), then stop the loops.
        "worker": DRAIN_GRACE_SECONDS + HAND_BACK_UNWIND_SECONDS + HAND_BACK_ACK_SECONDS + LOOP_STOP_SECONDS,
        **{backend: BACKEND_GRACE_SECONDS + DRAIN_NOTICE_SECONDS for backend in GRPC_BACKENDS},
    }
    for deployment, drain in drains.items():
        grace, pause = _grace(deployment)
        assert grace >= pause + drain + CLOSE_MARGIN_SECONDS, f"{deployment}: {grace} s < {pause} + {drain} s"


def test_workers_scale_on_the_dispatch_queue_with_the_brokers_own_address() -> None:
    scaled = _one("ScaledObject", "worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "worker"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == DISPATCH_QUEUE.name
    assert trigger["metadata"]["hostFromEnv"] in _environment("worker")
    hpa = _one("HorizontalPodAutoscaler", "gateway")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert scaled["minReplicaCount"] >= 2 and hpa["minReplicas"] >= 2, "a PDB of minAvailable 1 needs two"
