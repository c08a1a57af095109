"""The README's run command: the local stack stores a real result of this machine's line, beside the
demo's simulated offices (seeded once per work directory, left out with --no-demo-fleet)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker


def _stack(workdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linecheck.stack", "--workdir", str(workdir), "--port", "0",
                           "--http-port", "0", "--until-stored", "1", "--timeout", "60", *extra],
                          capture_output=True, text=True, timeout=180)


def _simulated_results(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM results WHERE agent_version LIKE '%-simulated'").fetchone()[0])


def test_local_stack_stores_a_result(tmp_path: Path) -> None:
    if not shutil.which("mosquitto") and not shutil.which("amqtt"):
        pytest.skip("no broker: neither mosquitto nor amqtt installed")
    out = _stack(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 result(s) stored" in out.stdout
    assert "linecheck-collector results --config" in out.stdout
    assert "/console/   user demo  password " in out.stdout  # the console, where, and how to sign in
    assert "4 offices marked \"demo (simulated)\" (seeded now with " in out.stdout
    seeded = _simulated_results(tmp_path / "linecheck.db")
    assert seeded > 0

    again = _stack(tmp_path)  # the same work directory: nothing seeded twice
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(seeded before; reporting again)" in again.stdout
    assert _simulated_results(tmp_path / "linecheck.db") == seeded

    alone = _stack(tmp_path, "--no-demo-fleet")
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "simulated" not in alone.stdout


@pytest.mark.postgres
def test_local_stack_on_postgresql_for_the_grafana_dashboards(tmp_path: Path, pg_url: str) -> None:
    """--database: the demo (with its simulated offices) on PostgreSQL, where the SQL dashboards read."""
    if not shutil.which("mosquitto") and not shutil.which("amqtt"):
        pytest.skip("no broker: neither mosquitto nor amqtt installed")
    from sqlalchemy import create_engine, text

    url = pg_url.replace("postgres@", "postgres:not-shown-pw@", 1)  # trust auth ignores it; the banner must not show it
    out = _stack(tmp_path, "--database", url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 result(s) stored" in out.stdout and "not-shown-pw" not in out.stdout
    assert not (tmp_path / "linecheck.db").exists()
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            by_version = dict(conn.execute(text(
                "SELECT agent_version LIKE '%-simulated', count(*) FROM results GROUP BY 1")).all())
            open_tickets = conn.execute(text("SELECT count(*) FROM tickets WHERE line_id LIKE 'sim-%'")).scalar_one()
    finally:
        engine.dispose()
    assert by_version[False] >= 1 and by_version[True] > 0 and open_tickets >= 3
