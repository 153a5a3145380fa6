"""`make bench-soak`: the long benchmarks, apart from `make bench` (tens of minutes at full size).

1. `bench.soak_sustained`: 1,000,000 tasks through the distributed stack beside Celery.
2. `bench.soak_provider_bound`: one worker holding 10,000 jobs of 120 s in flight.

`--quick` runs both at tiny sizes (seconds each, figures meaningless). Other flags go to the one
benchmark chosen with `--only`, e.g. `python -m bench.soak --only sustained --tasks 50000`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from bench import soak_provider_bound, soak_sustained
from bench.harness import StolenTime, host_speed_ms

SOAKS: dict[str, Callable[[list[str] | None], dict[str, object]]] = {
    "sustained": soak_sustained.main,
    "provider_bound": soak_provider_bound.main,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=sorted(SOAKS))
    args, rest = parser.parse_known_args()
    if rest and not args.only:
        parser.error(f"{' '.join(rest)}: name the benchmark they are for with --only")
    started = time.perf_counter()
    speed_before = host_speed_ms()
    stolen = StolenTime()
    results = {
        name: run([*(["--quick"] if args.quick else []), *rest])
        for name, run in SOAKS.items()
        if args.only in (None, name)
    }
    stolen_share, speed_after = stolen.share(), host_speed_ms()
    print(f"\nsoak benchmarks in {time.perf_counter() - started:.0f} s")
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
