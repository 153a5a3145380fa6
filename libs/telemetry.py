"""Logs, traces and metrics, set up once per process.

- Logs: one JSON object per line on stderr, with `trace_id` and `span_id` of the current span.
- Traces: OpenTelemetry, configured by the standard `OTEL_*` variables. The exporter follows
  `OTEL_TRACES_EXPORTER` (`otlp`, `console` or `none`); when unset it is `otlp` if an OTLP
  endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
  otherwise `none` — spans are then not recorded (sampler off) but still carry ids, so trace ids
  propagate, appear in logs and in the gateway's `X-Trace-ID` header. With an exporter the sampler
  follows `OTEL_TRACES_SAMPLER` (default: parent-based, always on). SQLAlchemy and httpx are
  instrumented here, only when there is an exporter (ADR-024: without one they would record
  nothing, and importing them costs every process ~1 s at start); gRPC calls by OpenTelemetry's
  gRPC instrumentation (its aio interceptors, installed by libs.rpc); the gateway by its ASGI
  instrumentation (ADR-061); the bus carries W3C `traceparent` in headers.
- Metrics: OpenTelemetry metrics read by a Prometheus reader. `metrics_text()` renders them (the
  gateway serves it at `/metrics`); `serve_metrics(port)` exposes them on a port of their own for
  the other processes. gRPC latency comes from libs.rpc, HTTP latency from the ASGI instrumentation;
  queue depth, queue lag and outbox backlog from `BacklogGauges`, which samples them in the
  background (gauge callbacks are synchronous, so they read the last sample instead of querying).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import REGISTRY, generate_latest, start_http_server

from libs.lifecycle import wait_at_most

if TYPE_CHECKING:
    from libs.messaging.contract import Backlog, Bus, QueueSpec
    from libs.messaging.outbox import OutboxRelay

log = logging.getLogger(__name__)

_configured_service: str | None = None

# The ASGI instrumentation labels its `http.server.*` metrics with the Host header too, which any
# client chooses (one series per spelling): only method, route template, status and scheme stay.
_HTTP_SERVER_VIEW = View(
    instrument_name="http.server.*",
    attribute_keys={"http.method", "http.target", "http.status_code", "http.scheme"},
)


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
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service})
    exporter = _span_exporter()
    if exporter is None:
        # Nothing would receive the spans: keep the ids (propagation, X-Trace-ID, log correlation)
        # but record nothing, which saves the instrumentations' attribute work on every call.
        tracer_provider = TracerProvider(resource=resource, sampler=ALWAYS_OFF)
    else:
        # The sampler follows OTEL_TRACES_SAMPLER (default: parent-based, always on).
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(
        MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()], views=[_HTTP_SERVER_VIEW])
    )
    if exporter is not None:
        _instrument_sqlalchemy_and_httpx()


def _instrument_sqlalchemy_and_httpx() -> None:
    """Spans for every SQL statement and outgoing HTTP request (only worth it with an exporter).

    Imported here, not at the top: the instrumentors import all of SQLAlchemy (which the gateway
    does not otherwise load) and httpx with its command line (rich, pygments, click when they are
    installed), about 1 s of CPU at every process start, for spans that, without an exporter,
    nobody records.
    """
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # The instrumentation works on SQLAlchemy 2.1 but its declared range stops at 2.0.
    SQLAlchemyInstrumentor().instrument(enable_commenter=False, skip_dep_check=True)
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


def start_metrics_endpoint(port: int, host: str) -> bool:
    """`serve_metrics` unless `port` is 0; a busy port is logged, not fatal (metrics are optional)."""
    if port == 0:
        return False
    try:
        serve_metrics(port, host)
    except OSError as error:
        log.warning("metrics endpoint not started on %s:%d: %s", host, port, error)
        return False
    log.info("metrics on http://%s:%d/metrics", host, port)
    return True


BacklogSource = Callable[[], Awaitable["Backlog"]]


class BacklogGauges:
    """Queue depth, queue lag and outbox backlog as observable gauges, sampled every few seconds.

    Exposed as `reelbatch_queue_depth_messages` / `reelbatch_queue_lag_seconds` (label `queue`)
    and `reelbatch_outbox_backlog_events` / `reelbatch_outbox_lag_seconds` (label `outbox`).
    Lag is the age of the oldest waiting message; RabbitMQ does not report it, so for RabbitMQ
    queues only the depth is exported.
    """

    def __init__(self) -> None:
        self._queues: dict[str, BacklogSource] = {}
        self._outboxes: dict[str, BacklogSource] = {}
        self._last: dict[tuple[str, str], Backlog] = {}
        self._running = False
        meter = metrics.get_meter("reelbatch.backlog")
        for name, unit, description, kind, field in (
            ("reelbatch_queue_depth_messages", "1", "Messages waiting in a queue", "queue", "messages"),
            ("reelbatch_queue_lag", "s", "Age of the oldest message in a queue", "queue", "age"),
            (
                "reelbatch_outbox_backlog_events",
                "1",
                "Events not yet published by the relay",
                "outbox",
                "messages",
            ),
            ("reelbatch_outbox_lag", "s", "Age of the oldest unpublished event", "outbox", "age"),
        ):
            meter.create_observable_gauge(
                name, callbacks=[self._observer(kind, field)], unit=unit, description=description
            )

    def watch_queues(self, bus: Bus, queues: Sequence[QueueSpec]) -> BacklogGauges:
        """Samples the depth (and lag, where the bus knows it) of `queues`."""
        for queue in queues:
            self._queues[queue.name] = lambda queue=queue: bus.backlog(queue)  # type: ignore[misc]
        return self

    def watch_outbox(self, name: str, relay: OutboxRelay) -> BacklogGauges:
        """Samples the backlog of the outbox `relay` publishes."""
        self._outboxes[name] = relay.backlog
        return self

    def _observer(self, kind: str, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            for (sampled_kind, name), backlog in list(self._last.items()):
                if sampled_kind != kind:
                    continue
                value = backlog.messages if field == "messages" else backlog.oldest_age_seconds
                if value is not None:
                    yield Observation(value, {kind: name})

        return observe

    async def sample_once(self) -> None:
        """Samples every source once; a source that fails keeps no stale value."""
        sources = [("queue", n, s) for n, s in self._queues.items()]
        sources += [("outbox", n, s) for n, s in self._outboxes.items()]
        results = await asyncio.gather(*(source() for _, _, source in sources), return_exceptions=True)
        for (kind, name, _), result in zip(sources, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                self._last.pop((kind, name), None)
                log.debug("backlog of %s %s not sampled: %r", kind, name, result)
            else:
                self._last[(kind, name)] = result

    async def run(self, stopping: asyncio.Event, interval_seconds: float = 5.0) -> None:
        """Samples until `stopping` is set (a second caller in the same process only waits)."""
        if self._running:
            await stopping.wait()
            return
        self._running = True
        try:
            await self._sample_until(stopping, interval_seconds)
        finally:
            self._running = False

    async def _sample_until(self, stopping: asyncio.Event, interval_seconds: float) -> None:
        while not stopping.is_set():
            await self.sample_once()
            try:
                await wait_at_most(stopping.wait(), interval_seconds)
            except TimeoutError:
                pass


_backlog_gauges: BacklogGauges | None = None


def backlog_gauges() -> BacklogGauges:
    """The process's one `BacklogGauges` (services embedded in one process share it)."""
    global _backlog_gauges
    if _backlog_gauges is None:
        _backlog_gauges = BacklogGauges()
    return _backlog_gauges
