"""A hostile user (or a hostile gateway's stored results) against the web face: charts, headers, sign-in,
sessions, tokens, exports, enrolment answers.

Every test here failed on the main of issue 16 and passes since; each names the guarantee it proves
(docs/security.md lists them next to these tests).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.web import charts
from tests.factory import envelope, ping_check
from tests.fleet_data import PASSWORD, Fleet

T = TypeVar("T")


def within(seconds: float, fn: Callable[[], T]) -> T:
    """fn() if it returns in time; a test failure (not a hung suite) if it does not."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)  # daemon: a runaway loop dies with the test process
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"did not finish within {seconds} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def login(client: TestClient, user: str) -> None:
    r = client.post("/console/login", data={"user": user, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303, r.text


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


# --- charts: total and bounded for every finite float -----------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)


def test_nice_ticks_ends_for_the_values_that_hung_or_broke_it() -> None:
    for lo, hi in ((0, 1e-12 * 1.05), (0, 1.79e308 * 1.0), (-1.79e308, 1.79e308), (0, 5e-324), (7, 7),
                   (1e300, 1e300), (-5, -5.25), (0, 0)):
        ticks = within(2, lambda lo=lo, hi=hi: charts.nice_ticks(lo, hi))
        assert 2 <= len(ticks) <= 7 and all(math.isfinite(v) for v in ticks), (lo, hi, ticks)


@settings(max_examples=300, deadline=None)
@given(lo=finite, hi=finite, count=st.integers(min_value=-3, max_value=50))
def test_nice_ticks_is_total_bounded_and_covers_the_range(lo: float, hi: float, count: int) -> None:
    ticks = within(2, lambda: charts.nice_ticks(lo, hi, count))
    assert 2 <= len(ticks) <= charts.MAX_TICKS
    assert all(math.isfinite(v) for v in ticks)
    assert all(a < b for a, b in zip(ticks, ticks[1:], strict=False)), ticks
    clamped_lo = max(-charts.MAX_ABS, min(charts.MAX_ABS, lo))
    clamped_hi = max(-charts.MAX_ABS, min(charts.MAX_ABS, hi))
    assert ticks[0] <= clamped_lo and ticks[-1] >= max(clamped_lo, clamped_hi)


points_in_time = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 31, 23, 59),
                              timezones=st.just(UTC))


@settings(max_examples=150, deadline=None)
@given(points=st.lists(st.tuples(points_in_time, st.one_of(st.none(), finite)), max_size=20),
       refs=st.lists(finite, max_size=2))
def test_render_is_total_for_any_finite_value_and_date(points: list[tuple[datetime, float | None]],
                                                       refs: list[float]) -> None:
    chart = charts.Chart("Latency", "ms", [charts.Series("rtt", points)], [charts.Reference(r, "ref") for r in refs])
    svg = within(5, lambda: charts.render(chart, ZoneInfo("Asia/Shanghai")))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "nan" not in svg and "inf" not in svg
    assert svg.count('class="tick"') <= charts.MAX_TICKS + 5  # y ticks plus the five time labels


@pytest.mark.parametrize("metrics", [{"loss_pct": 1e-12, "rtt_avg_ms": 5.0}, {"loss_pct": 0.0, "rtt_avg_ms": 1.79e308},
                                     {"loss_pct": 5e-324, "rtt_avg_ms": 1e-300}])
def test_a_line_page_with_extreme_stored_values_renders(client: TestClient, fleet: Fleet,
                                                        metrics: dict[str, float]) -> None:
    check = ping_check()
    check.metrics.update(metrics)
    fleet.store.ingest([envelope("acme-gw2", "acme-xuhui-2", checks=[check], site_id="acme-xuhui",
                                 started_at=datetime.now(UTC) - timedelta(minutes=5))])
    login(client, "a-admin")
    r = within(20, lambda: client.get("/console/lines/acme-xuhui-2"))
    assert r.status_code == 200 and r.text.count("<svg") == 3
