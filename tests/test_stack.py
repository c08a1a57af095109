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
