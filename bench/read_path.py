"""Benchmark 4: GET batch and GET tasks under load from a separate process on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench.harness import customer, report, running_stack


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    clients, seconds = (5, 2.0) if args.quick else (50, 20.0)
    with running_stack(workers=1) as stack:
        api, who = customer(stack, credits=1000)
        created = api.create_batch(who, [{"prompt": f"read path {i}", "model": "sora-2"} for i in range(100)])
        batch_id = created.json()["batch_id"]
        api.wait_until_settled(who, batch_id)
        load = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.read_load",
                stack.base_url,
                who.api_key,
                batch_id,
                "--clients",
                str(clients),
                "--seconds",
                str(seconds),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        api.http.close()
    result = json.loads(load.stdout.strip().splitlines()[-1])
    return report(
        "read_path",
        [
            (
                "load",
                f"{clients} concurrent clients for {seconds:.0f} s, GET batch and GET tasks alternately",
            ),
            ("throughput", f"{result['rps']:.0f} requests/s (target: p99 < 50 ms at 500 requests/s)"),
            ("p50 / p99", f"{result['p50_ms']:.1f} ms / {result['p99_ms']:.1f} ms"),
            ("errors", f"{result['errors']} of {result['requests']}"),
        ],
        result,
    )


if __name__ == "__main__":
    main()
