"""Runs the whole system in embedded mode (`reelbatch run`, one process) for end-to-end and chaos tests.

It implements `tests.stack_protocol.RunningStack`, as `tests.stack.Stack` does, and shares that
module's settings and process handling; `database_url` is the embedded server's. The process runs
in its own working directory with no database or broker URL, as on a newcomer's machine; its
PostgreSQL data lives under that directory.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.stack import (
    fast_settings,
    free_port,
    kill_process,
    log_tail,
    raise_if_one_exited,
    spawn,
    stop_process,
)

PROCESS = "reelbatch"
READY_BANNER = "Reelbatch is running"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class EmbeddedStack:
    """`reelbatch run` with REELBATCH_MODE=embedded in `workdir`, on free localhost ports."""

    workdir: Path
    workers: int = 2
    overrides: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The embedded server runs as its own OS user, so its data must not sit under pytest's
        # private (0700, and reset by any other pytest run) temp root: a world-traversable dir.
        self.data_dir = Path(tempfile.mkdtemp(prefix="reelbatch-embedded-")) / ".reelbatch"
        self.data_dir.parent.chmod(0o755)
        atexit.register(shutil.rmtree, self.data_dir.parent, ignore_errors=True)
        self.http_port = free_port()
        inherited = {
            name: value
            for name, value in os.environ.items()
            if name not in ("REELBATCH_DATABASE_URL", "REELBATCH_AMQP_URL", "DATABASE_URL", "AMQP_URL")
        }
        self.env = {
            **inherited,
            **fast_settings(self.workdir, self.http_port),
            "PYTHONPATH": str(REPO_ROOT),
            "REELBATCH_MODE": "embedded",
            "REELBATCH_DATA_DIR": str(self.data_dir),
            "REELBATCH_WORKERS": str(self.workers),
            **self.overrides,
        }
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.pgdata = self.data_dir / "pgdata"
        self._banners_before = 0

    @property
    def database_url(self) -> str:
        """The embedded server's database, read from its pid file (socket folder)."""
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        return f"postgresql+psycopg://postgres@/reelbatch?host={lines[4].strip()}"

    def postmaster_pid(self) -> int | None:
        """The pid of the embedded PostgreSQL server, if it is alive."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        return None if state in ("Z", "X") else pid

    def _signal_postgres(self, signum: signal.Signals, timeout: float = 10.0) -> None:
        pid = self.postmaster_pid()
        if pid is None:
            return
        os.kill(pid, signum)
        deadline = time.monotonic() + timeout
        while self.postmaster_pid() == pid:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL ({pid}) did not exit after {signum.name}")
            time.sleep(0.05)

    def run_cli(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "services.launcher", *args], env=self.env, cwd=self.workdir, check=True
        )

    def start(self, name: str = PROCESS) -> None:
        """Starts (or restarts) `reelbatch run`, the only process of embedded mode."""
        assert name == PROCESS, f"embedded mode runs one process, not {name!r}"
        self._banners_before = self._output().count(READY_BANNER)
        self.processes[name] = spawn(self.workdir, name, ["run"], self.env, cwd=self.workdir)

    def start_all(self) -> None:
        self.start()
        self.wait_ready()

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raise_if_one_exited(self.processes, self.log)
            try:
                # Ready once the services answer and the launcher has seeded the demo tenant.
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200 and (
                    self._output().count(READY_BANNER) > self._banners_before
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("embedded stack not ready in time:\n" + self.log(PROCESS))

    def kill(self, name: str = PROCESS) -> None:
        """SIGKILL of the process: no cleanup at all. Its PostgreSQL, a daemon, keeps running."""
        kill_process(self.processes[name])

    def kill_postgres(self) -> None:
        """SIGKILL of the PostgreSQL server too, as when the whole machine goes down."""
        self._signal_postgres(signal.SIGKILL)

    def stop(self, name: str = PROCESS, timeout: float = 15.0) -> int:
        """Ctrl-C (SIGINT), as a user stops it; SIGKILL if it does not stop in time."""
        return stop_process(self.processes[name], signal.SIGINT, timeout)

    def stop_all(self) -> dict[str, int]:
        codes = {name: self.stop(name) for name in list(self.processes)}
        # After a SIGKILL nobody stopped the database: do it here so no test leaves a server behind.
        self._signal_postgres(signal.SIGINT)  # a fast shutdown
        return codes

    def _output(self) -> str:
        path = self.workdir / f"{PROCESS}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log(self, name: str = PROCESS) -> str:
        return log_tail(self.workdir, name)
