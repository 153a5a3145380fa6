"""Benchmark 7: the same requests on months of history and on an empty database, in one run.

A customer in production has months of history: hundreds of thousands of batches, millions of
tasks and ledger entries. This benchmark runs every request a customer or an operator makes
often on a database that holds such a history (`bench/history_data.py`: 2,000 tenants, 100,000
batches of 1..10,000 items with a long tail, 5,000,000 tasks, their double-entry ledger, webhook
messages and attempts, video-access audit rows; cached as a template, `bench/history_template.py`)
and on an empty one, each on its own stack of every service, and reports each figure with its
ratio to the empty database's. Target: every ratio <= 1.3x.

The customer on the history side is the largest tenant (about a tenth of all batches). The empty
side is day one: the same generator's single tenant with its first batch, settled, of the size
the history side reads (10,000 items), so every read finds the same kind of object and only the
history around it differs. Each side accepts the same 10,000-item batches first; reads then use
the settled batch, the tenant's ledger (a deep cursor: the page 90% of the way back), and the
statement and margins of the last complete month with traffic.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg

from bench.harness import Stopwatch, report, stack_on
from bench.history_checks import money_discrepancies
from bench.history_data import FULL, QUICK, Generated, Shape
from bench.history_template import clone, ensure_template
from tests.isolation import drop_database
from tests.rest_api import Customer
from tests.stack import ADMIN_TOKEN

TARGET_RATIO = 1.3
# How much of a CSV export is read: enough to measure a steady rate, not the whole ledger.
EXPORT_ROWS = 200_000


@dataclass(frozen=True)
class Plan:
    """Sizes of one run."""

    shape: Shape
    items: int  # per accepted batch
    accepts: int
    repeats: int  # of each read (the median is reported)


FULL_PLAN = Plan(shape=FULL, items=10_000, accepts=3, repeats=5)
QUICK_PLAN = Plan(shape=QUICK, items=200, accepts=2, repeats=2)


@dataclass(frozen=True)
class Side:
    """One database's customer and the objects its reads use."""

    customer: Customer
    batch_id: str
    month: str
    deep_cursor: str


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _timed(repeats: int, call: Callable[[], httpx.Response]) -> float:
    """The median milliseconds of `repeats` calls (the first, warming caches, not counted)."""
    samples = []
    for attempt in range(repeats + 1):
        with Stopwatch() as watch:
            response = call()
        assert response.status_code == 200, f"{response.request.url}: {response.status_code}: {response.text[:300]}"
        if attempt:
            samples.append(watch.seconds * 1000)
    return statistics.median(samples)


def _export(http: httpx.Client, path: str, headers: dict[str, str]) -> tuple[float, float, int]:
    """Time to the first byte (ms), rows per second and rows read of a streamed CSV export."""
    started = time.perf_counter()
    first = 0.0
    rows = 0
    with http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.read()[:300]
        for chunk in response.iter_bytes():
            if not first:
                first = time.perf_counter() - started
            rows += chunk.count(b"\n")
            if rows >= EXPORT_ROWS:
                break
    elapsed = time.perf_counter() - started
    return first * 1000, rows / max(elapsed - first, 1e-6), rows


def _deep_cursor(database_url: str, tenant_id: str) -> str:
    """The cursor of the ledger page 90% of the way back through the tenant's available account."""
    with psycopg.connect(_dsn(database_url)) as conn:
        row = conn.execute(
            """
            SELECT e.id FROM billing.ledger_entries e
            JOIN billing.accounts a ON a.id = e.account_id AND a.kind = 'available' AND a.tenant_id = %s
            ORDER BY e.id OFFSET (SELECT count(*) / 10 FROM billing.ledger_entries e2
                                  JOIN billing.accounts a2 ON a2.id = e2.account_id
                                  WHERE a2.kind = 'available' AND a2.tenant_id = %s) LIMIT 1
            """,
            (tenant_id, tenant_id),
        ).fetchone()
    return str(row[0]) if row else ""


def measure(plan: Plan, database_url: str, generated: Generated) -> dict[str, Any]:
    """Every figure of one database, on a stack of its own (workers away: reads and accepts only)."""
    figures: dict[str, Any] = {}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tenant_id = str(generated.tenant_id)
    # The statement's and margins' month: the last complete one (all of the past behind it).
    month = generated.months[-2] if len(generated.months) > 1 else generated.months[-1]
    with stack_on(database_url, workers=0) as stack, httpx.Client(base_url=stack.base_url, timeout=900) as http:
        key = http.post(f"/api/admin/tenants/{tenant_id}/api-keys", headers=admin)
        assert key.status_code == 201, key.text
        topup = http.post(
            f"/api/admin/tenants/{tenant_id}/credits",
            json={"credits": plan.items * 10 * (plan.accepts + 2), "reference": f"bench-{time.time_ns()}"},
            headers=admin,
        )
        assert topup.status_code == 200, topup.text
        customer = Customer(tenant_id, key.json()["api_key"])
        items = {"items": [{"prompt": f"history bench {i}", "model": "sora-2"} for i in range(plan.items)]}
        samples = []
        for _ in range(plan.accepts + 1):
            with Stopwatch() as watch:
                response = http.post("/api/enterprise/video-batch", json=items, headers=customer.headers)
            assert response.status_code == 202, response.text
            samples.append(watch.seconds * 1000)
        figures["accept a batch"] = statistics.median(samples[1:])
        side = Side(customer, str(generated.big_batch_id), month, _deep_cursor(database_url, tenant_id))
        figures.update(_reads(plan, http, side, admin))
    return figures


