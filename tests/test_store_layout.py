"""The result layout of migration 13: one row per result with a compact document, views of the old tables'
shape over it, day partitions on PostgreSQL dropped by retention, and the online copy of an old database
(filled with the fleet simulator's results) into the new layout."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from bench import legacy_layout
from bench.fleet_sim import build_result, profile_of
from collector.store import documents, partitions, relayout, retention
from collector.store import schema as t
from collector.store.database import MIGRATIONS, Store, make_engine, migrate
from collector.store.migrations import LEGACY_RESULTS
from collector.tickets import lifecycle as tickets
from linecheck.wire import CheckResult, ClockState, Finding, ResultEnvelope, Status
from tests.factory import BASE, envelope, finding, link_check, ping_check, throughput_check
from tests.test_store_retention import expiring_results


def _odd_envelope() -> ResultEnvelope:
    """Every optional part the document prunes or keeps: nulls, empties, details, a clock, trigger info."""
    checks = [link_check(up=False), ping_check(100.0), throughput_check(None),
              CheckResult(kind="dns", status=Status.OK, duration_s=0, metrics={}, reason="", target="")]
    found = [finding("line_down"), Finding(code="x_y", severity="warning", message="m", detail={"k": 1.5, "s": "t"})]
    e = envelope("gw-odd", "line-odd", checks, found, reason="manual")
    return e.model_copy(update={"clock": ClockState(synced=True, source="ntp", max_error_ms=None)})


@pytest.mark.parametrize("make", [_odd_envelope, lambda: envelope("gw", "line", [])])
def test_document_round_trip_gives_back_the_same_envelope(make) -> None:  # type: ignore[no-untyped-def]
    e = make()
    doc = documents.pack(e)
    assert not set(documents.TYPED) & set(doc)  # typed columns are not repeated in the document
    row = {k: getattr(e, k) for k in documents.TYPED} | {"doc": doc, "trigger": e.trigger.value,
                                                          "verdict": e.verdict.value}
    assert documents.envelope(row) == e
    assert ResultEnvelope.from_json(documents.payload_json(row)) == e


def _expected_rows(e: ResultEnvelope) -> tuple[set, set, set]:  # type: ignore[type-arg]
    """What the old checks, metrics and findings tables held for one result (ingest of schema version 12)."""
    checks = {(e.result_id, i, e.line_id, c.kind, c.target, c.status.value, c.reason, float(c.duration_s))
              for i, c in enumerate(e.checks)}
    metrics = {(e.result_id, i, n, None if v is None else float(v)) for i, c in enumerate(e.checks)
               for n, v in c.metrics.items()}
    found = {(e.result_id, i, e.line_id, f.code, f.severity, f.check, f.where, f.message)
             for i, f in enumerate(e.findings)}
    return checks, metrics, found


def test_views_hold_the_rows_the_old_tables_held(db_url: str) -> None:
    store = Store(db_url)
    try:
        sent = [_odd_envelope(), envelope("gw", "line", [link_check(), ping_check(2.5, 9.25)])]
        store.ingest(sent)
        c, m, f = t.checks.c, t.metrics.c, t.findings.c
        with store.engine.connect() as conn:
            checks = {tuple(r) for r in conn.execute(select(c.result_id, c.idx, c.line_id, c.kind, c.target, c.status,
                                                            c.reason, c.duration_s))}
            metrics = {tuple(r) for r in conn.execute(select(m.result_id, m.idx, m.name, m.value))}
            found = {tuple(r) for r in conn.execute(select(f.result_id, f.idx, f.line_id, f.code, f.severity,
                                                           f.check_kind, f.location, f.message))}
            times = set(conn.execute(select(c.started_at).where(c.result_id == sent[1].result_id)).scalars())
            placed = set(conn.execute(select(m.result_id, m.line_id, m.started_at)).all())
        want = [_expected_rows(e) for e in sent]
        assert checks == want[0][0] | want[1][0]
        assert metrics == want[0][1] | want[1][1]  # an unmeasured value stays null, never 0
        assert found == want[0][2] | want[1][2]
        assert times == {sent[1].started_at}
        assert placed == {(e.result_id, e.line_id, e.started_at) for e in sent}  # metrics carry line and start
    finally:
        store.close()


def _daily(conn) -> set:  # type: ignore[no-untyped-def, type-arg]
    return {(r.day, r.line_id, r.kind, r.name, r.samples, r.total, r.minimum, r.maximum, r.results, r.failed)
            for r in conn.execute(select(t.daily_metrics))}


def _retention_scenario(url: str) -> tuple[set, set, int]:  # type: ignore[type-arg]
    """Two expired days (one result cited by a ticket) and a recent one; returns (daily rows, results left, folded)."""
    store = Store(url)
    try:
        day1, down, day2, recent = expiring_results()
        with store.engine.begin() as conn:  # on PostgreSQL the old days get their partitions, as if created ahead
            partitions.ensure_days(conn, [BASE.date(), (BASE + timedelta(days=1)).date()])
        store.ingest([*day1, down, day2, recent])
        with store.engine.begin() as conn:
            tickets.open_ticket(conn, line_id="l-1", fault_class="line_down", summary="down",
                                evidence=[("gw", day1[0].result_id)])
        cfg = retention.RetentionConfig(raw_days=90, aggregate_days=0, batch=100)
        with store.engine.begin() as conn:
            folded = retention.apply(conn, cfg)["folded"]
        with store.engine.begin() as conn:
            assert retention.apply(conn, cfg)["folded"] == 0  # counted once
            left = set(conn.execute(select(t.results.c.result_id)).scalars())
            state = conn.execute(select(t.line_state.c.result_id).where(t.line_state.c.line_id == "l-2")).scalar()
            assert state is None  # l-2's only result went with its day
            assert {day1[0].result_id, recent.result_id} == left
            return _daily(conn), left, folded
    finally:
        store.close()


def test_dropping_day_partitions_folds_the_same_figures_as_row_retention(pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    by_rows = _retention_scenario(f"sqlite:///{tmp_path}/rows.db")
    by_days = _retention_scenario(pg_url)
    assert by_days[2] == by_rows[2] == 3
    assert by_days[0] == by_rows[0] and len(by_rows[0]) >= 8
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            days = {p.day for p in partitions.day_partitions(conn)}
            # The expired days are gone as tables; the cited result lives on in the default partition.
            assert BASE.date() not in days and (BASE + timedelta(days=1)).date() not in days
            assert datetime.now(UTC).date() in days
            where = conn.execute(text("SELECT tableoid::regclass::text FROM results WHERE started_at < :d"),
                                 {"d": BASE + timedelta(days=2)}).scalars().all()
            assert where == ["results_default"]
    finally:
        engine.dispose()


def test_a_day_created_late_takes_its_rows_from_the_default_partition(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        early = [envelope("gw", "l-1", started_at=BASE + timedelta(hours=h)) for h in range(3)]
        store.ingest(early)
        with store.engine.begin() as conn:
            assert partitions.ensure_days(conn, [BASE.date()]) == [f"results_p{BASE:%Y%m%d}"]
            assert partitions.ensure_days(conn, [BASE.date()]) == []  # once
        with store.engine.connect() as conn:
            homes = conn.execute(text("SELECT tableoid::regclass::text, count(*) FROM results GROUP BY 1")).all()
        assert homes == [(f"results_p{BASE:%Y%m%d}", 3)]
        assert store.ingest([envelope("gw", "l-1", started_at=BASE + timedelta(hours=5))])  # lands in the new day
    finally:
        store.close()


def _fleet(agents: int, per_agent: int) -> list[ResultEnvelope]:
    rng = random.Random(19)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    return [build_result(f"sim-gw-{a:03d}", f"sim-line-{a:03d}", f"site-{a % 7}", s + 1,
                         start + timedelta(hours=s, minutes=a), profile_of(a, down_every=5, latency_every=7), rng)
            for s in range(per_agent) for a in range(agents)]


def test_an_old_database_moves_to_the_new_layout_online(db_url: str) -> None:
    fleet = _fleet(agents=20, per_agent=15)  # 300 results from the fleet simulator, some lines down or slow
    engine = make_engine(db_url)
    with engine.begin() as conn:
        legacy_layout.create(conn)
        legacy_layout.write(conn, fleet)
    with engine.connect() as conn:
        old = {name: conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
               for name in ("results", "checks", "metrics", "findings")}
    assert old["results"] == 300 and old["findings"] > 0
    assert migrate(engine) == len(MIGRATIONS)  # the schema step: instant, the old rows wait in results_v12

    store = Store(db_url)
    try:
        # While the copy has not reached it, a re-sent old result is a duplicate, and a new one is stored.
        fresh = envelope("sim-gw-000", "sim-line-000", started_at=datetime.now(UTC), site_id="site-0")
        outcome = store.ingest_outcome([fleet[0], fresh])
        assert (outcome.new, outcome.refused) == ({("sim-gw-000", fresh.result_id)}, {})
        first = relayout.run(engine, batch=100, max_batches=1)
        assert (first.copied, first.inserted, first.left) == (100, 100, 200)
        # Stopped here; a copier started again goes on where it stopped and drops the old table when done.
        rest = relayout.run(engine, batch=64)
        assert (rest.copied, rest.inserted, rest.left) == (200, 200, 0)
        with engine.connect() as conn:
            assert not relayout.legacy_exists(conn)
            new = {name: conn.execute(text(f"SELECT count(*) FROM {name} WHERE result_id <> :f"),
                                      {"f": fresh.result_id}).scalar_one()
                   for name in ("results", "checks", "metrics", "findings")}
            stored = {r["result_id"]: documents.envelope(r) for r in conn.execute(select(t.results)).mappings()}
        assert new == old
        assert all(stored[e.result_id] == e for e in fleet)
        assert relayout.run(engine).copied == 0  # nothing left to do
        assert store.ingest([fleet[1]]) == set()  # now found in the new table
    finally:
        store.close()
        engine.dispose()


def test_a_batch_that_does_not_land_whole_is_rolled_back(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            legacy_layout.create(conn)
            legacy_layout.write(conn, _fleet(agents=3, per_agent=2))
        migrate(engine)
        # An insert that silently keeps only part of the batch (e.g. a rule or trigger on the new table).
        real = relayout._insert
        monkeypatch.setattr(relayout, "_insert", lambda conn, rows: real(conn, rows[:-1]))
        with pytest.raises(relayout.CopyMismatch):
            relayout.run(engine, batch=10)
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT count(*) FROM {LEGACY_RESULTS}")).scalar_one() == 6
            assert conn.execute(select(func.count()).select_from(t.results)).scalar_one() == 0
    finally:
        engine.dispose()
