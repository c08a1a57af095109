"""The real agent daemon: resume after a power-off, and watchdog then resume on a quiet lab line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.spool import Spool
from linecheck.wire import ResultEnvelope, Trigger
from tests.helpers import start, stop, wait_for
from tests.lab import CARRIER_ADDR, LineLab
from tests.mosquitto import free_port

DAY = 86400.0


def spooled(data: Path) -> list[ResultEnvelope]:
    if not (data / "spool.sqlite").exists():
        return []
    spool = Spool(data / "spool.sqlite")
    try:
        return [ResultEnvelope.from_json(p.payload) for p in spool.due(1000, resend_after_s=-1e9)]
    finally:
        spool.close()


def test_daemon_runs_one_resume_check_after_a_long_power_off(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    now = time.time()
    # What the agent saved before the office switched the gateway off ten days ago (another boot).
    (data / "idle-state.json").write_text(json.dumps({
        "version": 1, "boot_id": "a-previous-boot", "boot_time": now - 12 * DAY,
        "last_seen": now - 10 * DAY, "last_active": now - 10 * DAY - 3600, "counters": [10**9, 10**8, None]}))
    cfg = tmp_path / "agent.yaml"
    # No broker on this port: results stay in the spool, where the test reads them.
    cfg.write_text(f"agent_id: gw-idle\nline_id: l1\nsite_id: s1\ndata_dir: {data}\n"
                   f"mqtt: {{host: 127.0.0.1, port: {free_port()}}}\n"
                   "schedule: {interval_s: 3600, jitter_s: 0, first_delay_s: 3600}\n"
                   "idle: {sample_s: 1, resume_delay_s: 0}\n"
                   "checks:\n  link: {window_s: 0.1}\n")
    agent = start("agent.cli", "run", "--config", str(cfg), log=tmp_path / "agent.log")
    try:
        (env,) = wait_for(lambda: spooled(data), 30, "the resume check in the spool")
        assert env.trigger is Trigger.RESUME_AFTER_IDLE
        assert 10 * DAY + 3600 <= env.trigger_info["idle_s"] <= 10 * DAY + 3700
        state = wait_for(lambda: (s := json.loads((data / "idle-state.json").read_text()))
                         .get("pending_resume_idle_s", 1) is None and s, 10, "the resume to be marked done")
        assert state["resumes"] == 1 and state["boot_id"] != "a-previous-boot"
    finally:
        stop(agent)
    # A restart on the same boot does not resume again.
    agent = start("agent.cli", "run", "--config", str(cfg), log=tmp_path / "agent2.log")
    try:
        wait_for(lambda: json.loads((data / "idle-state.json").read_text())["last_seen"] > state["last_seen"],
                 15, "the restarted agent to take a traffic sample")
        assert [e.trigger for e in spooled(data)] == [Trigger.RESUME_AFTER_IDLE]
    finally:
        stop(agent)


def wan_bytes(lab: LineLab) -> list[int]:
    stats = f"/sys/class/net/{lab.gw_if}/statistics"
    out = lab.run(lab.gw, ["sh", "-c", f"cat {stats}/rx_bytes {stats}/tx_bytes"]).stdout.split()
    return [int(out[0]), int(out[1])]


@pytest.mark.lab
def test_idle_line_gets_watchdog_then_one_resume_when_traffic_returns(lab: LineLab, tmp_path: Path) -> None:
    """In the line lab: a quiet WAN four days after the last activity → watchdog (scheduled check paused);
    then traffic on the line → exactly one resume check, however long the traffic goes on."""
    if not shutil.which("iperf3"):
        pytest.skip("iperf3 is not installed (scripts/setup.sh --test installs it)")
    data = tmp_path / "data"
    data.mkdir()
    now = time.time()
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    (data / "idle-state.json").write_text(json.dumps({
        "version": 1, "boot_id": boot_id, "boot_time": now - 30 * DAY, "last_seen": now - 60,
        "last_active": now - 4 * DAY, "counters": [*wan_bytes(lab), None]}))
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: gw-idle\nline_id: l1\nsite_id: s1\ndata_dir: {data}\n"
                   f"mqtt: {{host: 127.0.0.1, port: {free_port()}}}\n"
                   "schedule: {interval_s: 3600, jitter_s: 0, first_delay_s: 0}\n"
                   "idle: {sample_s: 1, resume_delay_s: 0, wan_threshold_kbps: 500}\n"
                   f"checks:\n  link: {{window_s: 0.1}}\n  ping: {{targets: ['{CARRIER_ADDR}'], count: 2}}\n"
                   "  dns: {}\n")
    log = tmp_path / "agent.log"
    agent = lab.popen(lab.gw, [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg), "--log-level", "DEBUG"],
                      stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        (dog,) = wait_for(lambda: spooled(data), 30, "the idle watchdog")
        assert dog.trigger is Trigger.IDLE_WATCHDOG and dog.trigger_info["idle_s"] >= 4 * DAY
        assert {c.kind for c in dog.checks} >= {"link", "ping"} and "dns" not in {c.kind for c in dog.checks}
        wait_for(lambda: "office idle: scheduled check skipped" in log.read_text(), 10, "the paused schedule")

        lab.popen(lab.carrier, ["iperf3", "-s", "-B", CARRIER_ADDR, "-p", "5201"],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: ":5201" in lab.run(lab.carrier, ["ss", "-ltn"]).stdout, 10, "iperf3 to listen")
        lab.popen(lab.gw, ["iperf3", "-c", CARRIER_ADDR, "-p", "5201", "-t", "60", "-b", "5M"],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # the office is back
        resume = wait_for(lambda: [e for e in spooled(data) if e.trigger is Trigger.RESUME_AFTER_IDLE], 30,
                          "the resume check")
        assert len(resume) == 1 and resume[0].trigger_info["idle_s"] >= 4 * DAY
        assert {c.kind for c in resume[0].checks} >= {"link", "ping", "dns"}  # the full check
        # Traffic goes on: several more active samples, and still exactly one resume.
        marker = len(log.read_text())
        wait_for(lambda: log.read_text()[marker:].count(": active") >= 3, 20, "three more active samples")
        assert [e.trigger for e in spooled(data)].count(Trigger.RESUME_AFTER_IDLE) == 1
    finally:
        agent.terminate()
        agent.wait(10)
