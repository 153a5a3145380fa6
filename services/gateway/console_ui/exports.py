"""The console's CSV exports: usage and the filtered ledger (a statement's is the API's,
`StatementView.to_csv`).

Every figure is the one the page shows, from the same view models: credits as integers, dollars
exactly (US dollar micros written as dollars with six decimals, never through a float).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence

from services.gateway.console_ui.usage_chart import model_label
from services.gateway.http.csv_stream import csv_chunks
from services.gateway.schemas.console_money import LedgerLine, UsageReport

LEDGER_COLUMNS = (
    "created_at",
    "entry_id",
    "ref_type",
    "batch_id",
    "task_id",
    "model",
    "failure_type",
    "fault",
    "credits_delta",
    "balance_after",
    "ref_id",
    "ledger_transfer_id",
)
USAGE_COLUMNS = (
    "day",
    "model",
    "spent_credits",
    "refunded_credits",
    "net_credits",
    "spent_usd",
    "refunded_usd",
    "net_usd",
    "usd_per_credit",
)


def exact_usd(micros: int) -> str:
    """US dollar micros as dollars with six decimals, exactly (no float on the way)."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def usage_csv(report: UsageReport) -> str:
    """One line per UTC day and model, valued at the report's average paid price per credit."""
    return _table(
        USAGE_COLUMNS,
        (
            (
                row.day.isoformat(),
                model_label(row.model),
                row.spent,
                row.refunded,
                row.net,
                exact_usd(row.spent_micros),
                exact_usd(row.refunded_micros),
                exact_usd(row.net_micros),
                exact_usd(row.price_micros),
            )
            for row in report.rows
        ),
    )


def _ledger_row(line: LedgerLine) -> tuple[object, ...]:
    return (
        line.created_at.isoformat(),
        line.entry_id,
        line.ref_type,
        line.batch_id or "",
        line.task_id or "",
        line.model or "",
        line.reason.failure_type if line.reason else "",
        line.reason.fault if line.reason else "",
        line.credits_delta,
        line.balance_after,
        line.ref_id,
        line.ledger_transfer_id,
    )


def ledger_csv(lines: AsyncIterator[LedgerLine]) -> AsyncIterator[bytes]:
    """The ledger lines as CSV, a chunk at a time (constant memory for any number of lines)."""
    return csv_chunks(LEDGER_COLUMNS, (_ledger_row(line) async for line in lines))
