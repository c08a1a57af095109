"""Everything the wire accepts, the collector can carry: random valid envelopes, extreme values included,
go through validate -> store (SQLite) -> the console's line page -> the CSV export -> the agent's report.

No step raises, none answers 500, each finishes within STEP_S. Before issue 16 the wire accepted values
(a date in year 9999 with a negative offset, a metric of 10**400, Infinity as a duration) that broke
the store or ingest itself; collector/web/charts.py's hang on tiny values is fixed separately.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from agent import report
from collector.api.accounts import Accounts
from collector.api.app import create_app
from collector.fleet import registry
from collector.ingest.worker import validate
from collector.store.database import Store
from linecheck.wire import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    NUMBER_BOUND,
    SHORT_TEXT,
    SMALL_DICT,
    ResultEnvelope,
    new_result_id,
    results_topic,
)

STEP_S = 20.0  # generous for a shared CI machine; a hang is what this catches, not a slow page
AGENT, LINE, SITE = "prop-gw", "prop-line", "prop-site"
PASSWORD = "correct-horse-battery"
T = TypeVar("T")

# --- strategies: valid by construction, biased to the edges of what the wire allows -------------------

EDGE_NUMBERS = [0, 0.0, -0.0, 1e-12, -1e-12, 5e-324, 1e-300, NUMBER_BOUND, -NUMBER_BOUND, int(NUMBER_BOUND),
                -int(NUMBER_BOUND), int(NUMBER_BOUND) - 1, 0.1, 99.99999999999999, 100.0]
numbers = st.one_of(st.sampled_from(EDGE_NUMBERS),
                    st.floats(-NUMBER_BOUND, NUMBER_BOUND, allow_nan=False, allow_infinity=False),
                    st.integers(-int(NUMBER_BOUND), int(NUMBER_BOUND)))
metric_values = st.one_of(st.none(), numbers)
names = st.from_regex(r"\A[a-z][a-z0-9_]{0,20}\Z", fullmatch=True)
text = st.text(max_size=80)
# The charts read these four; half the time a check carries them.
CHART_METRICS = ["down_mbps", "up_mbps", "rtt_avg_ms", "loss_pct"]


NOW = datetime.now(UTC).replace(microsecond=0)  # fixed: a strategy must draw the same way every time
_recent = st.datetimes(min_value=(NOW - timedelta(days=29)).replace(tzinfo=None), max_value=NOW.replace(tzinfo=None))
_anywhere = st.datetimes(min_value=EARLIEST_TIMESTAMP.replace(tzinfo=None),
                         max_value=(LATEST_TIMESTAMP - timedelta(days=1)).replace(tzinfo=None))
# Mostly within the charts' 30 days (so the charts draw them), else anywhere the wire allows, or its edges.
timestamps = st.one_of(_recent, _recent, _anywhere).map(lambda d: d.replace(tzinfo=UTC)) | st.sampled_from(
    [EARLIEST_TIMESTAMP, LATEST_TIMESTAMP - timedelta(microseconds=1), NOW])


@st.composite
def checks(draw: st.DrawFn) -> dict[str, Any]:
    metrics = draw(st.dictionaries(names, metric_values, max_size=6))
    if draw(st.booleans()):
        metrics.update({n: draw(metric_values) for n in CHART_METRICS})
    return {"kind": draw(names), "status": draw(st.sampled_from(["ok", "degraded", "failed", "error", "skipped"])),
            "reason": draw(st.one_of(st.none(), st.text(max_size=2000))), "metrics": metrics,
            "duration_s": draw(st.one_of(st.sampled_from([0, 0.0, 1e-12, NUMBER_BOUND]),
                                         st.floats(0, NUMBER_BOUND, allow_nan=False))),
            "target": draw(st.one_of(st.none(), st.text(max_size=255)))}


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(timestamps)
    end = draw(st.one_of(st.just(start), timestamps))
    offset = draw(st.sampled_from(["+00:00", "+08:00", "-23:59", "+23:59"]))
    info_values = st.one_of(metric_values, st.text(max_size=SHORT_TEXT))
    info = draw(st.dictionaries(st.text(min_size=1, max_size=64), info_values, max_size=SMALL_DICT))
    findings = draw(st.lists(st.fixed_dictionaries({
        "code": names, "severity": st.sampled_from(["warning", "critical"]),
        "check": st.one_of(st.none(), st.text(max_size=40)), "where": st.one_of(st.none(), st.text(max_size=40)),
        "message": st.text(max_size=1000),
        "detail": st.dictionaries(st.text(min_size=1, max_size=64),
                                  st.one_of(metric_values, st.text(max_size=SHORT_TEXT)), max_size=4)}), max_size=3))
    return {
        "schema": 1, "result_id": new_result_id(draw(st.integers(0, 2**48 - 1))), "agent_id": AGENT,
        "seq": draw(st.one_of(st.sampled_from([1, 2**63 - 1]), st.integers(1, 2**63 - 1))),
        "line_id": LINE, "site_id": SITE,
        "trigger": draw(st.sampled_from(["schedule", "resume_after_idle", "manual", "remote", "retest"])),
        "trigger_info": info, "started_at": _iso(start, offset), "ended_at": _iso(end, offset),
        "clock": {"synced": draw(st.one_of(st.none(), st.booleans())), "source": draw(st.one_of(st.none(), text)),
                  "max_error_ms": draw(metric_values)},
        "agent_version": draw(st.text(max_size=40)), "checks": draw(st.lists(checks(), max_size=4)),
        "verdict": draw(st.sampled_from(["healthy", "problems", "unknown"])), "findings": findings,
    }


def _iso(at: datetime, offset: str) -> str:
    """The instant `at` written with a UTC offset, as an agent in another zone would (within the bounds)."""
    sign = 1 if offset[0] == "+" else -1
    delta = sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
    try:
        local = (at + delta).replace(tzinfo=None)
    except OverflowError:
        return at.isoformat()
    return local.isoformat() + offset


# --- the collector the envelopes go through -----------------------------------------------------------


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, TestClient, dict[str, str]]]:
    path: Path = tmp_path_factory.mktemp("property")
    store = Store(f"sqlite:///{path}/c.db")
    with store.engine.begin() as conn:
        registry.import_registry(conn, registry.Registry.model_validate({
            "tenants": [{"tenant_id": "prop-carrier", "name": "Carrier", "kind": "carrier"}],
            "sites": [{"site_id": SITE, "tenant_id": "prop-carrier"}],
            "lines": [{"line_id": LINE, "tenant_id": "prop-carrier", "site_id": SITE, "plan_down_mbps": 500,
                       "plan_up_mbps": 300}],
            "agents": [{"agent_id": AGENT, "line_id": LINE, "report_interval_s": 600}]}))
    accounts = Accounts(store.engine)
    accounts.create_user("prop-op", "carrier_admin", None, PASSWORD, display_name="prop-op")
    token = accounts.issue_token("prop-op", name="tests")[1]
    with TestClient(create_app(store.engine)) as client:
        signed_in = client.post("/console/login", data={"user": "prop-op", "password": PASSWORD},
                                follow_redirects=False)
        assert signed_in.status_code == 303
        yield store, client, {"Authorization": f"Bearer {token}"}
    store.close()


def bounded(step: str, work: Callable[[], T]) -> T:
    """Run one step with a time bound: a hang fails the example instead of the whole run."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            box["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(STEP_S)
    if thread.is_alive():
        pytest.fail(f"{step} did not finish within {STEP_S:.0f} s")
    if "error" in box:
        raise box["error"]
    assert time.monotonic() - started < STEP_S
    return box["value"]  # type: ignore[no-any-return]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=envelopes())
def test_any_valid_envelope_survives_store_line_page_csv_and_report(
        collector: tuple[Store, TestClient, dict[str, str]], data: dict[str, Any]) -> None:
    store, client, bearer = collector
    payload = json.dumps(data).encode()
    verdict = bounded("validate", lambda: validate(results_topic(AGENT), payload, 256 * 1024))
    assert verdict.envelope is not None, verdict.reason  # valid by construction: the wire must take it
    env: ResultEnvelope = verdict.envelope
    bounded("store", lambda: store.ingest([env]))

    page = bounded("line page", lambda: client.get(f"/console/lines/{LINE}"))
    assert page.status_code == 200, page.text[:500]
    csv = bounded("CSV export", lambda: client.get("/api/v1/exports/results.csv",
                                                   params={"days": 366, "line_id": LINE}, headers=bearer))
    assert csv.status_code == 200, csv.text[:500]

    html = bounded("HTML report", lambda: report.render_html(env))
    assert "<html" in html.lower()
    out = io.StringIO()
    bounded("terminal report", lambda: report.render(env, Console(file=out, width=100)))
    assert out.getvalue()
