"""Benchmark 4: GET batch and GET tasks under load from a separate process on 127.0.0.1.

Two measurements on the same stack and batch (100 settled tasks, pages of 50 with signed links):

- capacity: a closed loop of 50 clients, each sending its next request as soon as the previous
  answer arrived; the rate it reaches is what the stack can serve (latency then includes queueing);
- latency at the target: an open loop offering 500 requests/s over 50 connections whatever the
  answers do, each latency counted from when the request was due (no coordinated omission).

Both are repeated on the floor (bench/read_floor.py): the same chain of processes (uvicorn ->
grpc.aio -> psycopg) with nothing of ours, reading the same rows, so the ratio says what our own
code costs on this machine. The target of issue 9 is p99 < 50 ms at 500 requests/s with no errors.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.harness import CpuMeter, StolenTime, cpu_figures, customer, report, running_stack
from bench.read_floor import running_floor

TARGET_RATE = 500.0
TARGET_P99_MS = 50.0


@dataclass(frozen=True)
class Plan:
    """Sizes of one run."""

    tasks: int
    clients: int
    capacity_seconds: float
    rate: float
    connections: int
    rate_seconds: float


FULL = Plan(tasks=100, clients=50, capacity_seconds=8.0, rate=TARGET_RATE, connections=50, rate_seconds=15.0)
QUICK = Plan(tasks=10, clients=5, capacity_seconds=1.0, rate=50.0, connections=5, rate_seconds=1.0)


def run_load(base_url: str, api_key: str, batch_id: str, *options: str) -> dict[str, Any]:
    """bench.read_load in its own process (the server's CPU is not shared with the client's)."""
    load = subprocess.run(
        [sys.executable, "-m", "bench.read_load", base_url, api_key, batch_id, *options],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(load.stdout.strip().splitlines()[-1])
    return result


@dataclass
class Measured:
    """Capacity, latency at the offered rate and CPU per request of one server chain."""

    capacity: dict[str, Any]
    at_rate: dict[str, Any]
    cpu: dict[str, float]
    cpu_at_rate: dict[str, float]
    stolen_at_rate: float


def measure(
    plan: Plan, base_url: str, api_key: str, batch_id: str, new_meter: Callable[[], CpuMeter]
) -> Measured:
    """The closed loop (capacity, CPU per request), then the open loop at the plan's rate."""
    meter = new_meter()
    capacity = run_load(
        base_url, api_key, batch_id, "--clients", str(plan.clients), "--seconds", str(plan.capacity_seconds)
    )
    cpu = meter.per_operation_ms(int(capacity["requests"]))
    stolen, meter = StolenTime(), new_meter()
    at_rate = run_load(
        base_url,
        api_key,
        batch_id,
        "--clients",
        str(plan.connections),
        "--seconds",
        str(plan.rate_seconds),
        "--rate",
        str(plan.rate),
    )
    cpu_at_rate = meter.per_operation_ms(int(at_rate["requests"]))
    return Measured(capacity, at_rate, cpu, cpu_at_rate, stolen.share())


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    with running_stack(workers=1) as stack:
        api, who = customer(stack, credits=10 * plan.tasks)
        created = api.create_batch(
            who, [{"prompt": f"read path {i}", "model": "sora-2"} for i in range(plan.tasks)]
        )
        assert created.status_code == 202, created.text
        batch_id = created.json()["batch_id"]
        api.wait_until_settled(who, batch_id)
        api.http.close()
        ours = measure(plan, stack.base_url, who.api_key, batch_id, lambda: CpuMeter.of(stack, broker=False))
        # The floor reads the same rows of the same database, loaded the same way.
        with running_floor(stack.database_url, who.tenant_id) as (floor_url, floor_pids):
            floor = measure(
                plan, floor_url, who.api_key, batch_id, lambda: CpuMeter(floor_pids, broker=False)
            )
    offered = ours.at_rate
    met = None
    if plan.rate == TARGET_RATE:
        met = (
            offered["p99_ms"] < TARGET_P99_MS
            and not offered["errors"]
            and offered["rps"] >= 0.95 * TARGET_RATE
        )
    target = f"p99 < {TARGET_P99_MS:.0f} ms at {TARGET_RATE:.0f} requests/s"
    verdict = "not checked at --quick sizes" if met is None else "met" if met else "not met"
    ours_cpu, floor_cpu = sum(ours.cpu.values()), sum(floor.cpu.values())
    ours_at_rate, floor_at_rate = sum(ours.cpu_at_rate.values()), sum(floor.cpu_at_rate.values())
    return report(
        "read_path",
        [
            ("requests", "GET batch and GET tasks?limit=50 alternately (a page of 50 signed video links)"),
            (
                "capacity",
                f"{plan.clients} clients, closed loop, {plan.capacity_seconds:.0f} s: "
                + _figures(ours.capacity),
            ),
            (
                f"at {plan.rate:.0f} req/s",
                f"open loop, {plan.connections} connections, {plan.rate_seconds:.0f} s: {_figures(offered)}",
            ),
            ("CPU per request", cpu_figures(ours.cpu) + " (capacity run)"),
            (
                "host CPU stolen",
                f"{ours.stolen_at_rate:.0%} of the cores during the {plan.rate:.0f} req/s run "
                f"(the floor's: {floor.stolen_at_rate:.0%}; the hypervisor's other guests)",
            ),
            ("floor capacity", _figures(floor.capacity)),
            (f"floor at {plan.rate:.0f} req/s", _figures(floor.at_rate)),
            ("floor CPU per request", cpu_figures(floor.cpu)),
            (
                f"CPU per request at {plan.rate:.0f}/s",
                f"ours {cpu_figures(ours.cpu_at_rate)}; the floor's {cpu_figures(floor.cpu_at_rate)}: "
                f"{ours_at_rate / floor_at_rate:.1f}x (requests spaced out wake every process per request)",
            ),
            (
                "ratio to the floor",
                f"CPU per request {ours_cpu / floor_cpu:.1f}x, capacity "
                f"{floor.capacity['rps'] / ours.capacity['rps']:.1f}x lower",
            ),
            ("target", f"{target}: {verdict}"),
        ],
        {
            "capacity": ours.capacity,
            "offered_rate": plan.rate,
            "at_rate": offered,
            "cpu_ms_per_request": ours.cpu,
            "floor": {"capacity": floor.capacity, "at_rate": floor.at_rate, "cpu_ms_per_request": floor.cpu},
            "cpu_ratio_to_floor": ours_cpu / floor_cpu,
            "cpu_ms_per_request_at_rate": ours.cpu_at_rate,
            "floor_cpu_ms_per_request_at_rate": floor.cpu_at_rate,
            "cpu_ratio_to_floor_at_rate": ours_at_rate / floor_at_rate,
            "stolen_share_at_rate": ours.stolen_at_rate,
            "floor_stolen_share_at_rate": floor.stolen_at_rate,
            "target_met": met,
        },
    )


def _figures(result: dict[str, Any]) -> str:
    return (
        f"{result['rps']:.0f} requests/s answered, p50 {result['p50_ms']:.1f} / p90 {result['p90_ms']:.1f} / "
        f"p99 {result['p99_ms']:.1f} ms, errors {result['errors']} of {result['requests']}"
    )


if __name__ == "__main__":
    main()
