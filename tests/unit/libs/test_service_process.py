"""The one process lifecycle (libs/service_process.py), on real asyncio and a real gRPC server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.service_process import GrpcApi, ProcessComponentFailed, Resources, ServiceProcess

SLOW_SERVICE = "test.Slow"
SLOW_METHOD = f"/{SLOW_SERVICE}/Wait"


class Recorder:
    """What happened, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.call_arrived = asyncio.Event()

    def resource(self, name: str) -> NamedResource:
        return NamedResource(name, self)


class NamedResource:
    def __init__(self, name: str, recorder: Recorder) -> None:
        self.name = name
        self.recorder = recorder

    async def close(self) -> None:
        self.recorder.events.append(f"{self.name} closed")


def slow_api(recorder: Recorder, seconds: float) -> GrpcApi:
    """A gRPC API with one method that takes `seconds` (bytes in, bytes out)."""

    async def wait(request: bytes, context: object) -> bytes:
        recorder.call_arrived.set()
        await asyncio.sleep(seconds)
        recorder.events.append("call finished")
        return request

    def register(server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(wait)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SLOW_SERVICE, {"Wait": handler}),)
        )

    return GrpcApi("127.0.0.1:0", [register], [SLOW_SERVICE])


def resources(recorder: Recorder) -> Resources:
    return Resources(
        bus=recorder.resource("bus"),
        clients=[recorder.resource("client")],
        database=recorder.resource("database"),
    )


def draining_loop(recorder: Recorder, seconds: float) -> Callable[[asyncio.Event], Awaitable[None]]:
    """A loop that, once stopping is set, takes `seconds` to finish the work it holds."""

    async def loop(stopping: asyncio.Event) -> None:
        await stopping.wait()
        await asyncio.sleep(seconds)
        recorder.events.append("loop drained")

    return loop


def watcher(recorder: Recorder) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def watch(stopping: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            recorder.events.append("watcher cancelled")
            raise

    return watch


async def started(process: ServiceProcess, stopping: asyncio.Event) -> asyncio.Task[None]:
    ready = asyncio.Event()
    running = asyncio.create_task(process.run(stopping, ready))
    done_or_ready = asyncio.ensure_future(ready.wait())
    await asyncio.wait({running, done_or_ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    done_or_ready.cancel()
    assert ready.is_set(), "the process did not become ready"
    return running


async def test_stopping_cancels_watchers_drains_calls_and_loops_then_closes_bus_clients_database() -> None:
    recorder = Recorder()
    process = (
        ServiceProcess("probe", grace_seconds=5, resources=resources(recorder))
        .serve_grpc(slow_api(recorder, 0.3))
        .add_loop("probe-drain", draining_loop(recorder, 0.1))
        .add_loop("probe-watcher", watcher(recorder), holds_work=False)
    )
    stopping = asyncio.Event()
    running = await started(process, stopping)
    assert process.grpc is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{process.grpc.port}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        call = asyncio.ensure_future(channel.unary_unary(SLOW_METHOD, None, None)(b"in flight"))
        await asyncio.wait_for(recorder.call_arrived.wait(), 5)
        stopping.set()
        assert await asyncio.wait_for(call, 5) == b"in flight"
    await asyncio.wait_for(running, 10)

    # Watchers hold no work; the call and the loop drain side by side, and only then is anything closed.
    assert recorder.events[0] == "watcher cancelled"
    assert sorted(recorder.events[1:3]) == ["call finished", "loop drained"]
    assert recorder.events[3:] == ["bus closed", "client closed", "database closed"]


async def test_close_is_idempotent_and_concurrent_closes_wait_for_the_first() -> None:
    recorder = Recorder()
    process = ServiceProcess("probe", grace_seconds=5, resources=resources(recorder)).add_loop(
        "probe-drain", draining_loop(recorder, 0.2)
    )
    stopping = asyncio.Event()
    running = await started(process, stopping)

    first, second = asyncio.ensure_future(process.close()), asyncio.ensure_future(process.close())
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    # Both returned only after the loop drained and every resource closed, each once.
    assert recorder.events == ["loop drained", "bus closed", "client closed", "database closed"]
    await process.close()
    await asyncio.wait_for(running, 5)
    assert recorder.events == ["loop drained", "bus closed", "client closed", "database closed"]


async def test_a_loop_that_outlives_the_grace_period_is_cancelled_and_resources_are_still_closed() -> None:
    recorder = Recorder()

    async def stuck(stopping: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()  # ignores stopping, as a loop stuck on I/O would
        except asyncio.CancelledError:
            recorder.events.append("stuck loop cancelled")
            raise

    process = ServiceProcess("probe", grace_seconds=0.3, resources=resources(recorder)).add_loop(
        "probe-stuck", stuck
    )
    stopping = asyncio.Event()
    running = await started(process, stopping)

    began = time.monotonic()
    stopping.set()
    await asyncio.wait_for(running, 5)
    took = time.monotonic() - began

    assert 0.3 <= took < 2.0
    assert recorder.events == ["stuck loop cancelled", "bus closed", "client closed", "database closed"]


async def test_a_loop_that_crashes_stops_the_process_with_an_error_instead_of_hanging() -> None:
    recorder = Recorder()

    async def crashes(stopping: asyncio.Event) -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("lost the database")

    process = (
        ServiceProcess("probe", grace_seconds=5, resources=resources(recorder))
        .serve_grpc(slow_api(recorder, 0))
        .add_loop("probe-crashes", crashes)
        .add_loop("probe-drain", draining_loop(recorder, 0))
    )
    stopping = asyncio.Event()
    running = await started(process, stopping)

    with pytest.raises(ProcessComponentFailed, match="probe-crashes") as failed:
        await asyncio.wait_for(running, 5)

    assert isinstance(failed.value.__cause__, RuntimeError)
    # The whole process (an embedding one too) is told to stop, and everything was closed.
    assert stopping.is_set()
    assert recorder.events == ["loop drained", "bus closed", "client closed", "database closed"]


class FailingListener:
    """A listener whose start fails (a busy port)."""

    async def start(self) -> Awaitable[None]:
        raise OSError("address already in use")

    async def stop(self, grace_seconds: float) -> None:
        raise AssertionError("never started")


class ListenerThatEnds:
    """A listener that stops serving on its own after a moment."""

    async def start(self) -> Awaitable[None]:
        return asyncio.sleep(0.05)

    async def stop(self, grace_seconds: float) -> None:
        return None


async def test_a_listener_that_cannot_start_fails_run_and_the_resources_are_closed() -> None:
    recorder = Recorder()
    process = ServiceProcess("probe", grace_seconds=5, resources=resources(recorder)).add_listener(
        FailingListener()
    )
    with pytest.raises(OSError, match="address already in use"):
        await asyncio.wait_for(process.run(asyncio.Event()), 5)
    assert recorder.events == ["bus closed", "client closed", "database closed"]


async def test_a_listener_that_stops_serving_on_its_own_stops_the_process_with_an_error() -> None:
    recorder = Recorder()
    process = ServiceProcess("probe", grace_seconds=5, resources=resources(recorder)).add_listener(
        ListenerThatEnds()
    )
    stopping = asyncio.Event()
    with pytest.raises(ProcessComponentFailed, match="ListenerThatEnds"):
        await asyncio.wait_for(process.run(stopping), 5)
    assert stopping.is_set()
    assert recorder.events == ["bus closed", "client closed", "database closed"]
