"""Line charts as inline SVG, rendered on the server: no JavaScript, no charting library to vendor.

A missing value (a measurement that failed) breaks the line instead of dropping to zero: a gap
says "not measured", a zero would say "measured nothing".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from html import escape

PALETTE = ("#1f6feb", "#d97706", "#15803d", "#9333ea", "#dc2626")


@dataclass
class Series:
    name: str
    points: list[tuple[datetime, float | None]]
    color: str | None = None


@dataclass
class Reference:
    """A horizontal line, e.g. the promised rate."""

    value: float
    label: str
    color: str = "#dc2626"


@dataclass
class Chart:
    title: str
    unit: str
    series: list[Series]
    references: list[Reference] = field(default_factory=list)
    width: int = 720
    height: int = 240


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^n) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    ticks = [math.floor(lo / step) * step]
    while ticks[-1] < hi:  # the top tick must cover the largest value, or the line leaves the plot
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.1f}"


def render(chart: Chart, tz: tzinfo, empty_text: str = "no data") -> str:
    w, h = chart.width, chart.height
    left, right, top, bottom = 52, 16, 28, 40
    pw, ph = w - left - right, h - top - bottom
    pts = [(at, v) for s in chart.series for at, v in s.points]
    values = [v for _, v in pts if v is not None] + [r.value for r in chart.references]
    out = [f'<svg class="chart" viewBox="0 0 {w} {h}" width="100%" role="img" '
           f'aria-label="{escape(chart.title)}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{left}" y="16" class="chart-title">{escape(chart.title)} ({escape(chart.unit)})</text>']
    if not pts or not values:
        out.append(f'<text x="{w / 2}" y="{h / 2}" text-anchor="middle" class="chart-empty">'
                   f'{escape(empty_text)}</text>')
        out.append("</svg>")
        return "".join(out)
    t0 = min(at for at, _ in pts).timestamp()
    t1 = max(at for at, _ in pts).timestamp()
    if t1 - t0 < 60:
        t0, t1 = t0 - 1800, t1 + 1800
    yticks = nice_ticks(min(0.0, min(values)), max(values) * 1.05 or 1)
    y0, y1 = yticks[0], yticks[-1]

    def x(ts: float) -> float:
        return left + (ts - t0) / (t1 - t0) * pw

    def y(v: float) -> float:
        return top + ph - (v - y0) / (y1 - y0) * ph

    for tv in yticks:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(tv):.1f}" y2="{y(tv):.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y(tv) + 4:.1f}" text-anchor="end" class="tick">{_fmt(tv)}</text>')
    for i in range(5):
        ts = t0 + (t1 - t0) * i / 4
        label = datetime.fromtimestamp(ts, tz).strftime("%m-%d %H:%M")
        out.append(f'<text x="{x(ts):.1f}" y="{h - bottom + 16}" text-anchor="middle" class="tick">{label}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>')
    for ref in chart.references:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(ref.value):.1f}" y2="{y(ref.value):.1f}" '
                   f'stroke="{ref.color}" class="ref"/><text x="{left + pw - 4}" y="{y(ref.value) - 4:.1f}" '
                   f'text-anchor="end" class="ref-label" fill="{ref.color}">{escape(ref.label)}</text>')
    legend_x = left
    for n, s in enumerate(chart.series):
        color = s.color or PALETTE[n % len(PALETTE)]
        # Consecutive measured points form one polyline; a None starts a new one (a visible gap).
        runs: list[list[str]] = [[]]
        for at, v in sorted(s.points, key=lambda p: p[0]):
            if v is None:
                runs.append([])
                continue
            runs[-1].append(f"{x(at.timestamp()):.1f},{y(v):.1f}")
        for run in runs:
            if len(run) > 1:
                out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" class="series"/>')
        for at, v in s.points:
            if v is not None:
                tip = f"{s.name} {at.astimezone(tz):%Y-%m-%d %H:%M}: {_fmt(v)} {chart.unit}"
                out.append(f'<circle cx="{x(at.timestamp()):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}">'
                           f'<title>{escape(tip)}</title></circle>')
        out.append(f'<rect x="{legend_x}" y="{h - 14}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{legend_x + 14}" y="{h - 5}" class="legend">{escape(s.name)}</text>')
        legend_x += 24 + 8 * len(s.name)
    out.append("</svg>")
    return "".join(out)
