"""What every test stack is: the running system as end-to-end and chaos tests drive it.

`tests.stack.Stack` runs every service as its own OS process (PostgreSQL and RabbitMQ);
`tests.embedded_stack.EmbeddedStack` runs `reelbatch run`, one process on its own embedded
PostgreSQL and the Postgres bus. Fixtures and tests that accept either are typed against
`RunningStack`; both classes implement it (mypy checks where a fixture hands one out as the other).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol


class RunningStack(Protocol):
    """The system under test, started and stopped as OS processes named by `processes`."""

    @property
    def base_url(self) -> str:
        """The gateway's root URL (REST, admin UI, probes, metrics)."""
        ...

    @property
    def database_url(self) -> str:
        """The database every service writes to (for the invariant checker)."""
        ...

    @property
    def env(self) -> dict[str, str]:
        """The environment the processes run with."""
        ...

    @property
    def workdir(self) -> Path:
        """Where the processes' logs (and the embedded stack's assets) live."""
        ...

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """The processes started so far, by name."""
        ...

    def run_cli(self, *args: str) -> None:
        """Runs one `reelbatch` command (e.g. `migrate`) with the stack's environment."""
        ...

    def start(self, name: str) -> None:
        """Starts (or restarts) one process."""
        ...

    def start_all(self) -> None:
        """Starts every process and waits until the system is ready."""
        ...

    def wait_ready(self, timeout: float = ...) -> None:
        """Returns once the system answers ready; raises if a process exited or time ran out."""
        ...

    def kill(self, name: str) -> None:
        """SIGKILL: no cleanup at all, as in a crash."""
        ...

    def stop(self, name: str, timeout: float = ...) -> int:
        """Stops one process as its operator would; returns its exit code."""
        ...

    def stop_all(self) -> dict[str, int]:
        """Stops every process; returns their exit codes by name."""
        ...

    def log(self, name: str) -> str:
        """The end of one process's log, for failure messages."""
        ...