def _reads(plan: Plan, http: httpx.Client, side: Side, admin: dict[str, str]) -> dict[str, float]:
    customer = side.customer.headers
    gets: dict[str, tuple[str, dict[str, str]]] = {
        "GET batch": (f"/api/enterprise/video-batch/{side.batch_id}", customer),
        "GET tasks page (100)": (f"/api/enterprise/video-batch/{side.batch_id}/tasks?limit=100", customer),
        "ledger page, first": ("/api/enterprise/ledger?limit=50", customer),
        "ledger page, deep cursor": (f"/api/enterprise/ledger?limit=50&cursor={side.deep_cursor}", customer),
        "monthly statement": (f"/api/enterprise/statement?month={side.month}", customer),
        "admin batches, no filter": ("/api/admin/batches?limit=50", admin),
        "admin batches, tenant": (f"/api/admin/batches?limit=50&tenant_id={side.customer.tenant_id}", admin),
        "admin batches, status": ("/api/admin/batches?limit=50&status=partial", admin),
        "admin batches, settlement": ("/api/admin/batches?limit=50&settlement_status=refunded", admin),
        "admin batches, created range": (
            f"/api/admin/batches?limit=50&created_from={side.month}-01T00:00:00Z&created_to={side.month}-15T00:00:00Z",
            admin,
        ),
        "admin batch billing tab": (f"/api/admin/batches/{side.batch_id}/billing", admin),
        "admin tenant page": (f"/admin/tenants/{side.customer.tenant_id}", admin),
        "monthly margins": (f"/api/admin/margins?month={side.month}", admin),
    }
    figures = {name: _timed(plan.repeats, partial(http.get, path, headers=headers))
               for name, (path, headers) in gets.items()}  # fmt: skip
    figures["reconciliation"] = _timed(1, lambda: http.get("/api/admin/reconciliation", headers=admin))
    for name, path, headers in (
        ("customer ledger CSV", "/api/enterprise/ledger.csv", customer),
        ("admin ledger CSV", "/api/admin/ledger.csv", admin),
    ):
        first, rate, rows = _export(http, path, headers)
        figures[f"{name}, first byte"] = first
        figures[f"{name}, rows/s"] = rate
        figures[f"_{name} rows"] = rows
    return figures


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", type=int, help="history size in tasks (batches and tenants scale with it)")
    args = parser.parse_args(argv)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    if args.tasks:
        ratio = args.tasks / FULL.tasks
        plan = Plan(
            shape=Shape(tenants=max(20, round(FULL.tenants * ratio)), batches=max(200, round(FULL.batches * ratio)),
                        tasks=args.tasks),
            items=plan.items, accepts=plan.accepts, repeats=plan.repeats,
        )  # fmt: skip
    template, generated, build_seconds = ensure_template(plan.shape)
    # Day one: the same customer's first batch, of the size the history's reads use, settled.
    first_day = Shape(tenants=1, batches=1, tasks=generated.big_batch_items, months=1)
    empty_template, empty_generated, _ = ensure_template(first_day)
    with Stopwatch() as cloning:
        history_name, history_url = clone(template)
    empty_name, empty_url = clone(empty_template)
    try:
        full = measure(plan, history_url, generated)
        empty = measure(plan, empty_url, empty_generated)
        problems = money_discrepancies(_dsn(history_url)) + money_discrepancies(_dsn(empty_url))
        assert not problems, "money invariants broken:\n" + "\n".join(problems)
    finally:
        drop_database(history_name)
        drop_database(empty_name)
    return _report(plan, generated.counts, build_seconds, cloning.seconds, full, empty)


def _report(
    plan: Plan,
    counts: dict[str, int],
    build_seconds: float | None,
    clone_seconds: float,
    full: dict[str, Any],
    empty: dict[str, Any],
) -> dict[str, object]:
    rows: list[tuple[str, str]] = [
        ("history", ", ".join(f"{name} {count:,}" for name, count in counts.items())),
        (
            "template",
            (f"built now in {build_seconds:.0f} s" if build_seconds is not None else "cached")
            + f", cloned in {clone_seconds:.1f} s",
        ),
    ]
    ratios: dict[str, float] = {}
    for name, value in full.items():
        if name.startswith("_"):
            continue
        base = empty[name]
        # A rate is better higher: its ratio is the empty side's over the history's.
        ratio = base / value if name.endswith("rows/s") else value / base
        ratios[name] = ratio
        unit = "rows/s" if name.endswith("rows/s") else "ms"
        verdict = "" if ratio <= TARGET_RATIO else "  (over 1.3x)"
        rows.append((name, f"{value:,.1f} {unit} vs {base:,.1f} empty: {ratio:.2f}x{verdict}"))
    over = sorted((name for name, ratio in ratios.items() if ratio > TARGET_RATIO), key=lambda n: -ratios[n])
    met = None if plan.shape != FULL else not over
    rows.append(("target", f"every ratio <= {TARGET_RATIO}x: " + (
        "not checked at these sizes" if met is None else "met" if met else "not met: " + ", ".join(over))))  # fmt: skip
    return report(
        "history",
        rows,
        {
            "shape": {
                "tenants": plan.shape.tenants,
                "batches": plan.shape.batches,
                "tasks": plan.shape.tasks,
            },
            "counts": counts,
            "build_seconds": build_seconds,
            "clone_seconds": clone_seconds,
            "history": {k: v for k, v in full.items() if not k.startswith("_batch")},
            "empty": {k: v for k, v in empty.items() if not k.startswith("_batch")},
            "ratios": ratios,
            "target_met": met,
        },
    )


if __name__ == "__main__":
    main()
