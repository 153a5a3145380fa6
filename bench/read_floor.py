"""The read path's floor: the same chain of processes with nothing of ours in it.

An HTTP server (uvicorn, uvloop, httptools: the gateway's server) whose bare ASGI app makes one
grpc.aio call per request to a bare gRPC server, which runs one PostgreSQL query (psycopg, a pooled
autocommit connection) on the stack's own tables and answers with the service's protobuf messages;
the HTTP side answers the same JSON fields. No framework, authentication, validation, telemetry,
counters or signed links: the least any implementation of this architecture (REST -> gRPC ->
PostgreSQL, in Python) must pay per request. `read_path` loads it exactly as it loads the gateway.

Run as `python -m bench.read_floor grpc|http ...` by `running_floor`.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import orjson
import uvloop
from psycopg_pool import AsyncConnectionPool
from reelbatch.proto.batch.v1 import batch_pb2

from tests.stack import free_port

_SERVICE = "floor.Reads"
_BATCH_ROW = """SELECT id::text, status, total_count, frozen_credits,
    (extract(epoch FROM created_at) * 1000000)::bigint AS created_us
FROM batch.batches WHERE id = %s AND tenant_id = %s"""
_TASK_PAGE = """SELECT id::text, batch_index, status, video_url, error_message, failure_type, attempts
FROM batch.tasks WHERE batch_id = %s ORDER BY batch_index LIMIT %s"""


async def serve_grpc(port: int, dsn: str) -> None:
    """GetBatch and ListTasks as bare handlers: one query each, the answer in protobuf."""
    pool = AsyncConnectionPool(dsn, min_size=4, max_size=8, kwargs={"autocommit": True}, open=False)
    await pool.open(wait=True)

    async def get_batch(request: batch_pb2.GetBatchRequest, _: Any) -> batch_pb2.Batch:
        async with pool.connection() as conn, conn.cursor() as cursor:
            await cursor.execute(_BATCH_ROW, (request.batch_id, request.tenant_id))
            row: Any = await cursor.fetchone()
        batch_id, status, total_count, frozen_credits, created_us = row
        answer = batch_pb2.Batch(
            batch_id=batch_id, status=status, total_count=total_count, frozen_credits=frozen_credits
        )
        answer.created_at.FromMicroseconds(created_us)
        return answer

    async def list_tasks(request: batch_pb2.ListTasksRequest, _: Any) -> batch_pb2.ListTasksResponse:
        async with pool.connection() as conn, conn.cursor() as cursor:
            await cursor.execute(_TASK_PAGE, (request.batch_id, request.limit + 1))
            rows: list[Any] = await cursor.fetchall()
        return batch_pb2.ListTasksResponse(
            tasks=[
                batch_pb2.Task(
                    task_id=task_id,
                    batch_index=batch_index,
                    status=status,
                    video_url=video_url or "",
                    error_message=error_message or "",
                    failure_type=failure_type or "",
                    attempts=attempts,
                )
                for task_id, batch_index, status, video_url, error_message, failure_type, attempts in rows[
                    : request.limit
                ]
            ]
        )

    handlers = {
        "GetBatch": grpc.unary_unary_rpc_method_handler(
            get_batch,
            request_deserializer=batch_pb2.GetBatchRequest.FromString,
            response_serializer=batch_pb2.Batch.SerializeToString,
        ),
        "ListTasks": grpc.unary_unary_rpc_method_handler(
            list_tasks,
            request_deserializer=batch_pb2.ListTasksRequest.FromString,
            response_serializer=batch_pb2.ListTasksResponse.SerializeToString,
        ),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(_SERVICE, handlers)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def http_app(grpc_port: int, tenant_id: str) -> Any:
    """The bare ASGI app: path -> one gRPC call -> the answer's fields as JSON."""
    channel: grpc.aio.Channel | None = None
    calls: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal channel
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if channel is None:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
            calls["batch"] = channel.unary_unary(
                f"/{_SERVICE}/GetBatch",
                request_serializer=batch_pb2.GetBatchRequest.SerializeToString,
                response_deserializer=batch_pb2.Batch.FromString,
            )
            calls["tasks"] = channel.unary_unary(
                f"/{_SERVICE}/ListTasks",
                request_serializer=batch_pb2.ListTasksRequest.SerializeToString,
                response_deserializer=batch_pb2.ListTasksResponse.FromString,
            )
        parts = scope["path"].split("/")  # /api/enterprise/video-batch/{id}[/tasks]
        batch_id = parts[4]
        if len(parts) > 5:
            page = await calls["tasks"](
                batch_pb2.ListTasksRequest(tenant_id=tenant_id, batch_id=batch_id, limit=50)
            )
            document: dict[str, Any] = {
                "items": [
                    {
                        "task_id": task.task_id,
                        "batch_index": task.batch_index,
                        "status": task.status,
                        "video_url": task.video_url or None,
                        "error_message": task.error_message or None,
                        "failure_type": task.failure_type or None,
                        "attempts": task.attempts,
                    }
                    for task in page.tasks
                ],
                "next_cursor": None,
            }
        else:
            batch = await calls["batch"](batch_pb2.GetBatchRequest(tenant_id=tenant_id, batch_id=batch_id))
            document = {
                "batch_id": batch.batch_id,
                "status": batch.status,
                "total_count": batch.total_count,
                "frozen_credits": batch.frozen_credits,
                "created_at": batch.created_at.ToJsonString(),
            }
        body = orjson.dumps(document)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"floor process exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"floor process did not listen on {port}")


@contextmanager
def running_floor(database_url: str, tenant_id: str) -> Iterator[tuple[str, dict[str, int]]]:
    """The floor's two processes on free ports: (base URL, pids by name)."""
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    grpc_port, http_port = free_port(), free_port()
    module = [sys.executable, "-m", "bench.read_floor"]
    processes = {
        "floor-grpc": subprocess.Popen([*module, "grpc", str(grpc_port), dsn]),
    }
    try:
        _wait_for_port(grpc_port, processes["floor-grpc"])
        processes["floor-http"] = subprocess.Popen(
            [*module, "http", str(http_port), str(grpc_port), tenant_id], env={**os.environ}
        )
        _wait_for_port(http_port, processes["floor-http"])
        yield f"http://127.0.0.1:{http_port}", {name: p.pid for name, p in processes.items()}
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["grpc", "http"])
    parser.add_argument("port", type=int)
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()
    if args.role == "grpc":
        uvloop.run(serve_grpc(args.port, args.rest[0]))
        return
    import uvicorn  # only the HTTP side needs it

    grpc_port, tenant_id = int(args.rest[0]), args.rest[1]
    # As the gateway binds (services/gateway/entrypoints/main.py): with IPPROTO_TCP, so asyncio
    # sets TCP_NODELAY on accepted sockets; without it each answer waits for a delayed ACK.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(
        http_app(grpc_port, tenant_id), lifespan="on", log_level="warning", access_log=False
    )
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    main()
