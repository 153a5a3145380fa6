"""The usage page's chart, drawn on the server as inline SVG (no script, no chart library).

One group per UTC day: a bar of the credits frozen that day, stacked by model, and beside it a bar
of the credits given back. Everything here is geometry; the template only places the shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from services.gateway.schemas.console_money import UsageReport

WIDTH = 960
HEIGHT = 280
LEFT = 64
RIGHT = 12
TOP = 16
BOTTOM = 40
# Distinct colour classes for models (`series-N` in the stylesheet); more models reuse them.
SERIES = 6
# At most this many day labels under the axis (every n-th day is labelled).
MAX_DAY_LABELS = 12


@dataclass(frozen=True)
class Bar:
    """One rectangle; `kind` is its CSS class, `title` its tooltip."""

    x: float
    y: float
    width: float
    height: float
    kind: str
    title: str


@dataclass(frozen=True)
class AxisLabel:
    """A label at (x, y)."""

    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Legend:
    """A model and its colour class."""

    kind: str
    label: str


@dataclass(frozen=True)
class Chart:
    """The chart's shapes; `empty` when the period has no activity."""

    width: int
    height: int
    bars: tuple[Bar, ...]
    y_labels: tuple[AxisLabel, ...]
    x_labels: tuple[AxisLabel, ...]
    gridlines: tuple[float, ...]
    legend: tuple[Legend, ...]
    baseline: float
    empty: bool


def model_label(model: str) -> str:
    """A model's name; the row of settlement releases (no model) says what it is."""
    return model or "released at settlement"


def usage_chart(report: UsageReport) -> Chart:
    """The chart of a usage report: spend stacked by model and refunds, per day."""
    days = [report.start + timedelta(days=offset) for offset in range((report.end - report.start).days)]
    spent: dict[date, list[tuple[str, int]]] = {day: [] for day in days}
    refunded: dict[date, int] = dict.fromkeys(days, 0)
    for row in report.rows:
        if row.day in spent:
            if row.spent:
                spent[row.day].append((row.model, row.spent))
            refunded[row.day] += row.refunded
    top = max(
        [sum(credits for _, credits in stack) for stack in spent.values()] + list(refunded.values()) + [0]
    )
    series = {model: f"series-{index % SERIES}" for index, model in enumerate(m for m in report.models if m)}
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    baseline = TOP + plot_height
    slot = plot_width / max(len(days), 1)
    bar_width = max(slot * 0.38, 1.0)
    scale = plot_height / top if top else 0.0
    bars: list[Bar] = []
    for index, day in enumerate(days):
        x = LEFT + index * slot + slot * 0.1
        y = float(baseline)
        for model, credits in spent[day]:
            height = credits * scale
            y -= height
            bars.append(
                Bar(
                    x,
                    y,
                    bar_width,
                    height,
                    series.get(model, "series-0"),
                    f"{day} {model}: {credits:,} credits frozen",
                )
            )
        if refunded[day]:
            height = refunded[day] * scale
            bars.append(
                Bar(
                    x + bar_width,
                    baseline - height,
                    bar_width,
                    height,
                    "refund",
                    f"{day}: {refunded[day]:,} credits given back",
                )
            )
    step = max(1, -(-len(days) // MAX_DAY_LABELS))
    ticks = (0, top // 2, top) if top else (0,)
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        bars=tuple(bars),
        y_labels=tuple(AxisLabel(LEFT - 6, baseline - tick * scale + 4, f"{tick:,}") for tick in ticks),
        x_labels=tuple(
            AxisLabel(LEFT + index * slot + slot / 2, baseline + 18, f"{day:%m-%d}")
            for index, day in enumerate(days)
            if index % step == 0
        ),
        gridlines=tuple(baseline - tick * scale for tick in ticks),
        legend=(*(Legend(kind, model) for model, kind in series.items()), Legend("refund", "given back")),
        baseline=baseline,
        empty=top == 0,
    )
