"""Alerts per day by severity as a stacked bar chart, laid out here and drawn as inline
SVG by the template: no script, no external asset, readable without colour (titles)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

SEVERITIES = ("High", "Medium", "Low", "Informational")
COLORS = {"High": "#cf222e", "Medium": "#bc4c00", "Low": "#bf8700", "Informational": "#8c959f"}
WIDTH, HEIGHT = 720, 220
LEFT, BOTTOM, TOP = 40, 30, 10


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    label: str


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Bar] = field(default_factory=list)
    days: list[tuple[float, str]] = field(default_factory=list)  # x, label
    ticks: list[tuple[float, int]] = field(default_factory=list)  # y, value
    legend: list[tuple[str, str, int]] = field(default_factory=list)  # severity, colour, n
    total: int = 0
    baseline: float = HEIGHT - BOTTOM


def axis_top(value: int) -> int:
    """The smallest round number (1, 2, 5 times a power of ten) at or above `value`, so
    the tallest bar fills at least 40% of the plot (150 gets 200, never 1,000)."""
    power = 1
    while True:
        for step in (1, 2, 5):
            if step * power >= value:
                return step * power
        power *= 10


def axis_ticks(top: int) -> list[int]:
    """The labelled values: 0, the middle when it is a whole number, and the top."""
    return [0, top // 2, top] if top % 2 == 0 else [0, top]


def daily_chart(per_day: dict[tuple[str, str], int], last_day: date, days: int = 14
                ) -> Chart:
    """Stacked bars for the `days` days ending on `last_day`, High at the bottom."""
    chart = Chart()
    dates = [last_day - timedelta(days=days - 1 - i) for i in range(days)]
    totals = [sum(per_day.get((d.isoformat(), s), 0) for s in SEVERITIES) for d in dates]
    top = axis_top(max(totals, default=0) or 1)
    plot_height = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / days
    for i, day in enumerate(dates):
        x = LEFT + i * slot + slot * 0.15
        y = chart.baseline
        for severity in SEVERITIES:
            count = per_day.get((day.isoformat(), severity), 0)
            if not count:
                continue
            height = plot_height * count / top
            y -= height
            chart.bars.append(Bar(round(x, 1), round(y, 1), round(slot * 0.7, 1),
                                  round(height, 1), COLORS[severity],
                                  f"{day.isoformat()}: {count} {severity}"))
        chart.days.append((round(x + slot * 0.35, 1), day.strftime("%d %b")))
    for value in axis_ticks(top):
        chart.ticks.append((round(chart.baseline - plot_height * value / top, 1), value))
    for severity in SEVERITIES:
        count = sum(per_day.get((d.isoformat(), severity), 0) for d in dates)
        chart.legend.append((severity, COLORS[severity], count))
    chart.total = sum(totals)
    return chart
