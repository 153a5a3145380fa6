"""The batch service's domain metrics (batches by status, tasks by outcome, task durations) and
the span around a task's provider calls.

- `reelbatch_batches_total{status}`: batches that reached a status (queued, rejected, and the
  final completed/partial/failed/cancelled), counted by the process that made the transition.
- `reelbatch_tasks_total{outcome, failure_type}`: task outcomes written by workers (a late
  outcome whose claim was lost is discarded and not counted).
- `reelbatch_task_duration_seconds{model}`: from the first claim to the final outcome.
- `reelbatch_provider_quota_exhausted_total{provider, model}`: answers saying our provider
  account is out of quota (OpenAI's `insufficient_quota`): an operator must act.
- `reelbatch_breaker_transitions_total{model, state}`: a model's circuit breaker opened or
  closed (ADR-113); `open` means its provider is down and its tasks wait.
- `reelbatch_route_failovers_total{model, provider}`: attempts sent to a route other than the
  model's first (its first route was down, out of quota or out of rate budget, ADR-149).
- `reelbatch_rate_budget_spent_total{budget}`: draws refused by a route's requests-per-minute
  budget (ADR-148): tasks waited instead of meeting the provider's 429.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from opentelemetry import metrics, trace

from services.batch.domain.batch import BatchStatus, TaskRecord

_meter = metrics.get_meter("reelbatch.batch")
_tracer = trace.get_tracer("reelbatch.batch")
_batches = _meter.create_counter("reelbatch_batches", description="Batches that reached a status")
_tasks = _meter.create_counter(
    "reelbatch_tasks", description="Tasks that reached a final state, by outcome and failure_type"
)
_task_duration = _meter.create_histogram(
    "reelbatch_task_duration",
    unit="s",
    description="Time from a task's first claim to its final outcome, per model",
    # Simulated jobs take well under a second, real providers minutes.
    explicit_bucket_boundaries_advisory=[0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
)


_quota_exhausted = _meter.create_counter(
    "reelbatch_provider_quota_exhausted",
    description="Provider answers saying our account is out of quota, by provider and model",
)


def provider_quota_exhausted(provider: str, model: str) -> None:
    """Counts one answer of `provider` saying our account is out of quota for `model`."""
    _quota_exhausted.add(1, {"provider": provider, "model": model})


_breaker_transitions = _meter.create_counter(
    "reelbatch_breaker_transitions",
    description="A model's circuit breaker opened or closed, by model and the state reached",
)


def breaker_changed(model: str, state: str) -> None:
    """A model's circuit breaker reached `state` (open or closed)."""
    _breaker_transitions.add(1, {"model": model, "state": state})


_route_failovers = _meter.create_counter(
    "reelbatch_route_failovers",
    description="Attempts sent to a route other than the model's first, by model and provider",
)


def route_failover(model: str, provider: str) -> None:
    """An attempt of `model` went to its fallback route at `provider`."""
    _route_failovers.add(1, {"model": model, "provider": provider})


_rate_budget_spent = _meter.create_counter(
    "reelbatch_rate_budget_spent",
    description="Draws refused by a route's requests-per-minute budget, by budget",
)


def rate_budget_spent(budget: str) -> None:
    """A draw from `budget` was refused: the window's calls are spent."""
    _rate_budget_spent.add(1, {"budget": budget})


def batch_reached(status: BatchStatus) -> None:
    """Counts one batch entering `status`."""
    _batches.add(1, {"status": status.value})


def batches_reached(statuses: Iterable[BatchStatus]) -> None:
    """Counts batches entering the given statuses (one each)."""
    for status in statuses:
        batch_reached(status)


def tasks_finished(tasks: Iterable[TaskRecord]) -> None:
    """Counts final task outcomes and their durations."""
    # One add per (outcome, failure_type) of the group, not one per task.
    counted: Counter[tuple[str, str]] = Counter()
    for task in tasks:
        counted[(task.status.value, task.failure_type or "")] += 1
        if task.started_at is not None and task.finished_at is not None:
            seconds = (task.finished_at - task.started_at).total_seconds()
            _task_duration.record(max(seconds, 0.0), {"model": task.model})
    for (outcome, failure_type), count in counted.items():
        _tasks.add(count, {"outcome": outcome, "failure_type": failure_type})


@contextmanager
def provider_span(task_id: object, model: str, provider: str) -> Iterator[trace.Span]:
    """The span of a task's work at its provider, every attempt and backoff included."""
    with _tracer.start_as_current_span(
        f"provider generate {model}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "reelbatch.task_id": str(task_id),
            "reelbatch.model": model,
            "reelbatch.provider": provider,
        },
    ) as span:
        yield span


def describe_outcome(span: trace.Span, outcome: str, attempts: int, failure_type: str | None) -> None:
    """Records a task's outcome on its provider span (a failed task marks the span as an error)."""
    span.set_attributes(
        {
            "reelbatch.outcome": outcome,
            "reelbatch.attempts": attempts,
            "reelbatch.failure_type": failure_type or "",
        }
    )
    if failure_type:
        span.set_status(trace.StatusCode.ERROR, failure_type)
