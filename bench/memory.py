"""Benchmark 6: peak RSS of each process while a 10,000-item batch is accepted and run."""

from __future__ import annotations

import argparse
import threading
import time

import psutil

from bench.harness import customer, report, running_stack


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    items = 300 if args.quick else 10_000
    with running_stack(workers=2) as stack:
        api, who = customer(stack, credits=items * 10)
        peaks: dict[str, int] = {}
        watched = {name: psutil.Process(process.pid) for name, process in stack.processes.items()}
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                for name, process in watched.items():
                    try:
                        peaks[name] = max(peaks.get(name, 0), process.memory_info().rss)
                    except psutil.NoSuchProcess:
                        pass
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        created = api.create_batch(who, [{"prompt": f"memory {i}", "model": "sora-2"} for i in range(items)])
        assert created.status_code == 202, created.text
        api.wait_until_settled(who, created.json()["batch_id"], timeout=600)
        sampling.set()
        sampler.join()
        api.http.close()
    megabytes = {name: round(rss / 2**20, 1) for name, rss in sorted(peaks.items())}
    return report(
        "memory",
        [(name, f"{mb} MB peak RSS") for name, mb in megabytes.items()] + [("items", str(items))],
        {"items": items, "peak_rss_mb": megabytes},
    )


if __name__ == "__main__":
    main()
