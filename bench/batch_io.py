"""Batch input and output (issue 25): API calls to submit and fully collect a 300-item batch, and
the time and peak memory of creating a batch from a 64 MiB JSONL body (plain and gzip).

Not part of `make bench` (no floor yet): run with `uv run --frozen python -m bench.batch_io`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import threading
import time
from typing import Any

import httpx
import psutil

from bench.harness import customer, report, running_stack

CREATE = "/api/enterprise/video-batch"
# A character of a 3-byte UTF-8 script (CJK), so 2,000 of them are 6,000 bytes.
WIDE = "猫"


def _calls_to_collect(api: Any, who: Any, items: int, poll_seconds: float) -> dict[str, int]:
    """Submit `items` as JSONL, poll the batch until settled, fetch results, errors and the zip."""
    counted: dict[str, int] = {}

    def count(request: httpx.Request) -> None:
        kind = "poll" if request.method == "GET" and request.url.path.count("/") == 4 else "other"
        counted[kind] = counted.get(kind, 0) + 1

    api.http.event_hooks["request"].append(count)
    lines = b"".join(
        json.dumps({"custom_id": f"row-{n}", "body": {"prompt": f"shot {n}", "model": "sora-2"}}).encode()
        + b"\n"
        for n in range(items)
    )
    created = api.http.post(
        CREATE, content=lines, headers={**who.headers, "Content-Type": "application/jsonl"}
    )
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    while api.http.get(f"{CREATE}/{batch_id}", headers=who.headers).json()["settlement_status"] == "pending":
        time.sleep(poll_seconds)
    for path in ("results", "errors", "videos.zip"):
        assert api.http.get(f"{CREATE}/{batch_id}/{path}", headers=who.headers).status_code == 200
    api.http.event_hooks["request"].remove(count)
    return counted


def _large_create(api: Any, who: Any, stack: Any, items: int, chars: int, zipped: bool) -> dict[str, Any]:
    """Creates one batch of `items` prompts of `chars` wide characters; time and peak RSS."""
    body = b"".join(
        json.dumps(
            {"custom_id": f"c-{n}", "prompt": f"{n} " + WIDE * chars, "model": "sora-2"}, ensure_ascii=False
        ).encode()
        + b"\n"
        for n in range(items)
    )
    sent = gzip.compress(body, compresslevel=1) if zipped else body
    watched = {name: psutil.Process(process.pid) for name, process in stack.processes.items()}
    before = {name: process.memory_info().rss for name, process in watched.items()}
    peaks = dict(before)
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            for name, process in watched.items():
                peaks[name] = max(peaks[name], process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    headers = {**who.headers, "Content-Type": "application/jsonl"}
    if zipped:
        headers["Content-Encoding"] = "gzip"
    started = time.perf_counter()
    created = api.http.post(CREATE, content=sent, headers=headers, timeout=300)
    seconds = time.perf_counter() - started
    sampling.set()
    sampler.join()
    assert created.status_code == 202, created.text
    api.wait_until_settled(who, created.json()["batch_id"], timeout=900)
    return {
        "body_mib": round(len(body) / 2**20, 1),
        "sent_mib": round(len(sent) / 2**20, 1),
        "seconds": round(seconds, 2),
        "peak_rss_growth_mb": {
            name: round((peaks[name] - before[name]) / 2**20, 1) for name in sorted(peaks)
        },
        "peak_rss_mb": {name: round(peaks[name] / 2**20, 1) for name in sorted(peaks)},
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    items, chars = (300, 200) if args.quick else (10_000, 2_000)
    with running_stack(workers=2, simulated_latency_seconds="0.01") as stack:
        api, who = customer(stack, credits=3 * items * 10 + 3_000)
        calls = _calls_to_collect(api, who, 300, poll_seconds=1.0)
        plain = _large_create(api, who, stack, items, chars, zipped=False)
        zipped = _large_create(api, who, stack, items, chars, zipped=True)
        api.http.close()
    return report(
        "batch_io",
        [
            ("300-item batch, calls besides polls", str(calls.get("other", 0))),
            ("300-item batch, status polls (1 s apart)", str(calls.get("poll", 0))),
            (
                f"{plain['body_mib']} MiB JSONL create",
                f"{plain['seconds']} s, RSS growth {plain['peak_rss_growth_mb']}",
            ),
            (
                f"same, gzip ({zipped['sent_mib']} MiB sent)",
                f"{zipped['seconds']} s, RSS growth {zipped['peak_rss_growth_mb']}",
            ),
        ],
        {"calls": calls, "plain": plain, "gzip": zipped},
    )


if __name__ == "__main__":
    main()
