"""The demo: the demo tenant (seeded at start-up), the banner a launcher prints, and the replay
of the seed live demo against a running system (`reelbatch demo`)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

from libs.config import Settings

if TYPE_CHECKING:
    import httpx

DEMO_API_KEY = "demo-key"
DEMO_CREDITS = 5_000
DEMO_URL = "http://127.0.0.1:8000"


async def seed_demo(settings: Settings) -> str:
    """Creates the demo tenant once (idempotent); returns its tenant id."""
    import grpc
    from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

    from libs.rpc.client import open_channel
    from libs.rpc.tls import tls_from_settings

    async with open_channel(settings.grpc_target("billing"), tls=tls_from_settings(settings)) as channel:
        billing = billing_pb2_grpc.BillingServiceStub(channel)
        deadline = settings.grpc_deadline_seconds
        try:
            found = await billing.AuthenticateApiKey(
                billing_pb2.AuthenticateApiKeyRequest(api_key=DEMO_API_KEY),
                timeout=deadline,
                wait_for_ready=True,
            )
            tenant_id = found.tenant_id
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise
            created = await billing.CreateTenant(
                billing_pb2.CreateTenantRequest(name="Demo Studio"), timeout=deadline
            )
            tenant_id = created.tenant_id
            await billing.CreateApiKey(
                billing_pb2.CreateApiKeyRequest(tenant_id=tenant_id, api_key=DEMO_API_KEY), timeout=deadline
            )
        await billing.TopUp(
            billing_pb2.TopUpRequest(
                tenant_id=tenant_id, credits=DEMO_CREDITS, reference="demo-initial-credits"
            ),
            timeout=deadline,
        )
        return str(tenant_id)


def print_banner(settings: Settings, tenant_id: str, how: str) -> None:
    """Prints where the running system answers and how to try it."""
    base = f"http://{settings.http_host}:{settings.http_port}"
    print(
        f"\nReelbatch is running ({how}).\n"
        f"  REST API      {base}/api/enterprise/video-batch\n"
        f"  OpenAPI docs  {base}/docs  ({base}/openapi.json)\n"
        f"  Admin pages   {base}/admin/batches  (admin token: REELBATCH_ADMIN_TOKEN)\n"
        f"  Console       {base}/console\n"
        f"                (invite someone: reelbatch console-invite {tenant_id} you@example.com)\n"
        f"  Health        {base}/readyz\n"
        f"  Demo tenant   {tenant_id}  API key: {DEMO_API_KEY}  ({DEMO_CREDITS} credits)\n\n"
        f"Try:\n  curl -s -X POST {base}/api/enterprise/video-batch -H 'X-API-Key: {DEMO_API_KEY}' \\\n"
        "    -H 'Content-Type: application/json' \\\n"
        '    -d \'{"items":[{"prompt":"A cat playing piano","model":"sora-2"},'
        '{"prompt":"A dog in space #fail","model":"sora-2"}]}\'\n'
        "or replay the whole seed demo in another terminal:  make demo\n\n"
        "Ctrl-C stops everything.",
        flush=True,
    )


def _demo_items() -> list[dict[str, str]]:
    prompts = [
        "A cat playing piano",
        "A dog in space",
        "A bird flying over ocean",
        "A lighthouse in a storm",
        "A chef flipping pancakes",
        "A paper boat on a river",
        "A city skyline at dawn",
        "A robot dancing in the rain #fail",
        "A fox running through snow",
        "A hot air balloon over hills",
        "A skateboarder at sunset",
        "A waterfall in the jungle",
        "A train crossing a bridge",
        "A child blowing bubbles",
        "A whale breaching at sea",
        "A desert caravan at night",
        "A lantern festival",
        "A hummingbird at a flower",
        "A surfer riding a big wave",
        "A snowman melting in spring",
    ]
    return [{"prompt": prompt, "model": "sora-2"} for prompt in prompts]


def _show(response: httpx.Response) -> None:
    print(f"   HTTP {response.status_code}")
    for line in json.dumps(response.json(), indent=2, ensure_ascii=False).splitlines():
        print(f"   {line}")


def _progress_line(batch: dict[str, Any]) -> str:
    total = int(batch["total_count"])
    done = int(batch["success_count"]) + int(batch["failed_count"]) + int(batch["cancelled_count"])
    filled = 30 * done // max(total, 1)
    return (
        f"   [{'#' * filled}{'.' * (30 - filled)}] {done:>2}/{total}  "
        f"succeeded {batch['success_count']}  failed {batch['failed_count']}  status {batch['status']}"
    )


def _ledger_lines(entries: list[dict[str, Any]]) -> list[str]:
    return [
        f"   {entry['ref_type']:<14} {entry['credits_delta']:>+6}   balance after {entry['balance_after']:>6}"
        f"   ({entry['created_at']})"
        for entry in sorted(entries, key=lambda e: (str(e["created_at"]), str(e["entry_id"])))
    ]


def run_demo(base_url: str, api_key: str = DEMO_API_KEY, *, timeout_seconds: float = 120.0) -> int:
    """Replays the seed live demo step by step against a running system; 0 if every claim held."""
    import httpx

    headers = {"X-API-Key": api_key}
    items = _demo_items()
    request_id = f"demo-{uuid.uuid4().hex[:12]}"
    problems: list[str] = []

    def expect(claim: bool, failure: str) -> None:
        if not claim:
            problems.append(failure)
            print(f"   !! {failure}")

    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        print(f"Reelbatch live demo against {base_url} (API key {api_key})\n")
        print(
            f"1. Submit 20 videos in one request (sora-2, one prompt marked #fail), X-Request-ID {request_id}"
        )
        body = {"items": items}
        created = http.post("/api/enterprise/video-batch", json=body, headers={"X-Request-ID": request_id})
        _show(created)
        if created.status_code != 202:
            print("\nThe batch was not accepted; is the demo tenant seeded and funded?")
            return 1
        batch_id = str(created.json()["batch_id"])
        expect(created.json()["required_credits"] == 200, "20 x 10 credits should require 200")
        print("   The price is known and frozen before anything runs: 20 x 10 = 200 credits.\n")

        print("2. The ledger already holds the upfront charge")
        upfront = http.get("/api/enterprise/ledger", params={"batch_id": batch_id}).json()["items"]
        for line in _ledger_lines([e for e in upfront if e["ref_type"] == "batch_upfront"]):
            print(line)
        expect(
            any(e["ref_type"] == "batch_upfront" and e["credits_delta"] == -200 for e in upfront),
            "expected a batch_upfront entry of -200",
        )
        print()

        print("3. Every item runs independently; a failure is refunded when it is known")
        deadline = time.monotonic() + timeout_seconds
        shown = ""
        interactive = sys.stdout.isatty()
        while True:
            batch = http.get(f"/api/enterprise/video-batch/{batch_id}").json()
            line = _progress_line(batch)
            if line != shown:
                print(f"\r{line}" if interactive else line, end="" if interactive else "\n", flush=True)
                shown = line
            if batch["settlement_status"] != "pending":
                break
            if time.monotonic() > deadline:
                print(f"\n   !! the batch did not settle within {timeout_seconds:.0f}s")
                return 1
            time.sleep(0.25)
        if interactive:
            print()
        print()

        print("4. The final batch")
        for key in (
            "status",
            "total_count",
            "success_count",
            "failed_count",
            "frozen_credits",
            "credits_spent",
            "refunded_credits",
            "settlement_status",
        ):
            print(f"   {key:<18} {batch[key]}")
        expect(batch["success_count"] == 19 and batch["failed_count"] == 1, "expected 19 succeeded, 1 failed")
        failed = http.get(f"/api/enterprise/video-batch/{batch_id}/tasks", params={"status": "failed"}).json()
        for task in failed["items"]:
            print(
                f"   failed task #{task['batch_index']}: {task['failure_type']} "
                f"({task['error_message']}), attempts {task['attempts']}"
            )
        print()

        print("5. The ledger of this batch, as finance sees it")
        entries = http.get("/api/enterprise/ledger", params={"batch_id": batch_id}).json()["items"]
        for line in _ledger_lines(entries):
            print(line)
        net_spent = -sum(int(entry["credits_delta"]) for entry in entries)
        refunded = sum(int(e["credits_delta"]) for e in entries if e["ref_type"] == "batch_refund")
        print(f"   Net spent: {net_spent} credits (200 frozen - {refunded} refunded = 19 videos x 10)\n")
        expect(refunded == 10, "expected a batch_refund of +10")
        expect(net_spent == 190, "expected a net spend of 190")

        print("6. Not enough credits: refused with 402 before anything runs, nothing charged")
        available = int(http.get("/api/enterprise/credits").json()["available_credits"])
        too_many = available // 10 + 1
        if too_many > 10_000:
            print(f"   (skipped: {available} credits cover the largest batch allowed)\n")
        else:
            refused = http.post(
                "/api/enterprise/video-batch",
                json={"items": [{"prompt": f"Scene {i}", "model": "sora-2"} for i in range(too_many)]},
            )
            _show(refused)
            expect(refused.status_code == 402, "expected 402 insufficient_credits")
            after = int(http.get("/api/enterprise/credits").json()["available_credits"])
            expect(after == available, "a refused batch must not change the balance")
            print(f"   Available credits still {after}.\n")

        print(f"7. The same request again (X-Request-ID {request_id}): the same batch, no second charge")
        before = int(http.get("/api/enterprise/credits").json()["available_credits"])
        retried = http.post("/api/enterprise/video-batch", json=body, headers={"X-Request-ID": request_id})
        print(f"   HTTP {retried.status_code}  batch_id {retried.json().get('batch_id')}")
        after = int(http.get("/api/enterprise/credits").json()["available_credits"])
        expect(retried.json().get("batch_id") == batch_id, "the retry should return the same batch_id")
        expect(after == before, "the retry must not charge again")
        same = retried.json().get("batch_id") == batch_id
        print(f"   Same batch_id: {same}; available credits {before} -> {after}\n")

    print("Demo complete: every claim held." if not problems else f"Demo found {len(problems)} problem(s).")
    return 0 if not problems else 1
