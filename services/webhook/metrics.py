"""The webhook service's metrics and delivery spans.

- `reelbatch_webhook_attempts_total{result}`: every HTTP delivery attempt, by how it ended
  (`delivered`, `timeout`, `connection`, `3xx`, `4xx`, `5xx`, `blocked`).
- `delivery_span`: a span around one delivery attempt, child of the event that created the
  message (its stored traceparent), so a webhook sent minutes later still joins the batch's trace;
  the instrumented httpx POST is its child.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import metrics, propagate, trace

_meter = metrics.get_meter("reelbatch.webhook")
_attempts = _meter.create_counter("reelbatch_webhook_attempts", description="Webhook delivery attempts")
_tracer = trace.get_tracer("reelbatch.webhook")


def attempt_finished(result: str) -> None:
    """Counts one delivery attempt that ended with `result`."""
    _attempts.add(1, {"result": result})


@contextmanager
def delivery_span(message_id: str, traceparent: str) -> Iterator[trace.Span]:
    """The span of one delivery attempt, in the trace of the event that caused the message."""
    parent = propagate.extract({"traceparent": traceparent}) if traceparent else None
    with _tracer.start_as_current_span(
        "webhook deliver",
        context=parent,
        kind=trace.SpanKind.INTERNAL,
        attributes={"webhook.message_id": message_id},
    ) as span:
        yield span
