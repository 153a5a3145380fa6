"""Months of history for the history benchmark: a migrated database filled fast with COPY.

The shapes follow what a production customer base accumulates: tenants whose sizes follow a Zipf
law (the first tenant is the largest), batches of 1..10,000 items with a long tail (log-normal
sizes, the mean set by tasks / batches), traffic growing over the months, a few batches with
many failures. Every batch went the way the services take it: a hold account and its freeze, one
capture or refund per task, settled, with top-ups from `grants` whenever the wallet ran short; so
the ledger is double-entry with running balances, exactly as billing writes it. Webhook messages
with their attempts for the batches that asked for them, and video-access audit rows.

Loading: the big tables' keys, indexes and foreign keys are dropped, the rows are COPYed (several
connections at once: PostgreSQL writes one table while Python formats the next rows), and every
dropped definition is recreated from its own `pg_get_*def` text, so the schema afterwards is the
migrations' exactly (checked: the definitions are compared before and after).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from libs.ledger_keys import task_outcome_key, topup_key, upfront_key
from services.billing.adapters.sql.audit import BEGINNING, Amended
from services.billing.adapters.sql.checkpoints import ADD_ACCOUNT_TOTALS, ADD_OUTCOMES, RECORD_CHECKPOINT
from tests.ledger_summaries import rebuild_summaries

# Bump when the generated rows change shape: the cached template is keyed by it.
GENERATOR_VERSION = "4"
MAX_ITEMS = 10_000
# The model mix of the batches (one model per batch), with their seed prices and provider costs.
MODELS = (
    ("sora-2", 10, 24_000, 0.70),
    ("veo-3", 20, 84_000, 0.15),
    ("sora-2-pro", 30, 72_000, 0.10),
    ("veo-3-pro", 50, 210_000, 0.05),
)
FAILURES = (("content_policy", "prompt refused by the provider"), ("provider_error", "provider 500"))
# The tables the generator fills, in load order (small ones through memory, the big ones streamed).
LOADED_TABLES = (
    "billing.tenants",
    "billing.api_keys",
    "billing.accounts",
    "billing.transfers",
    "billing.ledger_entries",
    "billing.batch_holds",
    "billing.batch_hold_lines",
    "billing.video_access_log",
    "batch.batches",
    "batch.tasks",
    "webhook.messages",
    "webhook.attempts",
)
_FLUSH_ROWS = 20_000
NULL = "\\N"  # COPY's text format


@dataclass(frozen=True)
class Shape:
    """How much history: tenants, batches, tasks, over `months` ending a day before `end`."""

    tenants: int
    batches: int
    tasks: int
    months: int = 12
    seed: int = 30

    def __post_init__(self) -> None:
        if not 1 <= self.batches <= self.tasks <= self.batches * MAX_ITEMS:
            raise ValueError("need 1 <= batches <= tasks <= batches x 10,000")
        if self.tenants < 1:
            raise ValueError("need at least one tenant")

    @property
    def label(self) -> str:
        return f"{self.tenants}t_{self.batches}b_{self.tasks}k"


FULL = Shape(tenants=2_000, batches=100_000, tasks=5_000_000)
QUICK = Shape(tenants=20, batches=200, tasks=5_000)


@dataclass
class Generated:
    """What the benchmark needs to know about the history it runs on."""

    tenant_id: uuid.UUID  # the largest tenant (the benchmark's customer)
    big_batch_id: uuid.UUID  # one of its settled 10,000-item batches (or its largest)
    big_batch_items: int
    months: list[str]  # every month with traffic, oldest first ("YYYY-MM")
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def batch_sizes(rng: random.Random, batches: int, tasks: int) -> list[int]:
    """`batches` sizes in 1..10,000 summing to `tasks`, log-normal (most small, a long tail); the
    first is as large as the total allows (up to 10,000): the benchmark reads that batch."""
    raw = [rng.lognormvariate(0.0, 1.9) for _ in range(batches - 1)]
    first = min(MAX_ITEMS, tasks - (batches - 1))
    wanted = tasks - first

    def total(scale: float) -> int:
        return sum(min(MAX_ITEMS, max(1, round(value * scale))) for value in raw)

    low, high = 0.0, float(MAX_ITEMS) * max(1, batches)
    for _ in range(40):  # the scale whose clipped sizes add up to the tasks wanted (monotone in it)
        middle = (low + high) / 2
        low, high = (middle, high) if total(middle) < wanted else (low, middle)
    sizes = [first, *(min(MAX_ITEMS, max(1, round(value * high))) for value in raw)]
    missing = tasks - sum(sizes)
    for index in range(1, batches):  # what rounding left over, one batch at a time
        if not missing:
            break
        step = min(missing, MAX_ITEMS - sizes[index]) if missing > 0 else max(missing, 1 - sizes[index])
        sizes[index] += step
        missing -= step
    if missing:
        raise ValueError("cannot spread the tasks over the batches")
    return sizes


def tenant_of_batches(rng: random.Random, tenants: int, batches: int) -> list[int]:
    """The tenant (index) of each batch: Zipf weights (tenant 0 the largest); every tenant has one."""
    weights = [1.0 / (rank + 1) for rank in range(tenants)]
    chosen = rng.choices(range(tenants), weights=weights, k=batches)
    for index in range(min(tenants, batches)):
        chosen[index] = index  # each tenant at least one batch; batch 0 is tenant 0's
    return chosen


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _copy_text(value: Any) -> str:
    """A value in COPY's text format (None is NULL; our texts hold no tabs, newlines or backslashes)."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()
    return str(value)


