"""The console's money views without any service: the usage chart's geometry, exact dollars, and
CSV exports whose sums are the report's."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

from services.gateway.console_ui.exports import exact_usd, ledger_csv, usage_csv
from services.gateway.console_ui.usage_chart import usage_chart
from services.gateway.schemas.console_money import (
    FailureReason,
    LedgerLine,
    UsageReport,
    UsageRow,
)

PRICE = 15_000  # 1.5 cents a credit


def report() -> UsageReport:
    rows = (
        UsageRow(date(2026, 12, 1), "sora-2", 200, 10, PRICE),
        UsageRow(date(2026, 12, 1), "veo-3", 100, 0, PRICE),
        UsageRow(date(2026, 12, 3), "sora-2", 50, 50, PRICE),
        UsageRow(date(2026, 12, 3), "", 0, 5, PRICE),
    )
    return UsageReport(date(2026, 12, 1), date(2026, 12, 5), rows, PRICE, 600, 300, 100)


def test_the_chart_stacks_each_days_spend_by_model_and_scales_the_tallest_bar_to_the_plot() -> None:
    chart = usage_chart(report())

    first_day = [bar for bar in chart.bars if "2026-12-01" in bar.title]
    spend = [bar for bar in first_day if bar.kind.startswith("series-")]
    assert [bar.kind for bar in spend] == ["series-0", "series-1"]
    assert round(sum(bar.height for bar in spend), 6) == round(chart.baseline - 16, 6)
    assert spend[1].y + spend[1].height == spend[0].y
    refunds = [bar for bar in chart.bars if bar.kind == "refund"]
    assert len(refunds) == 2
    assert round(refunds[0].height * 20, 6) == round(spend[0].height, 6)  # 10 against 200 credits
    assert [label.text for label in chart.y_labels] == ["0", "150", "300"]
    assert [legend.label for legend in chart.legend] == ["sora-2", "veo-3", "given back"]
    assert not chart.empty


def test_an_idle_period_draws_an_empty_chart() -> None:
    idle = UsageReport(date(2026, 12, 1), date(2026, 12, 8), (), 0, 0, 0, 0)

    chart = usage_chart(idle)

    assert chart.empty and chart.bars == () and len(chart.x_labels) == 7


def test_dollars_are_exact_to_the_micro() -> None:
    assert [exact_usd(value) for value in (0, 1, 15_000, -2_500_001, 123_456_789_012)] == [
        "0.000000",
        "0.000001",
        "0.015000",
        "-2.500001",
        "123456.789012",
    ]


def test_the_usage_csv_sums_to_the_report_and_values_each_credit_at_the_average_price() -> None:
    usage = report()

    rows = list(csv.DictReader(io.StringIO(usage_csv(usage))))

    assert sum(int(row["spent_credits"]) for row in rows) == usage.spent == 350
    assert sum(int(row["refunded_credits"]) for row in rows) == usage.refunded == 65
    for row in rows:
        assert row["spent_usd"] == exact_usd(int(row["spent_credits"]) * PRICE)
        assert row["net_usd"] == exact_usd((int(row["spent_credits"]) - int(row["refunded_credits"])) * PRICE)
    assert rows[-1]["model"] == "released at settlement"


async def test_the_ledger_csv_carries_each_refunds_task_model_and_fault() -> None:
    moment = datetime(2026, 12, 1, tzinfo=UTC)
    lines = [
        LedgerLine(
            "2",
            "batch_refund",
            "t-1",
            "b-1",
            "t-1",
            "sora-2",
            10,
            4810,
            moment,
            FailureReason.of("content_policy", "no"),
        ),
        LedgerLine("1", "batch_upfront", "b-1", "b-1", None, None, -200, 4800, moment),
    ]

    async def source() -> AsyncIterator[LedgerLine]:
        for line in lines:
            yield line

    text = b"".join([chunk async for chunk in ledger_csv(source())]).decode()
    rows = list(csv.DictReader(io.StringIO(text)))

    assert sum(int(row["credits_delta"]) for row in rows) == -190
    assert (rows[0]["task_id"], rows[0]["model"], rows[0]["failure_type"], rows[0]["fault"]) == (
        "t-1",
        "sora-2",
        "content_policy",
        "customer_input",
    )
