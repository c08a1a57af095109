"""Line charts as inline SVG, rendered on the server: no JavaScript, no charting library to vendor.

A missing value (a measurement that failed) breaks the line instead of dropping to zero: a gap
says "not measured", a zero would say "measured nothing".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from html import escape

from collector.web.clock import shown

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


# Values beyond this are clamped before any arithmetic: a schema-valid 1.79e308 must not overflow to inf
# (hi - lo, hi * 1.05), and no chart is read at that scale anyway.
MAX_ABS = 1e300
# The narrowest span an axis covers, relative to its values and absolutely: a span of 1e-12 would need
# a step no float sum can advance by (the loop that never ended), and no reader tells 1e-12 from 0.
MIN_SPAN_REL = 1e-9
MIN_SPAN_ABS = 1e-9
MAX_TICKS = 12


def _clamp(v: float) -> float:
    if v != v:  # NaN: the store refuses it, but a chart must not be the place that finds out
        return 0.0
    return min(MAX_ABS, max(-MAX_ABS, v))


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^n) covering [lo, hi]: at most count + 2 of them, for any floats."""
    count = max(2, min(count, MAX_TICKS - 2))
    lo, hi = _clamp(lo), _clamp(hi)
    if hi <= lo:
        hi = lo + 1
    span = max(hi - lo, MIN_SPAN_ABS, max(abs(lo), abs(hi)) * MIN_SPAN_REL)
    hi = max(hi, lo + span)
    raw = span / (count - 1)
    exponent = math.floor(math.log10(raw))
    mag = 10.0 ** exponent
    mult = next(s for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    step = mult * mag
    first = math.floor(lo / step)
    if first * step > lo:  # lo / step underflowed to -0.0 (a tiny negative under a huge step)
        first -= 1
    n = min(count + 1, max(1, math.ceil((hi - first * step) / step)))

    def tick(k: int) -> float:
        # k × step as a decimal: dividing by 10^-e, not multiplying by 10^e, keeps 0.3 from being 0.30000000000000004.
        return (k * mult) / 10.0 ** -exponent if exponent < 0 else k * step

    ticks = [tick(first + i) for i in range(n + 1)]
    if ticks[-1] < hi:  # rounding left the top a hair short: the top tick must cover the largest value
        ticks.append(tick(first + n + 1))
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e6 or abs(v) < 0.05:
        return f"{v:.3g}"
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.1f}"


def _time_label(ts: float, tz: tzinfo) -> str:
    try:  # the axis runs half an hour past the last point: past year 9999 there is no date to show
        return datetime.fromtimestamp(ts, tz).strftime("%m-%d %H:%M")
    except (ValueError, OverflowError, OSError):
        return ""


def render(chart: Chart, tz: tzinfo, empty_text: str = "no data") -> str:
    w, h = chart.width, chart.height
    left, right, top, bottom = 52, 16, 28, 40
    pw, ph = w - left - right, h - top - bottom
    pts = [(at, v) for s in chart.series for at, v in s.points]
    values = [_clamp(v) for _, v in pts if v is not None] + [_clamp(r.value) for r in chart.references]
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
    top_value = max(values)
    yticks = nice_ticks(min(0.0, min(values)), top_value + abs(top_value) * 0.05 or 1)
    y0, y1 = yticks[0], yticks[-1]

    def x(ts: float) -> float:
        return left + (ts - t0) / (t1 - t0) * pw

    def y(v: float) -> float:
        v = min(y1, max(y0, _clamp(v)))
        return top + ph - (v - y0) / (y1 - y0) * ph

    for tv in yticks:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(tv):.1f}" y2="{y(tv):.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y(tv) + 4:.1f}" text-anchor="end" class="tick">{_fmt(tv)}</text>')
    for i in range(5):
        ts = t0 + (t1 - t0) * i / 4
        label = _time_label(ts, tz)
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
                tip = f"{s.name} {shown(at, tz)}: {_fmt(v)} {chart.unit}"
                out.append(f'<circle cx="{x(at.timestamp()):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}">'
                           f'<title>{escape(tip)}</title></circle>')
        out.append(f'<rect x="{legend_x}" y="{h - 14}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{legend_x + 14}" y="{h - 5}" class="legend">{escape(s.name)}</text>')
        legend_x += 24 + 8 * len(s.name)
    out.append("</svg>")
    return "".join(out)