class _Stream:
    """One table's COPY on its own connection, written in chunks of formatted lines."""

    def __init__(self, stack: ExitStack, dsn: str, table: str, columns: tuple[str, ...]) -> None:
        self.conn = stack.enter_context(psycopg.connect(dsn))
        # No row triggers (the per-statement task check, outbox notifications) while loading.
        self.conn.execute("SET session_replication_role = replica")
        self.conn.execute("SET synchronous_commit = off")
        self.copy = stack.enter_context(
            self.conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN")
        )
        self.lines: list[str] = []
        self.rows = 0

    def line(self, text: str) -> None:
        """One row already in COPY's text format."""
        self.lines.append(text)
        if len(self.lines) >= _FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            self.copy.write("\n".join(self.lines) + "\n")
            self.rows += len(self.lines)
            self.lines = []


def _definitions(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str, str]]:
    """(kind, table, name, definition) of every key, unique constraint, foreign key and index of
    the loaded tables (foreign keys of any table that reference them too), in creation order."""
    tables = list(LOADED_TABLES)
    constraints = conn.execute(
        """
        SELECT c.contype, c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c
        WHERE c.contype IN ('p', 'u', 'f')
          AND (c.conrelid::regclass::text = ANY(%(tables)s)
               OR (c.contype = 'f' AND c.confrelid::regclass::text = ANY(%(tables)s)))
        ORDER BY c.contype DESC, c.conrelid::regclass::text, c.conname
        """,
        {"tables": tables},
    ).fetchall()
    indexes = conn.execute(
        """
        SELECT 'i', format('%%I.%%I', i.schemaname, i.tablename),
               format('%%I.%%I', i.schemaname, i.indexname), i.indexdef
        FROM pg_indexes i
        WHERE format('%%I.%%I', i.schemaname, i.tablename) = ANY(%(tables)s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                          WHERE c.conindid = format('%%I.%%I', i.schemaname, i.indexname)::regclass)
        ORDER BY 2, 3
        """,
        {"tables": tables},
    ).fetchall()
    # Keys and unique constraints first, then plain indexes, then foreign keys (they need the keys).
    keys = [tuple(row) for row in constraints if row[0] in ("p", "u")]
    foreign = [tuple(row) for row in constraints if row[0] == "f"]
    return [*keys, *[tuple(row) for row in indexes], *foreign]


def _drop(conn: psycopg.Connection[Any], definitions: list[tuple[str, str, str, str]]) -> None:
    for kind, table, name, _ in reversed(definitions):
        if kind == "i":
            conn.execute(f"DROP INDEX {name}")
        else:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')


def _recreate(conn: psycopg.Connection[Any], definitions: list[tuple[str, str, str, str]]) -> None:
    conn.execute("SET maintenance_work_mem = '512MB'")
    for kind, table, name, definition in definitions:
        if kind == "i":
            conn.execute(definition)
        else:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


