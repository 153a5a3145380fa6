"""Benchmark 5: one worker process holding many slow provider jobs at once.

10,000 items, 2 s simulated latency, a provider limit of 1,000 jobs in flight: the ideal makespan
is ceil(N / C) x L = 20 s. Also reports the worker's peak RSS (target under 500 MB).
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time

import psutil

from bench.harness import Stopwatch, customer, report, running_stack, video_directory


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--videos-on-disk", action="store_true")
    args = parser.parse_args(argv)
    items, latency, limit = (200, 0.2, 50) if args.quick else (10_000, 2.0, 1_000)
    pricing = {"sora-2": {"credits_per_video": 10, "max_in_flight": limit}}
    chunk = 50
    with (
        video_directory(args.videos_on_disk) as (videos, in_memory),
        running_stack(
            workers=1,
            asset_dir=videos,
            simulated_latency_seconds=str(latency),
            provider_timeout_seconds="60",
            pricing=json.dumps(pricing),
            # Let one worker hold the whole limit: enough concurrency, prefetched chunks and window.
            worker_concurrency=str(limit * 2),
            worker_prefetch=str(2 * limit // chunk),
            dispatch_chunk_size=str(chunk),
            dispatch_window_chunks=str(2 * limit // chunk),
            tenant_dispatch_window_chunks=str(4 * limit // chunk),
        ) as stack,
    ):
        api, who = customer(stack, credits=items * 10)
        worker = psutil.Process(stack.processes["worker-0"].pid)
        peak = {"rss": 0}
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak["rss"] = max(peak["rss"], worker.memory_info().rss)
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with Stopwatch() as watch:
            created = api.create_batch(
                who, [{"prompt": f"slow take {i}", "model": "sora-2"} for i in range(items)]
            )
            assert created.status_code == 202, created.text
            batch = api.wait_until_settled(who, created.json()["batch_id"], timeout=900)
        done.set()
        sampler.join()
        api.http.close()
    assert batch["success_count"] == items, batch
    ideal = math.ceil(items / limit) * latency
    rss_mb = peak["rss"] / 2**20
    return report(
        "provider_concurrency",
        [
            ("items / latency / limit", f"{items} / {latency:g} s / {limit} in flight, one worker process"),
            ("simulated videos written to", "memory (tmpfs)" if in_memory else "disk"),
            ("makespan (POST -> settled)", f"{watch.seconds:.1f} s"),
            ("ideal ceil(N/C) x L", f"{ideal:.1f} s"),
            ("ratio", f"{watch.seconds / ideal:.2f}x (target <= 1.3x)"),
            ("worker peak RSS", f"{rss_mb:.0f} MB (target < 500 MB)"),
        ],
        {
            "items": items,
            "videos_in_memory": in_memory,
            "makespan_s": watch.seconds,
            "ideal_s": ideal,
            "ratio": watch.seconds / ideal,
            "worker_peak_rss_mb": rss_mb,
        },
    )


if __name__ == "__main__":
    main()
