"""A speed the line cannot have carried says nothing about the line (issue 23 item 8).

A test against a server on the same host measured 24,840 Mbit/s on a 500M plan and the line was called
healthy. Such a figure — above three times the plan, or above the WAN port's negotiated speed — is
`implausible` in the one speed judgement (linecheck/speed.py): the collector's speed rule takes it as
neither a breach nor healthy evidence, and the promise ledger excludes it with the reason.
"""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from rich.console import Console

from agent.envelope import parse_draft
from agent.report import render
from collector.promises.criterion import SpeedCriterion
from collector.promises.model import SpeedPromise
from collector.promises.speed import Exclusion, judge_tests, sample_from_metrics
from collector.rules.engine import Plan, RuleEngine, RulesConfig
from linecheck import speed
from linecheck.i18n import Texts
from linecheck.wire import CheckResult, Status, Verdict
from tests.factory import envelope, link_check
from tests.mosquitto import free_port, wait_port

BIN = Path(sys.executable).parent

LOOPBACK = {"down_mbps": 24840.0, "up_mbps": 19950.0, "capacity_down_mbps": 24840.0,
            "capacity_up_mbps": 19950.0, "cross_traffic_high_flag": 0}


@pytest.mark.parametrize("measured, plan, port, implausible, pct", [
    (24840.0, 500.0, None, True, 4968.0),
    (480.0, 500.0, None, False, 96.0),
    (600.0, 500.0, None, False, 120.0),  # carriers provision above the plan
    (1600.0, 500.0, None, True, 320.0),
    (1200.0, 1000.0, 1000.0, True, 120.0),  # above the port's negotiated speed: cannot have crossed it
    (24840.0, None, None, False, None),  # no plan, no port: nothing to compare with
])
def test_implausible_and_share_of_plan(measured: float, plan: float | None, port: float | None, implausible: bool,
                                       pct: float | None) -> None:
    assert speed.implausible(measured, plan, port) is implausible
    j = speed.judge_speed({"capacity_down_mbps": measured}, "down", plan)
    assert j.pct_of_plan == pytest.approx(pct) if pct is not None else j.pct_of_plan is None
    if port is None:
        assert j.implausible is implausible
        assert j.slow is (None if implausible or plan is None else False)


def test_the_speed_rule_takes_it_as_neither_breach_nor_health() -> None:
    rules = RuleEngine(RulesConfig())
    fast = CheckResult(kind="throughput", status=Status.OK, duration_s=10, metrics=LOOPBACK)
    assert rules.observe("speed_below_plan", envelope("gw-1", "l-1", [link_check(), fast]), Plan(500.0, 300.0)) is None
    real = CheckResult(kind="throughput", status=Status.OK, duration_s=10,
                       metrics={**LOOPBACK, "down_mbps": 480.0, "capacity_down_mbps": 480.0,
                                "up_mbps": 290.0, "capacity_up_mbps": 290.0})
    seen = rules.observe("speed_below_plan", envelope("gw-1", "l-1", [link_check(), real]), Plan(500.0, 300.0))
    assert seen is not None and seen.breach is False  # the control: a plausible fast test is healthy evidence


def test_the_promise_ledger_excludes_it_with_the_reason() -> None:
    at = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
    promise = SpeedPromise(id="p", line_id="l-1", effective=date(2024, 1, 1), down_mbps=500, up_mbps=300)
    samples = [sample_from_metrics(f"r{i}", at, LOOPBACK) for i in range(3)]
    samples.append(sample_from_metrics("ok", at, {**LOOPBACK, "capacity_down_mbps": 480.0}))
    judged = judge_tests("down", promise, samples, SpeedCriterion(), None)
    assert [j.excluded for j in judged] == [Exclusion.IMPLAUSIBLE] * 3 + [None]
    assert judged[0].detail == "24840 Mbit/s is more than the line can carry (promised 500): the test did not " \
                               "cross this line"
    assert judged[3].passed is True


def _words_intact(text: str, rendered: str) -> list[str]:
    """Words of `text` that the rendering split across lines (or lost)."""
    flowing = rendered.split()
    return [w for w in text.split() if w not in flowing]


def test_a_loopback_speed_test_is_flagged_not_called_healthy(tmp_path: Path) -> None:
    """The issue's scenario with the real programs: linecheck-testserver on this host, linecheck-agent's
    throughput check against it on a 100M plan. Loopback carries gigabits: implausible, flagged, counted."""
    port = free_port()
    server = subprocess.Popen([str(BIN / "linecheck-testserver"), "--listen", f"127.0.0.1:{port}", "--no-stamp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: gw-lo\nline_id: line-lo\nsite_id: site-lo\ndata_dir: {tmp_path}/data\n"
                   "line: {wan_interface: lo, plan_down_mbps: 100, plan_up_mbps: 100}\n"
                   f"checks:\n  throughput: {{server: '127.0.0.1:{port}', max_direction_s: 2, min_measure_s: 0.5, "
                   "max_test_bytes: 400000000}\n")
    try:
        wait_port(port)
        out = subprocess.run([str(BIN / "linecheck-agent"), "check", "--config", str(cfg), "--only", "throughput",
                              "--no-spool", "--json"], capture_output=True, text=True, timeout=120)
    finally:
        server.terminate()
        server.wait(10)
    assert out.returncode == 1, out.stderr  # ran and found a problem: not "healthy" (0)
    env = parse_draft(out.stdout)  # --no-spool: an unnumbered draft (seq 0)
    (check,) = env.checks
    assert check.status is Status.ERROR, check
    assert check.metrics["down_plan_pct"] > 300 and list(check.metrics)[:2] == ["down_plan_pct", "up_plan_pct"]
    assert {(f.code, f.where) for f in env.findings} >= {("throughput_implausible", "agent")}
    assert env.verdict is Verdict.PROBLEMS

    for lang, said in (("en", "did not go through the line"), ("zh-CN", "测速流量没有经过线路")):
        buf = io.StringIO()  # what a pipe gets: no terminal, 80 columns
        render(env, Console(file=buf, width=80, color_system=None, force_terminal=False), lang)
        text = buf.getvalue()
        flowing = " ".join(text.split())
        assert said in (flowing if lang == "en" else flowing.replace(" ", "")), text
        assert ("of plan" if lang == "en" else "达套餐") in text, text
    advice = Texts("en").catalogue.findings["throughput_implausible"].advice
    buf = io.StringIO()
    render(env, Console(file=buf, width=80, color_system=None, force_terminal=False), "en")
    assert _words_intact(advice, buf.getvalue()) == []  # wrapped between words, never inside one