@dataclass
class _Wallet:
    account_id: int
    balance: int = 0
    payments: int = 0


def generate(dsn: str, shape: Shape, *, end: datetime | None = None, log: bool = True) -> Generated:
    """Fills the migrated, empty database at `dsn` with `shape`'s history; what was made."""
    started = time.perf_counter()
    rng = random.Random(shape.seed)
    end = (end or datetime.now(UTC)).replace(microsecond=0) - timedelta(days=1)
    begin = end - timedelta(days=30 * shape.months)
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = _definitions(conn)
        system: dict[str, int] = {
            kind: id_ for kind, id_ in conn.execute("SELECT kind, id FROM billing.accounts")
        }
        next_account = max(system.values()) + 1
        _drop(conn, before)
    revenue, grants = system["revenue"], system["grants"]
    tenants = [_uuid(rng) for _ in range(shape.tenants)]
    wallets = {}
    for tenant in tenants:
        wallets[tenant] = _Wallet(next_account)
        next_account += 1
    sizes = batch_sizes(rng, shape.batches, shape.tasks)
    owners = tenant_of_batches(rng, shape.tenants, shape.batches)
    # Traffic grows over the months (density rising linearly); the benchmark's batch is recent.
    span = (end - begin).total_seconds()
    moments = sorted(begin + timedelta(seconds=span * math.sqrt(rng.random())) for _ in range(shape.batches))
    order = list(range(1, shape.batches))
    rng.shuffle(order)
    order.insert(len(order) * 9 // 10, 0)  # batch 0 (10,000 items, tenant 0) in the last tenth
    counts: dict[str, int] = {}
    transfer_id = entry_id = 0
    months: set[str] = set()
    with ExitStack() as stack:
        task_rows = _Stream(
            stack,
            dsn,
            "batch.tasks",
            (
                "id",
                "batch_id",
                "tenant_id",
                "batch_index",
                "prompt",
                "model",
                "unit_price",
                "status",
                "attempts",
                "claims",
                "failure_type",
                "error_message",
                "video_url",
                "created_at",
                "started_at",
                "finished_at",
                "dispatched_at",
                "claimed_by",
            ),
        )
        transfer_rows = _Stream(
            stack,
            dsn,
            "billing.transfers",
            (
                "id",
                "key",
                "ref_type",
                "ref_id",
                "tenant_id",
                "batch_id",
                "debit_account_id",
                "credit_account_id",
                "amount",
                "created_at",
                "model",
            ),
        )
        entry_rows = _Stream(
            stack,
            dsn,
            "billing.ledger_entries",
            (
                "id",
                "transfer_id",
                "account_id",
                "tenant_id",
                "batch_id",
                "ref_type",
                "ref_id",
                "amount",
                "balance_after",
                "created_at",
            ),
        )
        balances: dict[int, int] = {}

        def move(
            ref_type: str,
            key: str,
            ref_id: str,
            tenant: str,
            batch: str,
            debit: int,
            credit: int,
            amount: int,
            at: str,
            model: str = NULL,
        ) -> None:
            """One transfer and its two entries, as COPY text lines (ids, texts and times formatted
            once by the caller: this runs once per task)."""
            nonlocal transfer_id, entry_id
            transfer_id += 1
            transfer_rows.line(
                f"{transfer_id}\t{key}\t{ref_type}\t{ref_id}\t{tenant}\t{batch}\t{debit}\t{credit}\t{amount}"
                f"\t{at}\t{model}"
            )
            for account, delta in ((debit, -amount), (credit, amount)):
                entry_id += 1
                after = NULL
                if account in balances:  # a tenant account: its running balance
                    balances[account] += delta
                    after = str(balances[account])
                entry_rows.line(
                    f"{entry_id}\t{transfer_id}\t{account}\t{tenant}\t{batch}\t{ref_type}\t{ref_id}\t{delta}"
                    f"\t{after}\t{at}"
                )

        for wallet in wallets.values():
            balances[wallet.account_id] = 0
        batch_records: list[tuple[Any, ...]] = []
        holds: list[tuple[Any, ...]] = []
        lines: list[tuple[Any, ...]] = []
        hold_accounts: list[tuple[Any, ...]] = []
        messages: list[tuple[Any, ...]] = []
        attempts: list[tuple[Any, ...]] = []
        big_batch = None
        for slot, index in enumerate(order):
            size, tenant = sizes[index], tenants[owners[index]]
            created = moments[slot]
            months.add(created.strftime("%Y-%m"))
            batch = _uuid(rng)
            if index == 0:
                big_batch = batch
            model, price, cost, _ = rng.choices(MODELS, weights=[m[3] for m in MODELS])[0]
            wallet = wallets[tenant]
            frozen = size * price
            tenant_text, batch_text, created_text = str(tenant), str(batch), created.isoformat()
            if wallet.balance < frozen:
                wallet.payments += 1
                amount = max(frozen * 3, 10_000)
                reference = f"payment-{wallet.payments}"
                move(
                    "topup",
                    topup_key(tenant, reference),
                    reference,
                    tenant_text,
                    NULL,
                    grants,
                    wallet.account_id,
                    amount,
                    (created - timedelta(minutes=5)).isoformat(),
                )
                wallet.balance += amount
            hold_account = next_account
            next_account += 1
            balances[hold_account] = 0
            hold_accounts.append((hold_account, "hold", tenant, batch, 0, created))
            available_before = wallet.balance
            move(
                "batch_upfront",
                upfront_key(batch),
                batch_text,
                tenant_text,
                batch_text,
                wallet.account_id,
                hold_account,
                frozen,
                created_text,
            )
            wallet.balance -= frozen
            # Most batches lose a few percent; some a third; one in a hundred everything.
            roll = rng.random()
            failure_rate = 1.0 if roll < 0.01 else 0.3 if roll < 0.06 else 0.03
            succeeded = failed = 0
            finished = created
            common = f"\t{batch_text}\t{tenant_text}\t"
            for position in range(size):
                task = str(_uuid(rng))
                began = created + timedelta(milliseconds=50 + 10 * position)
                done = began + timedelta(seconds=30 + rng.random() * 90)
                finished = max(finished, done)
                done_text = done.isoformat()
                times = f"{created_text}\t{began.isoformat()}\t{done_text}\t{created_text}\tworker-h"
                prompt = f"{position}\thistory prompt {position} of {batch_text}\t{model}\t{price}"
                if rng.random() < failure_rate:
                    failed += 1
                    failure, message = FAILURES[position % len(FAILURES)]
                    task_rows.line(
                        f"{task}{common}{prompt}\tfailed\t1\t1\t{failure}\t{message}\t{NULL}\t{times}"
                    )
                    move(
                        "batch_refund",
                        task_outcome_key(task),
                        task,
                        tenant_text,
                        batch_text,
                        hold_account,
                        wallet.account_id,
                        price,
                        done_text,
                        model,
                    )
                    wallet.balance += price
                else:
                    succeeded += 1
                    url = f"http://127.0.0.1:8000/videos/{batch_text}/{task}.mp4"
                    task_rows.line(f"{task}{common}{prompt}\tsucceeded\t1\t1\t{NULL}\t{NULL}\t{url}\t{times}")
                    move(
                        "batch_capture",
                        task_outcome_key(task),
                        task,
                        tenant_text,
                        batch_text,
                        hold_account,
                        revenue,
                        price,
                        done_text,
                        model,
                    )
            status = "completed" if not failed else "failed" if not succeeded else "partial"
            settlement = "refunded" if failed else "settled"
            settled = finished + timedelta(milliseconds=500)
            batch_records.append(
                (
                    batch,
                    tenant,
                    hashlib.sha256(batch.bytes).hexdigest(),
                    status,
                    size,
                    frozen,
                    price,
                    available_before,
                    frozen,
                    settlement,
                    created,
                    created + timedelta(milliseconds=40),
                    finished,
                    settled,
                    succeeded,
                    failed,
                    0,
                    succeeded * price,
                    failed * price,
                    0,
                )
            )
            holds.append(
                (
                    batch,
                    tenant,
                    hold_account,
                    size,
                    frozen,
                    available_before,
                    available_before - frozen,
                    succeeded * price,
                    failed * price,
                    size,
                    0,
                    settlement,
                    settled,
                    created,
                    created.date().replace(day=1),
                )
            )
            lines.append((batch, model, price, size, cost, 0))
            if rng.random() < 0.3:  # a third of the batches asked for a webhook
                message_id = f"msg_{batch.hex}"
                body = f'{{"type":"batch.completed","data":{{"batch_id":"{batch}"}}}}'.encode()
                tries = 1 if rng.random() < 0.9 else 3
                messages.append(
                    (
                        message_id,
                        tenant,
                        batch,
                        "batch.completed",
                        body,
                        "https://example.com/hooks",
                        f"{batch}:batch.completed",
                        "delivered",
                        tries,
                        tries,
                        settled,
                        settled,
                    )
                )
                for number in range(1, tries + 1):
                    status_code = 200 if number == tries else 503
                    attempts.append(
                        (
                            message_id,
                            number,
                            settled + timedelta(seconds=number),
                            40,
                            status_code,
                            "" if status_code == 200 else "http_status",
                            "",
                        )
                    )
            if log and slot % 10_000 == 0 and slot:
                elapsed = time.perf_counter() - started
                print(f"  history: {slot:,} batches, {task_rows.rows:,} tasks ({elapsed:.0f} s)")
        for stream in (task_rows, transfer_rows, entry_rows):
            stream.flush()
        counts.update(
            tasks=task_rows.rows,
            transfers=transfer_rows.rows,
            ledger_entries=entry_rows.rows,
            batches=len(holds),
        )
    _load_small(
        dsn,
        rng,
        tenants,
        wallets,
        begin,
        hold_accounts,
        batch_records,
        holds,
        lines,
        messages,
        attempts,
        counts,
        shape,
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        _recreate(conn, before)
        after = _definitions(conn)
        if sorted(after) != sorted(before):
            raise AssertionError("the schema after loading differs from the migrations'")
        # The monthly summaries (ADR-152) their triggers would have kept, which were off.
        rebuild_summaries(conn)
        # The checkpoint a monthly reconciliation would have left (ADR-159; what migrating a
        # template of sealed months, ADR-154, makes of them): the start of the month an hour ago.
        # The template is checked (I1-I3, the summaries) before it is used.
        [(cutoff,)] = conn.execute(
            "SELECT date_trunc('month', (now() - interval '1 hour') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        ).fetchall()
        checkpoint = {"since": BEGINNING, "cutoff": cutoff, "full": True, **Amended().params()}
        conn.execute(ADD_ACCOUNT_TOTALS, checkpoint)
        conn.execute(ADD_OUTCOMES, checkpoint)
        [(entries, transfers)] = conn.execute(
            "SELECT (SELECT count(*) FROM billing.ledger_entries WHERE created_at < %(cutoff)s),"
            " (SELECT count(*) FROM billing.transfers WHERE created_at < %(cutoff)s)",
            checkpoint,
        ).fetchall()
        conn.execute(RECORD_CHECKPOINT, {"cutoff": cutoff, "entries": entries, "transfers": transfers})
        for table, column in (
            ("billing.accounts", "id"),
            ("billing.transfers", "id"),
            ("billing.ledger_entries", "id"),
            ("billing.video_access_log", "id"),
            ("webhook.attempts", "id"),
        ):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"(SELECT coalesce(max({column}), 0) + 1 FROM {table}), false)"
            )
    assert big_batch is not None
    return Generated(
        tenant_id=tenants[0],
        big_batch_id=big_batch,
        big_batch_items=sizes[0],
        months=sorted(months),
        counts=counts,
        seconds=time.perf_counter() - started,
    )


def _load_small(
    dsn: str,
    rng: random.Random,
    tenants: list[uuid.UUID],
    wallets: dict[uuid.UUID, _Wallet],
    begin: datetime,
    hold_accounts: list[tuple[Any, ...]],
    batch_records: list[tuple[Any, ...]],
    holds: list[tuple[Any, ...]],
    lines: list[tuple[Any, ...]],
    messages: list[tuple[Any, ...]],
    attempts: list[tuple[Any, ...]],
    counts: dict[str, int],
    shape: Shape,
) -> None:
    """The tables of a few hundred thousand rows at most, from memory; then the audit log."""
    opened = begin - timedelta(days=1)
    tables: list[tuple[str, tuple[str, ...], Iterator[tuple[Any, ...]] | list[tuple[Any, ...]]]] = [
        (
            "billing.tenants",
            ("id", "name", "created_at"),
            [(tenant, f"history studio {n}", opened) for n, tenant in enumerate(tenants)],
        ),
        (
            "billing.api_keys",
            ("id", "tenant_id", "key_hash", "key_prefix", "created_at"),
            [
                (_uuid(rng), tenant, hashlib.sha256(tenant.bytes).hexdigest(), "rb_hist", opened)
                for tenant in tenants
            ],
        ),
        (
            "billing.accounts",
            ("id", "kind", "tenant_id", "batch_id", "balance", "created_at"),
            [(wallets[t].account_id, "available", t, None, wallets[t].balance, opened) for t in tenants]
            + hold_accounts,
        ),
        (
            "billing.batch_holds",
            (
                "batch_id",
                "tenant_id",
                "hold_account_id",
                "item_count",
                "frozen",
                "available_before",
                "available_after",
                "captured",
                "refunded",
                "outcomes_applied",
                "released",
                "settlement_status",
                "settled_at",
                "created_at",
                "budget_period",
            ),
            holds,
        ),
        (
            "billing.batch_hold_lines",
            ("batch_id", "model", "unit_price", "count", "provider_cost_usd_micros", "duration_seconds"),
            lines,
        ),
        (
            "batch.batches",
            (
                "id",
                "tenant_id",
                "request_fingerprint",
                "status",
                "total_count",
                "required_credits",
                "cost_per_video",
                "available_snapshot",
                "frozen_credits",
                "settlement_status",
                "created_at",
                "queued_at",
                "finished_at",
                "settled_at",
                "succeeded_count",
                "failed_count",
                "cancelled_count",
                "credits_spent",
                "refunded_credits",
                "undispatched_count",
            ),
            batch_records,
        ),
        (
            "webhook.messages",
            (
                "id",
                "tenant_id",
                "batch_id",
                "event_type",
                "body",
                "url",
                "dedupe_key",
                "status",
                "attempt_count",
                "round_attempts",
                "created_at",
                "delivered_at",
            ),
            messages,
        ),
        (
            "webhook.attempts",
            (
                "message_id",
                "attempt_number",
                "attempted_at",
                "duration_ms",
                "http_status",
                "error_class",
                "response_body",
            ),
            attempts,
        ),
        (
            "billing.video_access_log",
            (
                "occurred_at",
                "tenant_id",
                "key_id",
                "client_address",
                "batch_id",
                "task_id",
                "mode",
                "via",
                "result",
            ),
            _access_rows(rng, batch_records, shape.tasks // 5),
        ),
    ]
    with psycopg.connect(dsn) as conn:
        conn.execute("SET session_replication_role = replica")
        for table, columns, rows in tables:
            written = 0
            with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                chunk: list[str] = []
                for row in rows:
                    chunk.append("\t".join(_copy_text(value) for value in row))
                    if len(chunk) >= _FLUSH_ROWS:
                        copy.write("\n".join(chunk) + "\n")
                        written += len(chunk)
                        chunk = []
                if chunk:
                    copy.write("\n".join(chunk) + "\n")
                    written += len(chunk)
            counts[table.split(".")[1]] = written
        conn.commit()


def _access_rows(
    rng: random.Random, batch_records: list[tuple[Any, ...]], count: int
) -> Iterator[tuple[Any, ...]]:
    """Plays and downloads of delivered videos, spread over the batches' lives."""
    for _ in range(count):
        record = batch_records[rng.randrange(len(batch_records))]
        batch, tenant, finished = record[0], record[1], record[12]
        yield (
            finished + timedelta(minutes=rng.randrange(1, 60 * 24 * 7)),
            tenant,
            "key",
            "203.0.113.7",
            batch,
            _uuid(rng),
            "play" if rng.random() < 0.8 else "download",
            "signed_link",
            "served",
        )
