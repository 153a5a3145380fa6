"""Load generator for the read path, run as its own process: GET batch and GET tasks alternately.

`--rate 0` runs a closed loop (capacity); `--rate R` offers R requests/s whatever the answers do
and counts each latency from when the request was due (bench/http_load.py).
"""

from __future__ import annotations

import argparse
import json

import uvloop

from bench.http_load import LoadResult, Request, closed_loop, open_loop


async def run(
    base_url: str, api_key: str, batch_id: str, clients: int, seconds: float, rate: float
) -> LoadResult:
    headers = {"X-API-Key": api_key}
    requests = [
        Request("GET", f"/api/enterprise/video-batch/{batch_id}", headers),
        Request("GET", f"/api/enterprise/video-batch/{batch_id}/tasks?limit=50", headers),
    ]
    if rate:
        return await open_loop(base_url, requests, clients, rate=rate, seconds=seconds)
    return await closed_loop(base_url, requests, clients, seconds=seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("api_key")
    parser.add_argument("batch_id")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s offered; 0 = closed loop")
    args = parser.parse_args()
    result = uvloop.run(
        run(args.base_url, args.api_key, args.batch_id, args.clients, args.seconds, args.rate)
    )
    print(json.dumps(result.summary()))
