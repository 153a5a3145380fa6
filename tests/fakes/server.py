"""Runs a fake provider app with uvicorn on 127.0.0.1, port 0, in a thread with its own event loop.

A thread keeps the fake independent of each test's event loop, so one server can serve a whole
test session (tests call `FakeProvider.reset` between them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

import uvicorn
from fastapi import FastAPI


class Listening(Protocol):
    """A fake's state: told the port its server listens on."""

    def listening_on(self, port: int) -> None: ...


State = TypeVar("State", bound=Listening)
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


@contextmanager
def serving(app: FastAPI, state: State) -> Iterator[State]:
    """Serves `app` until the block ends; `state.api_url` points at it."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="fake-provider", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("fake provider server stopped before it started")
        if time.monotonic() > deadline:
            raise TimeoutError("fake provider server did not start")
        time.sleep(0.01)
    state.listening_on(server.servers[0].sockets[0].getsockname()[1])
    try:
        yield state
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT_SECONDS)
