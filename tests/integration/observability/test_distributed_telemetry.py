"""Traces, metrics and logs of the real processes: one trace per request, metrics that match a
finished seed demo, and logs that never contain a secret."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from services.launcher.demo import DEMO_API_KEY, run_demo
from tests.integration.observability.conftest import ObservedStack, SpanCollector, WebhookReceiver
from tests.rest_api import Api, Customer
from tests.stack import ADMIN_TOKEN

PROCESSES = ("billing", "batch", "webhook", "worker-0", "worker-1")
SERVICES = {"gateway", "billing", "batch", "worker", "webhook"}


T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a Prometheus endpoint, keyed by (name, labels without otel_scope_*)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            labels = frozenset((k, v) for k, v in sample.labels.items() if not k.startswith("otel_scope"))
            samples[(sample.name, labels)] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= have)


@dataclass
class MetricsView:
    """Scrapes of every non-gateway process, summed per metric."""

    stack: ObservedStack

    def snapshot(self) -> dict[str, Samples]:
        return {name: scrape(self.stack.metrics_url(name)) for name in PROCESSES}

    @staticmethod
    def delta(before: dict[str, Samples], after: dict[str, Samples], name: str, **labels: str) -> float:
        return sum(
            total(after[process], name, **labels) - total(before[process], name, **labels)
            for process in after
        )


@pytest.fixture(scope="module")
def traced_customer(observed_stack: ObservedStack) -> Iterator[tuple[Api, Customer]]:
    api = Api(observed_stack.base_url)
    yield api, api.new_customer(1_000)
    api.http.close()


@pytest.fixture(scope="module")
def demo_metrics(observed_stack: ObservedStack) -> tuple[dict[str, Samples], dict[str, Samples]]:
    """Metrics of every process before and after the seed demo ran to its end."""
    view = MetricsView(observed_stack)
    observed_stack.run_cli("seed-demo")
    before = view.snapshot()
    assert run_demo(observed_stack.base_url, timeout_seconds=60) == 0
    # Billing counts a refund when it commits it; the demo returns once the batch is settled.
    wait_for(
        lambda: view.delta(before, view.snapshot(), "reelbatch_credits_refunded_total") >= 10,
        10,
        "the refund to be counted",
    )
    return before, view.snapshot()


def test_one_create_batch_request_is_one_trace_across_every_service(
    observed_stack: ObservedStack,
    collector: SpanCollector,
    webhook_receiver: WebhookReceiver,
    traced_customer: tuple[Api, Customer],
) -> None:
    api, customer = traced_customer
    created = api.http.post(
        "/api/enterprise/video-batch",
        json={
            "items": [
                {"prompt": "A lighthouse", "model": "sora-2"},
                {"prompt": "A storm #fail", "model": "sora-2"},
            ],
            "webhook_url": webhook_receiver.url,
        },
        headers=customer.headers,
    )
    assert created.status_code == 202, created.text
    trace_id = created.headers["X-Trace-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    batch_id = created.json()["batch_id"]
    api.wait_until_settled(customer, batch_id)
    wait_for(
        lambda: any(body["data"].get("batch_id") == batch_id for body in webhook_receiver.bodies),
        20,
        "the batch webhook",
    )

    def hops(spans: list[Any], consumer_service: str, producer_service: str) -> bool:
        """A CONSUMER span of one service whose parent (or link) is a span of another."""
        by_id = {span.span_id: span for span in spans}
        for span in spans:
            if span.service != consumer_service or span.kind != Span.SPAN_KIND_CONSUMER:
                continue
            sources = [span.parent_span_id, *(linked for _, linked in span.links)]
            if any(by_id.get(source) and by_id[source].service == producer_service for source in sources):
                return True
        return False

    broker_hops = {
        "the dispatch hop (batch -> RabbitMQ -> worker)": ("worker", "batch"),
        "the outcome hop (worker -> RabbitMQ -> billing)": ("billing", "worker"),
        "the settlement hop (billing -> RabbitMQ -> webhook)": ("webhook", "billing"),
    }

    def every_service_reported() -> list[Any] | None:
        # Each process exports its spans on its own schedule: a producer's span can reach the
        # collector after its consumer's, so the hops are waited for, not just the services.
        spans = collector.of_trace(trace_id)
        services = {span.service for span in spans}
        delivered = any(span.name == "webhook deliver" for span in spans)
        linked = all(hops(spans, *pair) for pair in broker_hops.values())
        return spans if services >= SERVICES and delivered and linked else None

    try:
        spans = wait_for(every_service_reported, 20, f"spans of {sorted(SERVICES)} in trace {trace_id}")
    except AssertionError:
        spans = collector.of_trace(trace_id)  # the assertions below say what is missing
    by_id = {span.span_id: span for span in spans}
    for hop, pair in broker_hops.items():
        assert hops(spans, *pair), f"{hop} is not linked"
    assert {span.service for span in spans} >= SERVICES
    assert any(span.name == "webhook deliver" for span in spans)
    gateway_root = [s for s in spans if s.service == "gateway" and not s.parent_span_id]
    assert gateway_root, "the trace starts at the gateway's HTTP span"

    def rpc_hop(caller: str, served: str, method: str) -> bool:
        """A SERVER span of `served` for `method` whose parent is a CLIENT span of `caller`."""
        for span in spans:
            if span.service == served and span.kind == Span.SPAN_KIND_SERVER and span.name == method:
                parent = by_id.get(span.parent_span_id)
                if parent and parent.service == caller and parent.kind == Span.SPAN_KIND_CLIENT:
                    return True
        return False

    assert rpc_hop("gateway", "batch", "/reelbatch.proto.batch.v1.BatchService/CreateBatch")
    assert rpc_hop("batch", "billing", "/reelbatch.proto.billing.v1.BillingService/ReserveMany")
    provider_spans = [s for s in spans if s.name == "provider generate sora-2"]
    assert {s.attributes.get("reelbatch.outcome") for s in provider_spans} == {"succeeded", "failed"}
    # With an exporter, SQLAlchemy and httpx are instrumented (libs.telemetry installs them only then).
    assert any(s.attributes.get("db.system") == "postgresql" for s in spans), "no SQL statement span"
    deliveries = {s.span_id for s in spans if s.name == "webhook deliver"}
    assert any(
        s.kind == Span.SPAN_KIND_CLIENT and s.parent_span_id in deliveries and s.name.startswith("POST")
        for s in spans
    ), "no HTTP client span under a webhook delivery"


def test_every_process_serves_metrics_matching_the_finished_seed_demo(
    observed_stack: ObservedStack, demo_metrics: tuple[dict[str, Samples], dict[str, Samples]]
) -> None:
    before, after = demo_metrics
    delta = MetricsView.delta
    assert delta(before, after, "reelbatch_tasks_total", outcome="succeeded") == 19
    assert delta(before, after, "reelbatch_tasks_total", outcome="failed", failure_type="content_policy") == 1
    assert delta(before, after, "reelbatch_task_duration_seconds_count", model="sora-2") == 20
    assert delta(before, after, "reelbatch_credits_frozen_total") == 200
    assert delta(before, after, "reelbatch_credits_captured_total") == 190
    assert delta(before, after, "reelbatch_credits_refunded_total") == 10
    assert delta(before, after, "reelbatch_batches_total", status="queued") == 1
    assert delta(before, after, "reelbatch_batches_total", status="partial") == 1
    # Step 6 of the demo: a batch the tenant cannot afford is rejected.
    assert delta(before, after, "reelbatch_batches_total", status="rejected") == 1

    batch = after["batch"]
    assert ("reelbatch_queue_depth_messages", frozenset({("queue", "batch.dispatch")})) in batch
    assert ("reelbatch_outbox_backlog_events", frozenset({("outbox", "batch")})) in batch
    assert ("reelbatch_outbox_backlog_events", frozenset({("outbox", "billing")})) in after["billing"]
    assert total(batch, "rpc_server_duration_seconds_count", rpc_method="CreateBatch") >= 1

    gateway = httpx.get(f"{observed_stack.base_url}/metrics", timeout=5)
    assert gateway.status_code == 200
    assert "http_server_duration" in gateway.text or "http_server_request_duration" in gateway.text


def test_debug_logs_of_every_process_are_json_and_hold_no_secret(
    observed_stack: ObservedStack,
    traced_customer: tuple[Api, Customer],
    demo_metrics: tuple[dict[str, Samples], dict[str, Samples]],
) -> None:
    api, customer = traced_customer
    secret = api.http.get("/api/enterprise/webhook-secret", headers=customer.headers)
    assert secret.status_code == 200, secret.text
    webhook_secret = secret.json()["secret"]
    assert webhook_secret.startswith("whsec_")
    forbidden = {"api key": customer.api_key, "demo api key": DEMO_API_KEY, "admin token": ADMIN_TOKEN}
    forbidden["webhook secret"] = webhook_secret
    logs = sorted(observed_stack.workdir.glob("*.log"))
    assert {path.stem for path in logs} >= {"gateway", *PROCESSES}
    lines = 0
    for path in logs:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            lines += 1
            entry = json.loads(line)  # one JSON object per line, nothing else
            assert {"ts", "level", "service", "message"} <= entry.keys(), f"{path.name}:{number}"
            for what, value in forbidden.items():
                assert value not in line, f"{what} in {path.name}:{number}"
            assert not re.search(r"whsec_[A-Za-z0-9+/=]{8,}", line), (
                f"a webhook secret in {path.name}:{number}"
            )
    assert lines > 50, "debug logging was on: the processes should have said something"
