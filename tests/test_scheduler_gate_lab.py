"""Cross-traffic gate in the line lab, with real cross-traffic (iperf3) on the emulated line.

The agent daemon runs inside the gateway namespace, where its traffic monitor reads the lab's
WAN interface; the carrier namespace runs linecheck-testserver. While iperf3 pushes 20 Mbit/s up
the line, a scheduled run defers its throughput test, retries, gives up and records it as
`skipped` with the reason; a manual check at the same time runs the test (on-demand checks
bypass the gate) and reports the cross-traffic it measured. Once the line is quiet the gate lets
the scheduled throughput test through.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.envelope import parse_draft
from agent.spool import Spool
from linecheck.wire import ResultEnvelope, Status, Trigger
from tests.helpers import wait_for
from tests.lab import CARRIER_ADDR, SERVER_ADDR, LineLab
from tests.mosquitto import free_port

pytestmark = pytest.mark.lab


def config(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"agent_id: gw-gate\nline_id: l1\nsite_id: s1\ndata_dir: {tmp_path}/{name}-data\n"
        f"mqtt: {{host: 127.0.0.1, port: {free_port()}}}\n"  # no broker: results stay in the spool
        "schedule:\n  interval_s: 3600\n  jitter_s: 0\n  first_delay_s: 0\n"
        "  gate: {threshold_kbps: 200, sample_s: 0.5, retry_s: 0.5, max_wait_s: 2}\n"
        "idle: {sample_s: 60}\n"
        f"checks:\n  link: {{window_s: 0.1}}\n  ping: {{targets: ['{CARRIER_ADDR}'], count: 3, interval_s: 0.05}}\n"
        f"  throughput: {{server: '{SERVER_ADDR}:8080', directions: [up], max_direction_s: 3, timeout_s: 30}}\n")
    return path


def spooled(data: Path) -> list[ResultEnvelope]:
    if not (data / "spool.sqlite").exists():
        return []
    spool = Spool(data / "spool.sqlite")
    try:
        return [ResultEnvelope.from_json(p.payload) for p in spool.due(100, resend_after_s=-1e9)]
    finally:
        spool.close()


def scheduled_result(lab: LineLab, cfg: Path, data: Path, log: Path) -> ResultEnvelope:
    agent = lab.popen(lab.gw, [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)],
                      stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        return wait_for(lambda: next((e for e in spooled(data) if e.trigger is Trigger.SCHEDULE), None), 30,
                        "the scheduled result")
    finally:
        agent.terminate()
        agent.wait(10)


def wan_tx_bytes(lab: LineLab) -> int:
    return int(lab.run(lab.gw, ["cat", f"/sys/class/net/{lab.gw_if}/statistics/tx_bytes"]).stdout)


def test_gate_defers_then_skips_scheduled_run_while_manual_runs(lab: LineLab, tmp_path: Path) -> None:
    if not shutil.which("iperf3"):
        pytest.skip("iperf3 is not installed (scripts/setup.sh --test installs it)")
    lab.shape(down_mbit=100, up_mbit=100)
    server = lab.popen(lab.carrier, [sys.executable, "-m", "testserver.cli", "--listen", f"{SERVER_ADDR}:8080",
                                     "--no-stamp"], stdout=subprocess.PIPE)
    assert server.stdout is not None and b"http listening" in server.stdout.readline()
    lab.popen(lab.carrier, ["iperf3", "-s", "-B", CARRIER_ADDR, "-p", "5201"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: ":5201" in lab.run(lab.carrier, ["ss", "-ltn"]).stdout, 10, "iperf3 to listen")
    before = wan_tx_bytes(lab)
    cross = lab.popen(lab.gw, ["iperf3", "-c", CARRIER_ADDR, "-p", "5201", "-t", "120", "-b", "20M"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: wan_tx_bytes(lab) > before + 2_000_000, 15, "cross-traffic on the WAN")

    busy_cfg = config(tmp_path, "busy")
    env = scheduled_result(lab, busy_cfg, tmp_path / "busy-data", tmp_path / "busy.log")
    by_kind = {c.kind: c for c in env.checks}
    reason = by_kind["throughput"].reason or ""
    assert by_kind["throughput"].status is Status.SKIPPED and by_kind["throughput"].metrics == {}
    assert "cross-traffic gate" in reason and "stayed above 200 kbit/s" in reason
    assert by_kind["ping"].status is Status.OK  # the rest of the check still ran
    assert env.trigger_info["gate_wan_kbps"] > 10_000  # it saw the ~20 Mbit/s
    assert 2 <= env.trigger_info["gate_waited_s"] < 10  # deferred (retried) before giving up

    manual = lab.run(lab.gw, [sys.executable, "-m", "agent.cli", "check", "--json", "--no-spool", "--only",
                              "throughput", "--config", str(busy_cfg)], timeout=60)
    assert manual.returncode in (0, 1, 3), manual.stderr
    mine = parse_draft(manual.stdout)  # --no-spool: validated, not numbered (seq 0, agent/envelope.py)
    (tp,) = [c for c in mine.checks if c.kind == "throughput"]
    assert mine.trigger is Trigger.MANUAL and tp.status is not Status.SKIPPED, tp.reason
    assert "gate_waited_s" not in mine.trigger_info
    cross_up = tp.metrics["cross_traffic_up_mbps"]
    assert isinstance(cross_up, float | int) and 10 < cross_up < 30  # it ran, and accounted for the 20 Mbit/s

    cross.terminate()
    cross.wait(10)
    quiet = scheduled_result(lab, config(tmp_path, "quiet"), tmp_path / "quiet-data", tmp_path / "quiet.log")
    (tp,) = [c for c in quiet.checks if c.kind == "throughput"]
    assert tp.status is not Status.SKIPPED and quiet.trigger_info["gate_wan_kbps"] < 200
    assert isinstance(tp.metrics["up_mbps"], float) and tp.metrics["up_mbps"] > 80
