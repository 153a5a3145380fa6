"""Every process of the system, by name: what it runs and whether it has a metrics port.

Entries name their modules instead of importing them, so a process imports only the service it
runs (start-up CPU is mostly imports; see tests/unit/libs/test_start_imports.py).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Protocol, cast

from libs.config import Settings


class ProcessMain(Protocol):
    """How every process runs: until `stopping` is set, setting `ready` once it serves."""

    def __call__(
        self, settings: Settings, stopping: asyncio.Event, ready: asyncio.Event | None = None
    ) -> Awaitable[None]: ...


@dataclass(frozen=True)
class ProcessKind:
    """One kind of process: its entry module and function, and what the launchers need to know."""

    name: str
    module: str
    function: str
    # Processes with a database schema of their own migrate `services.<name>.bootstrap`.
    migrates: bool
    # The gateway serves `/metrics` on its HTTP port; every other process gets a port of its own.
    own_metrics_port: bool

    def load(self) -> ProcessMain:
        """Imports the entry module and returns its main function."""
        return cast(ProcessMain, getattr(importlib.import_module(self.module), self.function))


def _service(name: str, *, migrates: bool = True, own_metrics_port: bool = True) -> ProcessKind:
    return ProcessKind(name, f"services.{name}.entrypoints.main", "serve", migrates, own_metrics_port)


# The gateway comes last: embedded mode starts it once the gRPC servers listen.
SERVICES: Mapping[str, ProcessKind] = {
    kind.name: kind
    for kind in (
        _service("billing"),
        _service("batch"),
        _service("webhook"),
        _service("gateway", migrates=False, own_metrics_port=False),
    )
}
WORKER = ProcessKind(
    "worker", "services.batch.entrypoints.worker", "run_worker", migrates=False, own_metrics_port=True
)
PROCESSES: Mapping[str, ProcessKind] = {**SERVICES, WORKER.name: WORKER}
