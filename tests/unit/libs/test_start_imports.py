"""What a service process imports before it serves: only what it needs at start.

Every throw-away stack in the suite starts six processes, and most of their start-up CPU is
imports; these modules are imported lazily, where they are used (see the comments there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

# Imports every process's entry point the way `reelbatch serve|worker` does (services.launcher.cli first),
# configures telemetry with no span exporter, and reports the loaded modules of interest.
PROBE = """
import json, sys
import services.launcher.cli
from libs.telemetry import configure_telemetry
for module in (
    "services.billing.entrypoints.main",
    "services.batch.entrypoints.main",
    "services.batch.entrypoints.worker",
    "services.webhook.entrypoints.main",
    "services.gateway.entrypoints.main",
):
    __import__(module)
configure_telemetry("probe")
watched = (
    "alembic", "stripe", "httpx._main", "rich", "pygments",
    "opentelemetry.instrumentation.sqlalchemy", "opentelemetry.instrumentation.httpx",
)
print(json.dumps(sorted(name for name in watched if sys.modules.get(name) is not None)))
"""

GATEWAY_PROBE = """
import json, sys
import services.launcher.cli
import services.gateway.entrypoints.main
from libs.telemetry import configure_telemetry
configure_telemetry("gateway")
print(json.dumps(sys.modules.get("sqlalchemy") is not None))
"""


def _run(probe: str) -> object:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("OTEL_") and not name.startswith("REELBATCH_")
    }
    env["OTEL_TRACES_EXPORTER"] = "none"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_service_processes_do_not_import_what_only_migrate_stripe_or_tracing_need() -> None:
    assert _run(PROBE) == []


def test_the_gateway_does_not_import_sqlalchemy() -> None:
    assert _run(GATEWAY_PROBE) is False
