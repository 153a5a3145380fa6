"""A distributed stack whose processes export traces to a local OTLP collector stub.

Real separate processes (every service and two workers, PostgreSQL and RabbitMQ), each with a
Prometheus port of its own, debug logs on, and OTLP/HTTP traces sent to a tiny collector on
127.0.0.1 that decodes `ExportTraceServiceRequest`s. A local receiver takes webhooks.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.isolation import create_migrated_database, create_vhost, delete_vhost, drop_database
from tests.stack import Stack, free_port


@dataclass(frozen=True)
class ExportedSpan:
    """One span as the collector received it (ids in lowercase hex, "" for no parent)."""

    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    links: tuple[tuple[str, str], ...]
    attributes: dict[str, Any]


class SpanCollector:
    """An OTLP/HTTP trace receiver on 127.0.0.1 (POST /v1/traces, protobuf bodies)."""

    def __init__(self) -> None:
        self.spans: list[ExportedSpan] = []
        self._lock = threading.Lock()
        collector = self

        class Receive(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    collector.add(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def add(self, request: ExportTraceServiceRequest) -> None:
        received: list[ExportedSpan] = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ExportedSpan(
                            service=resource.get("service.name", ""),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                            attributes={
                                a.key: a.value.string_value or a.value.int_value for a in span.attributes
                            },
                        )
                    )
        with self._lock:
            self.spans.extend(received)

    def of_trace(self, trace_id: str) -> list[ExportedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class WebhookReceiver:
    """Accepts webhook POSTs on 127.0.0.1 and keeps their JSON bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Receive(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class ObservedStack(Stack):
    """A `Stack` whose processes each get a metrics port of their own."""

    metrics_ports: dict[str, int] = field(default_factory=dict)

    def start(self, name: str) -> None:
        port = self.metrics_ports.setdefault(name, free_port())
        shared = self.env
        self.env = {**shared, "REELBATCH_METRICS_PORT": str(port)}
        try:
            super().start(name)
        finally:
            self.env = shared

    def metrics_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"


@pytest.fixture(scope="package")
def collector() -> Iterator[SpanCollector]:
    running = SpanCollector()
    yield running
    running.close()


@pytest.fixture(scope="package")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver()
    yield running
    running.close()


@pytest.fixture(scope="package")
def observed_stack(
    collector: SpanCollector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ObservedStack]:
    """Every service and two workers as processes, exporting traces to `collector`."""
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    workdir = Path(tmp_path_factory.mktemp("observed-stack"))
    running = ObservedStack(
        database_url,
        amqp_url,
        workdir,
        overrides={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_TRACES_EXPORTER": "otlp",
            "REELBATCH_LOG_LEVEL": "DEBUG",
            "REELBATCH_BACKLOG_SAMPLE_SECONDS": "0.5",
        },
        migrated=True,
    )
    try:
        running.start_all()
        yield running
    finally:
        codes = running.stop_all()
        drop_database(db_name)
        delete_vhost(vhost)
        unclean = {name: code for name, code in codes.items() if code != 0}
        assert not unclean, f"processes did not stop cleanly: {unclean}\n" + "\n".join(
            running.log(name) for name in unclean
        )
