"""What an SRE sees from the outside, in both ways of running: the trace id of every response,
the gateway's Prometheus endpoint, and the liveness and readiness probes."""

from __future__ import annotations

import re

from tests.embedded_stack import EmbeddedStack
from tests.rest_api import Api
from tests.stack_protocol import RunningStack


def test_every_response_carries_its_request_id_and_a_trace_id(api: Api) -> None:
    customer = api.new_customer(100)
    first = api.create_batch(
        customer, [{"prompt": "A harbour at dawn", "model": "sora-2"}], request_id="obs-req-1"
    )
    second = api.http.get("/api/enterprise/credits", headers=customer.headers)
    refused = api.http.get("/api/enterprise/credits", headers={"X-API-Key": "not-a-key"})

    assert first.status_code == 202, first.text
    assert first.headers["X-Request-ID"] == "obs-req-1"
    trace_ids = [response.headers.get("X-Trace-ID", "") for response in (first, second, refused)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", trace_id) for trace_id in trace_ids), trace_ids
    # One request, one trace: an error answer too, so a complaint about a 401 maps to a trace.
    assert len(set(trace_ids)) == 3
    assert refused.status_code == 401
    api.wait_until_settled(customer, first.json()["batch_id"])


def test_the_gateway_serves_prometheus_metrics_with_http_latency_and_domain_counters(
    api: Api, stack: RunningStack
) -> None:
    customer = api.new_customer(100)
    created = api.create_batch(customer, [{"prompt": "A quiet forest", "model": "sora-2"}])
    assert created.status_code == 202, created.text
    api.wait_until_settled(customer, created.json()["batch_id"])

    scraped = api.http.get("/metrics")

    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert re.search(r"^http_server_(request_)?duration\w*_count\{", scraped.text, re.MULTILINE)
    if isinstance(stack, EmbeddedStack):
        # One process: the gateway's endpoint covers every service, billing and workers included.
        assert re.search(
            r"^reelbatch_tasks_total\{.*outcome=\"succeeded\".*\} [1-9]", scraped.text, re.MULTILINE
        )
        assert re.search(r"^reelbatch_credits_captured_total\{.*\} [1-9]", scraped.text, re.MULTILINE)


def test_liveness_and_readiness_answer_while_everything_is_up(api: Api) -> None:
    live = api.http.get("/healthz")
    ready = api.http.get("/readyz")

    assert live.status_code == 200
    assert ready.status_code == 200
    assert set(ready.json()["dependencies"].values()) == {"up"}
