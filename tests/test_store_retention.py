"""Retention on SQLite and PostgreSQL: expired raw results fold into daily figures exactly once and
are deleted (with their checks and metrics), except those a ticket cites; old daily rows expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from collector.store import retention
from collector.store import schema as t
from collector.store.database import Store
from collector.tickets import lifecycle as tickets
from linecheck.wire import ResultEnvelope
from tests.factory import BASE, envelope, finding, link_check, ping_check


def expiring_results() -> tuple[list[ResultEnvelope], ResultEnvelope, ResultEnvelope, ResultEnvelope]:
    """Two results and a line-down one on BASE's day (line l-1), one the next day (line l-2), one recent (l-1)."""
    day1 = [envelope("gw", "l-1", [link_check(), ping_check(0.0, 4.0)], started_at=BASE + timedelta(hours=h))
            for h in (1, 2)]
    down = envelope("gw", "l-1", [link_check(up=False), ping_check(100.0)], [finding("line_down")],
                    started_at=BASE + timedelta(hours=3))
    day2 = envelope("gw-2", "l-2", [link_check(), ping_check(30.0, 9.0)], started_at=BASE + timedelta(days=1))
    recent = envelope("gw", "l-1", started_at=datetime.now(UTC) - timedelta(days=1))
    return day1, down, day2, recent


def test_raw_results_fold_into_daily_figures_and_cited_ones_stay(db_url: str) -> None:
    store = Store(db_url)
    try:
        day1, down, day2, recent = expiring_results()
        store.ingest([*day1, down, day2, recent])
        with store.engine.begin() as conn:
            tickets.open_ticket(conn, line_id="l-1", fault_class="line_down", summary="down",
                                evidence=[("gw", day1[0].result_id)])
        cfg = retention.RetentionConfig(raw_days=90, aggregate_days=0, batch=100)
        with store.engine.begin() as conn:
            assert retention.apply(conn, cfg) == {"folded": 3, "expired_days": 0}  # 4 expired, 1 cited
        with store.engine.begin() as conn:
            assert retention.apply(conn, cfg) == {"folded": 0, "expired_days": 0}  # counted once
            left = set(conn.execute(select(t.results.c.result_id)).scalars())
            orphans = conn.execute(select(func.count()).select_from(t.checks).where(
                t.checks.c.result_id.in_([day1[1].result_id, down.result_id]))).scalar()
            rows = {(r.day, r.kind, r.name): r for r in conn.execute(select(t.daily_metrics))}
        assert left == {day1[0].result_id, recent.result_id} and orphans == 0
        loss = rows[(BASE.date(), "ping", "loss_pct")]
        assert (loss.samples, loss.total, loss.minimum, loss.maximum, loss.results) == (2, 100.0, 0.0, 100.0, 2)
        rtt = rows[(BASE.date(), "ping", "rtt_avg_ms")]  # the down result measured no RTT: null, not 0
        assert (rtt.samples, rtt.total, rtt.minimum) == (1, 4.0, 4.0)
        link = rows[(BASE.date(), "link", "_check")]
        assert (link.results, link.failed) == (2, 1)
        assert rows[((BASE + timedelta(days=1)).date(), "ping", "loss_pct")].total == 30.0

        # A later round adds to the same day (the cited result, once its ticket no longer needs it).
        with store.engine.begin() as conn:
            conn.execute(t.ticket_evidence.delete())
            assert retention.apply(conn, cfg)["folded"] == 1
            loss = conn.execute(select(t.daily_metrics).where(t.daily_metrics.c.day == BASE.date(),
                                                              t.daily_metrics.c.name == "loss_pct")).one()
        assert (loss.samples, loss.total, loss.minimum, loss.maximum, loss.results) == (3, 100.0, 0.0, 100.0, 3)

        with store.engine.begin() as conn:
            expired = retention.apply(conn, retention.RetentionConfig(raw_days=0, aggregate_days=365))
            assert expired["expired_days"] > 0
            assert conn.execute(select(func.count()).select_from(t.daily_metrics)).scalar() == 0
    finally:
        store.close()
