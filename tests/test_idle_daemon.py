"""The real agent daemon: a gateway that was powered off for ten days runs one resume check at start."""

from __future__ import annotations

import json
import time
from pathlib import Path

from agent.spool import Spool
from linecheck.wire import ResultEnvelope, Trigger
from tests.helpers import start, stop, wait_for
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
