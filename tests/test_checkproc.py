"""The daemon's line checks run in a child process (agent/checkproc.py), and the daemon itself keeps
what only checks need out of memory (the footprint targets in docs/scaling.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent import config as agent_config
from agent.checkproc import config_for_child, failed_envelope, run_in_child
from agent.reasons import because, english
from linecheck.wire import ResultEnvelope, Status, Trigger, Verdict, utcnow

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_config_reaches_the_child_whole() -> None:
    cfg = agent_config.load(ROOT / "config" / "agent.example.yaml")
    again = agent_config.AgentConfig.model_validate(config_for_child(cfg))
    assert again == cfg
    assert again.checks["ping"].count == cfg.checks["ping"].count  # each kind's own fields, not just the base's


def test_the_child_runs_the_checks_and_returns_the_envelope(tmp_path: Path) -> None:
    cfg = agent_config.AgentConfig.model_validate({
        "agent_id": "child-gw", "line_id": "child-line", "site_id": "child-site", "data_dir": str(tmp_path),
        "line": {"wan_interface": "lo"},
        "checks": {"link": {"window_s": 0.1}, "ping": {"targets": ["127.0.0.1"], "count": 1}}})
    env = run_in_child(cfg, Trigger.REMOTE, skip={"ping": because("gate_closed")},
                       trigger_info={"command_id": "c-1"})
    assert (env.agent_id, env.trigger, env.trigger_info, env.seq) == ("child-gw", Trigger.REMOTE,
                                                                      {"command_id": "c-1"}, 0)
    statuses = {c.kind: (c.status, c.reason) for c in env.checks}
    assert statuses["ping"] == (Status.SKIPPED, "cross-traffic gate")  # the phrase crossed to the child and back
    assert [p.key for p in next(c for c in env.checks if c.kind == "ping").reason_parts] == ["gate_closed"]
    assert statuses["link"][0] is not Status.ERROR, statuses["link"]
    assert (tmp_path / "check-state.json").exists()  # the child keeps the checks' state where the daemon would


def test_only_limits_what_the_child_runs(tmp_path: Path) -> None:
    cfg = agent_config.AgentConfig.model_validate({
        "agent_id": "child-gw", "line_id": "child-line", "site_id": "child-site", "data_dir": str(tmp_path),
        "line": {"wan_interface": "lo"}, "checks": {"link": {"window_s": 0.1}, "ping": {"targets": ["127.0.0.1"]}}})
    env = run_in_child(cfg, Trigger.IDLE_WATCHDOG, only=["link"])
    assert [c.kind for c in env.checks] == ["link"]


def test_a_child_that_failed_still_yields_a_record_per_check(tmp_path: Path) -> None:
    cfg = agent_config.AgentConfig.model_validate({"agent_id": "child-gw", "line_id": "child-line",
                                                   "site_id": "child-site", "data_dir": str(tmp_path)})
    budget = because("budget_used_up", used_mb=900, budget_mb=1000, estimate_mb=400)
    env = failed_envelope(cfg, Trigger.SCHEDULE, ["link", "ping"], {"ping": budget}, {"x": 1},
                          utcnow(), because("child_exited", status=-9))
    assert [(c.kind, c.status, c.reason) for c in env.checks] == [
        ("link", Status.ERROR, "check process exited with status -9 (see the agent's log)"),
        ("ping", Status.SKIPPED, english(budget))]
    assert env.verdict is Verdict.UNKNOWN and env.trigger_info == {"x": 1}
    ResultEnvelope.model_validate({**env.model_dump(by_alias=True), "seq": 1})  # a valid wire record


def test_the_daemon_does_not_load_what_only_checks_and_reports_need() -> None:
    code = "import sys, agent.cli, agent.daemon; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = set(out.stdout.split())
    heavy = ["scapy", "dns.resolver", "dns.message", "rich", "agent.runner", "agent.report",
             "agent.throughput.engine", "agent.throughput.backends"]
    assert [m for m in sorted(loaded) if any(m == h or m.startswith(h + ".") for h in heavy)] == []
