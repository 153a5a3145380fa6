"""`make bench`: every benchmark in one run (`--quick` for CI: tiny sizes, checks only that they work)."""

from __future__ import annotations

import argparse
import json
import time

from bench import (
    accept_latency,
    history,
    hot_wallet,
    memory,
    pipeline_throughput,
    provider_concurrency,
    read_path,
)
from bench.harness import StolenTime, host_speed_ms

BENCHMARKS = {
    "accept_latency": accept_latency.main,
    "pipeline_throughput": pipeline_throughput.main,
    "hot_wallet": hot_wallet.main,
    "read_path": read_path.main,
    "provider_concurrency": provider_concurrency.main,
    "memory": memory.main,
    # Last: the first run after a migration changes builds its history template (minutes, once).
    "history": history.main,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    args = parser.parse_args()
    started = time.perf_counter()
    speed_before = host_speed_ms()
    stolen = StolenTime()
    results = {}
    for name, run in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        results[name] = run(["--quick"] if args.quick else [])
    stolen_share = stolen.share()
    speed_after = host_speed_ms()
    print(f"\nall benchmarks in {time.perf_counter() - started:.0f} s")
    print(
        f"host speed (a fixed Python loop, lower is faster): {speed_before} ms before, {speed_after} ms after"
    )
    print(f"host CPU stolen by the hypervisor's other guests over the run: {stolen_share:.0%} of the cores")
    print(
        json.dumps(
            {
                "benchmarks": results,
                "host_speed_ms": {"before": speed_before, "after": speed_after},
                "stolen_share": stolen_share,
            }
        )
    )


if __name__ == "__main__":
    main()
