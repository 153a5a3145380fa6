"""Logs, traces and metrics, set up once per process.

- Logs: one JSON object per line on stderr, with `trace_id` and `span_id` of the current span.
- Traces: OpenTelemetry, configured by the standard `OTEL_*` variables. The exporter follows
  `OTEL_TRACES_EXPORTER` (`otlp`, `console` or `none`); when unset it is `otlp` if an OTLP
  endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
  otherwise `none` — spans are still created, so trace ids propagate, appear in logs and in the
  gateway's `X-Trace-ID` header. gRPC (client and server), SQLAlchemy and httpx are instrumented
  here; the gateway instruments its FastAPI app; the bus carries W3C `traceparent` in headers.
- Metrics: OpenTelemetry metrics read by a Prometheus reader. `metrics_text()` renders them (the
  gateway serves it at `/metrics`); `serve_metrics(port)` exposes them on a port of their own for
  the other processes.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime

import orjson
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from prometheus_client import REGISTRY, generate_latest, start_http_server

_configured_service: str | None = None


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the current trace and span ids."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        span = trace.get_current_span().get_span_context()
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Sends JSON logs to stderr; quiets chatty libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika", "uvicorn.access", "sqlalchemy.engine", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _span_exporter() -> SpanExporter | None:
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not choice:
        has_endpoint = any(
            os.environ.get(name)
            for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
        choice = "otlp" if has_endpoint else "none"
    if choice == "console":
        return ConsoleSpanExporter()
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return None


def configure_telemetry(service: str, level: str = "INFO") -> None:
    """Logging, tracing and metrics for this process (idempotent; one service name per process)."""
    global _configured_service
    configure_logging(service, level)
    if _configured_service is not None:
        return
    _configured_service = service
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    tracer_provider = TracerProvider(resource=resource)
    exporter = _span_exporter()
    if exporter is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()]))
    GrpcAioInstrumentorServer().instrument()  # type: ignore[no-untyped-call]
    GrpcAioInstrumentorClient().instrument()  # type: ignore[no-untyped-call]
    SQLAlchemyInstrumentor().instrument(enable_commenter=False)
    HTTPXClientInstrumentor().instrument()


def shutdown_telemetry() -> None:
    """Flushes spans still buffered (call before the process exits)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(timeout_millis=3000)
        provider.shutdown()


def metrics_text() -> bytes:
    """The process's metrics in Prometheus text format."""
    return generate_latest(REGISTRY)


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Exposes `/metrics` on a port of its own (processes without an HTTP server)."""
    start_http_server(port, addr=host)
