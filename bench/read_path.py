"""Benchmark 4: GET batch and GET tasks under load from a separate process on 127.0.0.1.

Two measurements on the same stack and batch (100 settled tasks, pages of 50 with signed links):

- capacity: a closed loop of 50 clients, each sending its next request as soon as the previous
  answer arrived; the rate it reaches is what the stack can serve (latency then includes queueing);
- latency at the target: an open loop offering 500 requests/s over 50 connections whatever the
  answers do, each latency counted from when the request was due (no coordinated omission);
  three runs of 15 s back to back, judged on the median of their p99s (see `measure`), each run
  reported with the CPU the host's other work and the hypervisor took meanwhile.

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

from bench.harness import CpuMeter, ForeignCpu, StolenTime, cpu_figures, customer, report, running_stack
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
    rate_runs: int


FULL = Plan(
    tasks=100,
    clients=50,
    capacity_seconds=8.0,
    rate=TARGET_RATE,
    connections=50,
    rate_seconds=15.0,
    rate_runs=3,
)
QUICK = Plan(
    tasks=10, clients=5, capacity_seconds=1.0, rate=50.0, connections=5, rate_seconds=1.0, rate_runs=3
)


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


@dataclass(frozen=True)
class RateRun:
    """One open-loop run at the offered rate, and what the host did meanwhile."""

    figures: dict[str, Any]
    stolen: float  # share of the cores the hypervisor gave other guests
    foreign: float  # cores used by work outside the measured chain and the load generator


@dataclass
class Measured:
    """Capacity, latency at the offered rate and CPU per request of one server chain."""

    capacity: dict[str, Any]
    runs: list[RateRun]
    cpu: dict[str, float]
    cpu_at_rate: dict[str, float]

    @property
    def at_rate(self) -> dict[str, Any]:
        """The run whose p99 is the median of the runs' (the middle one of three)."""
        ordered = sorted(self.runs, key=lambda run: run.figures["p99_ms"])
        return ordered[(len(ordered) - 1) // 2].figures

    def every_run_answered(self, rate: float) -> bool:
        """No errors and the offered rate kept up in every run."""
        return all(not run.figures["errors"] and run.figures["rps"] >= 0.95 * rate for run in self.runs)


def measure(
    plan: Plan, base_url: str, api_key: str, batch_id: str, new_meter: Callable[[], CpuMeter]
) -> Measured:
    """The closed loop (capacity, CPU per request), then `plan.rate_runs` open loops at the rate.

    Several runs, and the median of their p99s, because one run is at the host's mercy: on these
    2 cores three-quarters busy at 500 requests/s, half a second of other work (the broker's
    epmd check boots an Erlang VM every minute or two) or of stolen time stalls every request in flight.
    Three back-to-back 15 s runs fit in one minute, so that check lands in one of them at most;
    every run's figures are reported, so the one it hit is seen, not hidden.
    """
    meter = new_meter()
    capacity = run_load(
        base_url, api_key, batch_id, "--clients", str(plan.clients), "--seconds", str(plan.capacity_seconds)
    )
    cpu = meter.per_operation_ms(int(capacity["requests"]))
    runs: list[RateRun] = []
    meter, answered = new_meter(), 0
    for _ in range(plan.rate_runs):
        stolen, foreign, run_meter = StolenTime(), ForeignCpu(), new_meter()
        figures = run_load(
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
        runs.append(RateRun(figures, stolen.share(), foreign.cores(sum(run_meter.seconds().values()))))
        answered += int(figures["requests"])
    return Measured(capacity, runs, cpu, meter.per_operation_ms(answered))


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
        met = offered["p99_ms"] < TARGET_P99_MS and ours.every_run_answered(TARGET_RATE)
    target = f"median p99 of the runs < {TARGET_P99_MS:.0f} ms at {TARGET_RATE:.0f} requests/s, no errors"
    verdict = "not checked at --quick sizes" if met is None else "met" if met else "not met"
    ours_cpu, floor_cpu = sum(ours.cpu.values()), sum(floor.cpu.values())
    ours_at_rate, floor_at_rate = sum(ours.cpu_at_rate.values()), sum(floor.cpu_at_rate.values())
    at_rate = f"{plan.rate:.0f} req/s"
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
                f"at {at_rate}",
                f"open loop, {plan.connections} connections, {plan.rate_runs} runs of "
                f"{plan.rate_seconds:.0f} s; the median run: {_figures(offered)}",
            ),
            (f"runs at {at_rate}", _runs(ours.runs)),
            ("CPU per request", cpu_figures(ours.cpu) + " (capacity run)"),
            ("floor capacity", _figures(floor.capacity)),
            (f"floor at {at_rate}", f"the median run: {_figures(floor.at_rate)}"),
            (f"floor runs at {at_rate}", _runs(floor.runs)),
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
            "runs_at_rate": [_run_record(run) for run in ours.runs],
            "cpu_ms_per_request": ours.cpu,
            "floor": {
                "capacity": floor.capacity,
                "at_rate": floor.at_rate,
                "runs_at_rate": [_run_record(run) for run in floor.runs],
                "cpu_ms_per_request": floor.cpu,
            },
            "cpu_ratio_to_floor": ours_cpu / floor_cpu,
            "cpu_ms_per_request_at_rate": ours.cpu_at_rate,
            "floor_cpu_ms_per_request_at_rate": floor.cpu_at_rate,
            "cpu_ratio_to_floor_at_rate": ours_at_rate / floor_at_rate,
            "target_met": met,
        },
    )


def _runs(runs: list[RateRun]) -> str:
    """Each run's p99, with what the host took meanwhile: the figures a miss is read against."""
    return "; ".join(
        f"p99 {run.figures['p99_ms']:.1f} ms (stolen {run.stolen:.0%} of the cores, "
        f"other work {run.foreign:.2f} cores)"
        for run in runs
    )


def _run_record(run: RateRun) -> dict[str, Any]:
    return {**run.figures, "stolen_share": run.stolen, "foreign_cores": run.foreign}


def _figures(result: dict[str, Any]) -> str:
    return (
        f"{result['rps']:.0f} requests/s answered, p50 {result['p50_ms']:.1f} / p90 {result['p90_ms']:.1f} / "
        f"p99 {result['p99_ms']:.1f} ms, errors {result['errors']} of {result['requests']}"
    )


if __name__ == "__main__":
    main()
