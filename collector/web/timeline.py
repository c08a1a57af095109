"""The outage timeline of a line's page: one row per local day, 24 hours across, a bar per outage the agent's
heartbeat reported (collector/rules/outages.py reads them). A line that drops at 09:00 every morning shows
a column of bars; a line that dropped once shows one. Server-side SVG like the charts (no JavaScript);
each bar's tooltip gives start and end with the zone's offset, the length and where it broke.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta, tzinfo
from html import escape

from collector.rules.outages import StoredOutage
from collector.web.clock import shown

COLORS = {"link": "#dc2626", "gateway": "#ea580c", "beyond": "#ca8a04"}
MIN_BAR = 1.5  # px: a 20 s outage on a 24 h row would be invisible


def render(outages: Sequence[StoredOutage], today: date, days: int, tz: tzinfo, title: str, empty_text: str,
           where_words: dict[str, str]) -> str:
    """SVG of the last `days` local days ending `today` (newest at the top)."""
    width, left, right, top, row = 720, 88, 16, 28, 18
    pw = width - left - right
    height = top + days * row + 30
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
           f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>']
    rows = [today - timedelta(days=i) for i in range(days)]
    for i, day in enumerate(rows):
        y = top + i * row
        out.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" class="tick">{day.isoformat()}</text>'
                   f'<rect x="{left}" y="{y + 2}" width="{pw}" height="{row - 4}" class="grid" fill="none"/>')
    for hour in (0, 6, 12, 18, 24):
        x = left + pw * hour / 24
        out.append(f'<text x="{x:.1f}" y="{top + days * row + 14}" text-anchor="middle" class="tick">'
                   f'{hour:02d}:00</text>')
    shown_any = False
    for o in outages:
        start = datetime.fromtimestamp(o.start, tz)
        end = datetime.fromtimestamp(o.start + o.duration_s, tz)
        while start < end:  # an outage across midnight is drawn on each day it touches
            day = start.date()
            if day in rows:
                midnight = datetime.combine(day, datetime.min.time(), tz)
                stop = min(end, midnight + timedelta(days=1))
                x0 = left + pw * (start - midnight).total_seconds() / 86400
                x1 = left + pw * (stop - midnight).total_seconds() / 86400
                y = top + rows.index(day) * row
                tip = (f"{shown(datetime.fromtimestamp(o.start, tz), tz)} – "
                       f"{shown(datetime.fromtimestamp(o.start + o.duration_s, tz), tz)}: {o.duration_s:.0f} s, "
                       f"{where_words.get(o.where, o.where)}")
                out.append(f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(MIN_BAR, x1 - x0):.1f}" height="{row - 4}" '
                           f'fill="{COLORS.get(o.where, "#dc2626")}"><title>{escape(tip)}</title></rect>')
                shown_any = True
            start = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    if not shown_any:
        out.append(f'<text x="{left + pw / 2}" y="{top + days * row / 2 + 4}" text-anchor="middle" '
                   f'class="chart-empty">{escape(empty_text)}</text>')
    out.append("</svg>")
    return "".join(out)
