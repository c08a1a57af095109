"""Nearest server on the line lab (issue 22 item 4): an agent configured with two test servers uses the one
with the lowest idle round trip that has room, and says which in its result.

The far server sits across the emulated line (20 ms round trip: tests/lineemu.py); the near one in the
gateway's own namespace (tens of microseconds). The far one is listed first: the order is the agent's
choice, not the config's. Then another office holds the near one's only slot: the agent uses the far one.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.lab import GW_ADDR, SERVER_ADDR, LineLab

pytestmark = pytest.mark.lab
FAR, NEAR = f"{SERVER_ADDR}:8083", f"{GW_ADDR}:8084"


def serve(lab: LineLab, ns: str, address: str, *extra: str) -> None:
    proc = lab.popen(ns, [sys.executable, "-m", "testserver.cli", "--listen", address, "--no-stamp", "--workers", "1",
                          *extra], stdout=subprocess.PIPE)
    assert proc.stdout is not None and b"http listening" in proc.stdout.readline()


def status() -> dict:
    conn = http.client.HTTPConnection(GW_ADDR, 8084, timeout=5)
    try:
        conn.request("GET", "/status")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def check(lab: LineLab, tmp_path: Path, n: int) -> dict:
    cfg = tmp_path / f"agent{n}.yaml"
    cfg.write_text(f"agent_id: lab-gw\nline_id: lab-line\nsite_id: lab-site\ndata_dir: {tmp_path}/data{n}\n"
                   f"line:\n  wan_interface: {lab.gw_if}\n"
                   f"checks:\n  throughput: {{servers: ['{FAR}', '{NEAR}'], directions: [down], "
                   f"max_test_bytes: 20000000, max_direction_s: 3, busy_retries: 0, timeout_s: 40}}\n")
    out = lab.run(lab.gw, [sys.executable, "-m", "agent.cli", "check", "--json", "--no-spool", "--config", str(cfg)])
    assert out.stdout, out.stderr
    (result,) = json.loads(out.stdout)["checks"]
    return result


def test_the_agent_uses_the_nearest_server_with_room(line_lab: LineLab, line: Callable[..., None],
                                                     tmp_path: Path) -> None:
    line(down=dict(delay_ms=10), up=dict(delay_ms=10))
    serve(line_lab, line_lab.carrier, FAR)
    serve(line_lab, line_lab.gw, NEAR, "--max-tests", "1", "--idle-s", "1")
    first = check(line_lab, tmp_path, 1)
    assert first["target"] == f"linecheck://{NEAR}", first
    assert first["metrics"]["down_mbps"] is not None
    with line_lab.inside(line_lab.gw):
        wait_for(lambda: status()["tests_running"] == 0, 10, "the first test to idle out")
        # Another office's test holds the near server's only slot: a download it does not read stays open.
        holder = http.client.HTTPConnection(GW_ADDR, 8084, timeout=5)
        holder.request("GET", "/download?bytes=1000000000&test=someone-else")
        assert holder.getresponse().status == 200 and status()["tests_running"] == 1
    try:
        second = check(line_lab, tmp_path, 2)
    finally:
        holder.close()
    assert second["target"] == f"linecheck://{FAR}", second
    assert second["metrics"]["latency_idle_ms"] >= 19  # it crossed the emulated line
