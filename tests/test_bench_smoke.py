"""Tiny runs of the scale benchmarks (bench/), so the scripts cannot rot. The figures live in docs/scaling.md."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench.fleet_sim import FleetSim
from tests.helpers import collector_config, start, stop
from tests.mosquitto import Broker


def test_fleet_sim_resends_until_receipted_and_faulty_lines_get_tickets(broker: Broker, tmp_path: Path) -> None:
    # Published before any collector subscribed, the first copies are dropped by the broker: only
    # re-sending (as the real agent does) gets them stored.
    sim = FleetSim("127.0.0.1", broker.port, 12, connections=2, resend_after_s=0.5, down_every=5, latency_every=5)
    try:
        sim.connect()
        sim.preload(48)
        sim.run()
        assert sim.wait_published(30)
        proc = start("collector.cli", "serve", "--config", str(collector_config(tmp_path, broker.port)),
                     log=tmp_path / "collector.log")
        try:
            assert sim.wait_receipts(60), sim.counts()
        finally:
            stop(proc)
    finally:
        sim.close()
    counts = sim.counts()
    assert counts["sent"] == counts["receipted"] == 48
    assert counts["resent"] >= 1
    db = sqlite3.connect(tmp_path / "collector.db")
    try:
        assert db.execute("SELECT count(*), count(DISTINCT result_id) FROM results").fetchone() == (48, 48)
        tickets = dict(db.execute("SELECT fault_class, count(*) FROM tickets GROUP BY fault_class").fetchall())
    finally:
        db.close()
    assert tickets == dict(sim.expected_tickets()) == {"line_down": 3, "high_latency": 2}


def test_scale_pg_bench_runs_and_reports_ratios(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # pg_url only proves PostgreSQL is reachable (else skip); the bench makes its own databases.
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed")
    from bench import scale_pg

    code = scale_pg.main(["--agents", "40", "--results", "200", "--collectors", "1,2", "--rounds", "1",
                          "--kill-agents", "40", "--kill-results", "100", "--resend-after", "0.5",
                          "--kill-rate", "50", "--timeout", "60"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| 1 | " in out and "| 2 | " in out and "1.00x" in out
    assert out.count("lost=0 duplicates=0") == 2 and "session_expiry_s 5: 2 collectors" in out
    assert "errors: none" in out


@pytest.mark.lab  # the bench builds the line lab (network namespaces, a shaped line): it runs alone, in phase B
def test_agent_footprint_bench_measures_every_figure(tmp_path: Path) -> None:
    """bench/agent_footprint.py end to end, with a 3 s idle window instead of 600 s."""
    import json
    import os
    import subprocess
    import sys

    if os.geteuid() != 0 or not shutil.which("mosquitto"):
        pytest.skip("the footprint bench needs root (line lab) and mosquitto")
    out_json = tmp_path / "footprint.json"
    bench = Path(__file__).resolve().parent.parent / "bench" / "agent_footprint.py"
    done = subprocess.run([sys.executable, str(bench), "--idle-s", "3", "--sample-s", "1", "--down-mbit", "100",
                           "--up-mbit", "100", "--json", str(out_json)], capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    fig = json.loads(out_json.read_text())
    assert fig["failures"] == {}
    assert fig["reference"]["rss"] > 0 and fig["startup_s"] > 0
    assert fig["check"]["statuses"]["throughput"] == "ok" and fig["check"]["wall_s"] > 0
    assert fig["check"]["peak_tree_rss_mb"] >= fig["fresh"]["rss"]
    assert fig["idle"]["samples"] >= 2 and fig["idle"]["cpu_pct"] >= 0
    assert "targets:" in done.stdout and "reference" in done.stdout


API_AT_SIZE = Path(__file__).resolve().parent.parent / "bench" / "api_at_size.py"


def test_api_at_size_loads_serves_measures_and_cleans_up(pg_url: str) -> None:
    # pg_url: skips without PostgreSQL; the bench makes (and drops) its own databases beside it.
    import psycopg

    admin = pg_url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    run = subprocess.run([sys.executable, str(API_AT_SIZE), "--no-cache", "--lines", "300",
                          "--results-per-line", "4", "--ref-lines", "100", "--samples", "2"],
                         capture_output=True, text=True, timeout=120, cwd=API_AT_SIZE.parent.parent)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "300 lines x 4 results = 1,200 results" in out
    for label in ("overview, operator", "lines deep page (?after=)", "console: fleet", "console: promises"):
        row = next(line for line in out.splitlines() if line.startswith(label))
        p50, p95, p99 = (float(x) for x in row[38:].split()[:3])
        assert 0 < p50 <= p95 <= p99
    assert "TARGET MET" in out or "TARGET MISSED" in out
    # Only this run's databases: the server is shared, and a run killed elsewhere may have left its own.
    made = re.findall(r"results in (linecheck_apisize_(?:run|ref)_[0-9a-f]{8})", out)
    assert len(made) == 2, out
    with psycopg.connect(admin) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (made,)).fetchall()
    assert left == []


def test_ingest_bench_compares_the_collector_with_the_bare_subscriber(tmp_path: Path) -> None:
    from bench.ingest import measure

    figures = measure(tmp_path, agents=20, results=100, timeout_s=60)
    assert figures.stored == figures.distinct == 100
    assert figures.tickets == figures.expected_tickets == {"line_down": 1, "high_latency": 1}
    assert figures.bare_s > 0 and figures.collector_s > 0 and figures.peak_rss_mb > 0
    assert "ratio collector/bare" in figures.report()


def test_storm_bench_drains_a_queued_backlog_correctly(tmp_path: Path) -> None:
    from bench.storm import measure

    figures = measure(tmp_path, agents=30, results=150, timeout_s=60)
    assert figures.correct, figures.report()
    assert figures.statuses == 30 and figures.resent == 0
    assert figures.tickets == {"line_down": 1, "high_latency": 1}
    assert "peak collector RSS" in figures.report()
