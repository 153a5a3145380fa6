"""Soak 2: one worker process holding many slow provider jobs in flight (provider-bound scale).

System: the distributed stack with ONE worker; one model served by Replicate's API as the tests'
fake implements it (`tests.fakes.replicate`), run in a process of its own on 127.0.0.1
(`bench.fake_provider`) so its CPU is not the worker's. Every job renders for `--job-seconds`
(default 120 s) after its creation; the adapter polls with its real back-off (first poll after
`--poll-seconds`, x1.5 each poll up to `--poll-max-seconds`: production's 5 s and 30 s). A batch
of `--jobs` items (default 10,000) at a provider limit of as many jobs in flight.

Ideal makespan: the job time plus the largest poll interval (the last poll may come up to one
interval after the job ends), with no per-minute rate limit. Targets: makespan <= 1.1x the ideal;
the worker under 1 GB of RSS and under half a core while it holds the jobs. Reported per job in
flight: RSS and CPU (the fake's CPU is reported apart, never counted).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field

import psutil

from bench.fake_provider import fake_provider_process, provider_stats
from bench.harness import CpuMeter, Stopwatch, customer, report, running_stack, video_directory
from tests.fakes import replicate
from tests.provider_jobs_stack import failures
from tests.stack import free_port

MODEL = "veo-3"
# A soak run is minutes long; on a host shared with others the stack may take one to start.
READY_TIMEOUT_SECONDS = 300.0
CREDITS_PER_VIDEO = 20
CHUNK = 100
SAMPLE_SECONDS = 1.0
PROGRESS_SECONDS = 10
MAKESPAN_TARGET = 1.1
RSS_TARGET_MB = 1024
CPU_TARGET_CORES = 0.5


@dataclass
class Samples:
    """What a sampler thread saw each second: the worker's RSS and CPU, the fake's jobs in flight."""

    rss_mb: list[float] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)
    # (monotonic time, worker CPU seconds, jobs in flight at the fake)
    cpu: list[tuple[float, float, int]] = field(default_factory=list)


def _sample(worker: psutil.Process, fake_url: str, samples: Samples, stop: threading.Event) -> None:
    started = time.monotonic()
    printed = 0
    while not stop.wait(SAMPLE_SECONDS):
        try:
            rss = worker.memory_info().rss / 2**20
            times = worker.cpu_times()
            stats = provider_stats(fake_url)
        except Exception:
            continue
        in_flight = int(stats["in_flight"])
        samples.rss_mb.append(rss)
        samples.in_flight.append(in_flight)
        samples.cpu.append((time.monotonic(), times.user + times.system, in_flight))
        elapsed = time.monotonic() - started
        if elapsed >= printed + PROGRESS_SECONDS:
            # The shape of the run: how fast jobs start, how long they are all held, how they end.
            printed = int(elapsed // PROGRESS_SECONDS) * PROGRESS_SECONDS
            print(
                f"  t={elapsed:5.0f}s created {int(stats['jobs']):,} in flight {in_flight:,}"
                f" finished {int(stats['finished']):,} worker {rss:.0f} MB"
                f" {times.user + times.system:.1f} s CPU",
                flush=True,
            )


def holding_cores(samples: Samples, jobs: int) -> tuple[float, float]:
    """The worker's CPU in cores while (almost) every job was in flight at the provider, and
    for how many seconds that lasted: between the first and the last sample holding >= 99%."""
    holding = [(at, cpu) for at, cpu, in_flight in samples.cpu if in_flight >= 0.99 * jobs]
    if len(holding) < 2:
        return float("nan"), 0.0
    (first_at, first_cpu), (last_at, last_cpu) = holding[0], holding[-1]
    return (last_cpu - first_cpu) / (last_at - first_at), last_at - first_at


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="50 jobs of 2 s (seconds)")
    parser.add_argument("--jobs", type=int, help="items, all in flight at once (default 10,000)")
    parser.add_argument("--job-seconds", type=float, help="render time of every job (default 120)")
    parser.add_argument("--poll-seconds", type=float, help="first poll interval (default 5)")
    parser.add_argument("--poll-max-seconds", type=float, help="largest poll interval (default 30)")
    parser.add_argument("--videos-on-disk", action="store_true")
    parser.add_argument("--worker-log", help="copy the worker's whole log here at the end")
    parser.add_argument(
        "--connections", type=int, default=100, help="the worker's pooled connections to the provider"
    )
    args = parser.parse_args(argv)
    jobs = args.jobs or (50 if args.quick else 10_000)
    job_seconds = args.job_seconds or (2.0 if args.quick else 120.0)
    poll = args.poll_seconds or (0.5 if args.quick else 5.0)
    poll_max = args.poll_max_seconds or (1.0 if args.quick else 30.0)
    pricing = {
        MODEL: {
            "provider": "replicate",
            "provider_model": "google/veo-3",
            "credits_per_video": CREDITS_PER_VIDEO,
            "provider_cost_usd_micros": 84_000,
            "max_in_flight": jobs,
        }
    }
    chunk = min(CHUNK, jobs)
    windows = max(1, 2 * jobs // chunk)
    with (
        fake_provider_process(free_port(), job_seconds) as (fake_url, fake_pid),
        video_directory(args.videos_on_disk) as (videos, in_memory),
        running_stack(
            workers=1,
            ready_timeout=READY_TIMEOUT_SECONDS,
            asset_dir=videos,
            pricing=json.dumps(pricing),
            replicate_api_token=replicate.API_TOKEN,
            replicate_base_url=fake_url,
            provider_poll_seconds=str(poll),
            provider_poll_max_seconds=str(poll_max),
            provider_connections=str(args.connections),
            # Never the attempt's timeout: the provider's job time, every poll, and a margin.
            provider_timeout_seconds=str(job_seconds + 4 * poll_max + 60),
            # One worker holds the whole limit: enough concurrency, prefetched chunks and window.
            worker_concurrency=str(2 * jobs),
            worker_prefetch=str(windows),
            dispatch_chunk_size=str(chunk),
            dispatch_window_chunks=str(windows),
            tenant_dispatch_window_chunks=str(2 * windows),
        ) as stack,
    ):
        api, who = customer(stack, credits=jobs * CREDITS_PER_VIDEO)
        worker = psutil.Process(stack.processes["worker-0"].pid)
        rss_idle = worker.memory_info().rss / 2**20
        fake = psutil.Process(fake_pid)
        fake_cpu_before = sum(fake.cpu_times()[:2])
        meter = CpuMeter({"worker-0": worker.pid})
        samples, stop = Samples(), threading.Event()
        sampler = threading.Thread(target=_sample, args=(worker, fake_url, samples, stop), daemon=True)
        sampler.start()
        with Stopwatch() as watch:
            created = api.create_batch(
                who, [{"prompt": f"slow take {i}", "model": MODEL} for i in range(jobs)]
            )
            assert created.status_code == 202, created.text
            batch = api.wait_until_settled(
                who, created.json()["batch_id"], timeout=10 * (job_seconds + poll_max) + 600, poll_seconds=0.5
            )
        cpu = meter.seconds()
        failed = failures(stack)
        if args.worker_log:
            shutil.copyfile(stack.workdir / "worker-0.log", args.worker_log)
        worker_log = stack.log("worker-0") if failed else ""
        stop.set()
        sampler.join()
        fake_cpu = sum(fake.cpu_times()[:2]) - fake_cpu_before
        stats = provider_stats(fake_url)
        load = os.getloadavg()
        api.http.close()
    ideal = job_seconds + poll_max
    ratio = watch.seconds / ideal
    peak_rss = max(samples.rss_mb, default=rss_idle)
    peak_in_flight = max(samples.in_flight, default=0)
    cores_holding, holding_seconds = holding_cores(samples, jobs)
    cores_overall = cpu["worker-0"] / watch.seconds
    per_job_kb = (peak_rss - rss_idle) * 1024 / max(peak_in_flight, 1)
    met = {
        "makespan": ratio <= MAKESPAN_TARGET,
        "rss": peak_rss < RSS_TARGET_MB,
        "cpu": cores_overall < CPU_TARGET_CORES,
    }
    result = report(
        "soak_provider_bound",
        [
            (
                "jobs / job time / limit",
                f"{jobs:,} / {job_seconds:g} s / {jobs:,} in flight, one worker process",
            ),
            ("poll back-off", f"{poll:g} s, x1.5 per poll, at most {poll_max:g} s"),
            ("pooled connections to the provider", f"{args.connections}"),
            ("peak jobs in flight at the provider", f"{peak_in_flight:,} (the fake's own count)"),
            ("makespan (POST -> settled)", f"{watch.seconds:.1f} s"),
            ("ideal: job time + largest poll interval", f"{ideal:.1f} s"),
            ("ratio", f"{ratio:.2f}x (target <= {MAKESPAN_TARGET}x)"),
            ("worker RSS idle -> peak", f"{rss_idle:.0f} -> {peak_rss:.0f} MB (target < {RSS_TARGET_MB} MB)"),
            ("worker RSS per job in flight", f"{per_job_kb:.1f} KB"),
            (
                "worker CPU over the makespan",
                f"{cpu['worker-0']:.1f} s = {cores_overall:.3f} cores (target < {CPU_TARGET_CORES});"
                f" {cpu['worker-0'] * 1000 / jobs:.2f} ms per job",
            ),
            (
                "worker CPU while holding every job",
                f"{cores_holding:.3f} cores over {holding_seconds:.0f} s"
                f" = {cores_holding * 1e6 / jobs:.1f} microcores per job in flight",
            ),
            (
                "postgres / rabbitmq CPU over the makespan",
                f"{cpu['postgres']:.1f} s / {cpu['rabbitmq']:.1f} s",
            ),
            (
                "fake provider CPU (own process, not counted)",
                f"{fake_cpu:.1f} s, {int(stats['requests']):,} requests",
            ),
            ("load average at the end (1/5/15 min)", " / ".join(f"{value:.1f}" for value in load)),
            (
                "tasks failed (refunded)",
                ", ".join(f"{count} {kind}: {why}" for kind, why, count in failed) or "none",
            ),
            ("money", "I1-I5 clean after the batch settled"),
        ],
        {
            "jobs": jobs,
            "job_seconds": job_seconds,
            "poll_seconds": poll,
            "poll_max_seconds": poll_max,
            "connections": args.connections,
            "videos_in_memory": in_memory,
            "peak_in_flight": peak_in_flight,
            "makespan_s": watch.seconds,
            "ideal_s": ideal,
            "ratio": ratio,
            "worker_rss_idle_mb": rss_idle,
            "worker_peak_rss_mb": peak_rss,
            "worker_rss_per_job_kb": per_job_kb,
            "worker_cpu_s": cpu["worker-0"],
            "worker_cores": cores_overall,
            "worker_cores_holding": cores_holding,
            "holding_seconds": holding_seconds,
            "postgres_cpu_s": cpu["postgres"],
            "rabbitmq_cpu_s": cpu["rabbitmq"],
            "fake_cpu_s": fake_cpu,
            "fake_requests": stats["requests"],
            "met": met,
            "failed": [{"failure_type": kind, "message": why, "tasks": count} for kind, why, count in failed],
            "load_average_end": load,
        },
    )
    # Figures first: a run that lost tasks still says what it measured, then fails.
    assert batch["success_count"] == jobs, (batch, failed, worker_log)
    assert stats["jobs"] == jobs, stats  # each job created once at the provider
    return result


if __name__ == "__main__":
    main()
