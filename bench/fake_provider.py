"""The fake Replicate of the tests (`tests.fakes.replicate`) as a process of its own, for the
provider-bound benchmark: its CPU is then its own, not the benchmark's or the worker's.

Every job renders for `--render-seconds` after its creation. `GET /bench/stats` answers the fake's
own counts (jobs created, jobs whose end a poll has seen, requests served) and its CPU seconds.

    python -m bench.fake_provider --port 8765 --render-seconds 120
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from tests.fakes import replicate
from tests.fakes.provider_state import FakeProvider, Scenario

START_TIMEOUT_SECONDS = 30.0


def stats_app(state: FakeProvider) -> FastAPI:
    """The fake Replicate app with a `/bench/stats` route beside its API."""
    app = replicate.replicate_app(state)
    served = {"requests": 0}

    @app.get("/bench/stats")
    async def stats() -> dict[str, float]:
        jobs = list(state.jobs.values())
        finished = sum(1 for job in jobs if job.finished)
        # The request log grows with every poll; only its length is of use here.
        served["requests"] += len(state.seen)
        state.seen.clear()
        return {
            "jobs": len(jobs),
            "finished": finished,
            "in_flight": len(jobs) - finished,
            "requests": served["requests"],
            "cpu_seconds": time.process_time(),
        }

    return app


@contextmanager
def fake_provider_process(port: int, render_seconds: float) -> Iterator[tuple[str, int]]:
    """Runs the fake in a child process on 127.0.0.1:`port`; yields its base URL and pid."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.fake_provider",
            "--port",
            str(port),
            "--render-seconds",
            str(render_seconds),
        ]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the fake provider exited with {process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the fake provider did not start") from None
                time.sleep(0.05)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(10)


def provider_stats(url: str) -> dict[str, float]:
    """The fake's `/bench/stats`."""
    answer = httpx.get(f"{url}/bench/stats", timeout=30)
    answer.raise_for_status()
    stats: dict[str, float] = answer.json()
    return stats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--render-seconds", type=float, required=True)
    args = parser.parse_args()
    state = replicate.replicate_state()
    state.default = Scenario(render_seconds=args.render_seconds)
    state.listening_on(args.port)
    # A backlog for 10,000 clients connecting at once; access logs off (one line per poll).
    uvicorn.run(
        stats_app(state),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=16384,
    )


if __name__ == "__main__":
    main()
