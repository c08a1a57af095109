"""Rule evaluation as a pure function: evidence about one line in, outcomes out, no database.

Each case builds a line's evidence by hand (its fresh results, its recent results per class, open
tickets, re-tests) and names the outcomes `RuleEngine.evaluate` must conclude, in order. The
database half (loading evidence, applying outcomes) is tested end to end in tests/test_rules.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from collector.rules.engine import (
    Answer,
    AskRetest,
    LineEvidence,
    Open,
    OpenTicket,
    PendingRetest,
    Plan,
    Resolve,
    RuleEngine,
    RulesConfig,
)
from linecheck.wire import CheckResult, ResultEnvelope, Status, Trigger
from tests.factory import BASE, envelope, finding, link_check, ping_check

LINE, AGENT = "l-1", "gw-1"
PLAN = Plan(500.0, 300.0)


def at(minute: int) -> datetime:
    return BASE + timedelta(days=30, minutes=minute)


def down(minute: int) -> ResultEnvelope:
    return envelope(AGENT, LINE, [link_check(up=False), ping_check(loss_pct=100)],
                    [finding("line_down"), finding("packet_loss")], started_at=at(minute))


def healthy(minute: int, **kw: object) -> ResultEnvelope:
    return envelope(AGENT, LINE, started_at=at(minute), **kw)  # type: ignore[arg-type]


def lossy(minute: int, **kw: object) -> ResultEnvelope:
    return envelope(AGENT, LINE, [link_check(), ping_check(loss_pct=30)], [finding("packet_loss")],
                    started_at=at(minute), **kw)  # type: ignore[arg-type]


def slow(minute: int, down_mbps: float | None, flag: int = 0, stable: int | None = None,
         interrupted: int | None = None, **kw: object) -> ResultEnvelope:
    speed = CheckResult(kind="throughput", status=Status.FAILED if interrupted else Status.OK, duration_s=10,
                        metrics={"down_mbps": down_mbps, "up_mbps": 280.0, "cross_traffic_high_flag": flag,
                                 "stable_down_flag": stable, "interrupted_down_flag": interrupted})
    return envelope(AGENT, LINE, [link_check(), ping_check(), speed], started_at=at(minute), **kw)  # type: ignore[arg-type]


@dataclass
class Case:
    name: str
    cls: str  # the class whose recent results `history` is
    history: list[ResultEnvelope]  # oldest first; the newest `fresh` of them arrived in this batch
    fresh: int = 1
    open: dict[str, OpenTicket] = field(default_factory=dict)
    refuted: dict[str, datetime] = field(default_factory=dict)
    outstanding: list[PendingRetest] = field(default_factory=list)
    rules: dict = field(default_factory=dict)
    expect: Callable[[list[ResultEnvelope]], list[object]] = lambda h: []


def ids(results: list[ResultEnvelope]) -> tuple[tuple[str, str], ...]:
    return tuple((r.agent_id, r.result_id) for r in results)


def kinds(outcomes: list[object]) -> list[tuple[str, str]]:
    return [(type(o).__name__, getattr(o, "fault_class", "")) for o in outcomes]


CASES = [
    Case("one breach opens nothing", "line_down", [healthy(0), down(1)]),
    Case("2 of the last 3 breach, the newest too: line_down opens with both as evidence", "line_down",
         [healthy(0), down(1), healthy(2), down(3)],
         expect=lambda h: [("Open", "line_down", ids([h[1], h[3]]))]),
    Case("a fault that already cleared opens nothing", "line_down", [down(0), down(1), healthy(2)], fresh=3),
    Case("3 of 5 lossy: packet_loss asks the agent for a re-test of what it ran", "packet_loss",
         [lossy(0), lossy(1), lossy(2)], expect=lambda h: [("AskRetest", "packet_loss", ["ping"])]),
    Case("a re-test already on its way: nothing more", "packet_loss", [lossy(0), lossy(1), lossy(2), lossy(3)],
         outstanding=[PendingRetest("c-1", "packet_loss")]),
    Case("breaches before a healthy re-test do not count again", "packet_loss",
         [lossy(0), lossy(1), lossy(2), lossy(4)], refuted={"packet_loss": at(3)}),
    Case("the re-test confirms: answer, then open with the re-test as evidence", "packet_loss",
         [lossy(0), healthy(1), lossy(2), lossy(3), lossy(4, trigger=Trigger.RETEST, command_id="c-1")],
         outstanding=[PendingRetest("c-1", "packet_loss")],
         expect=lambda h: [("Answer", "packet_loss", "confirmed"), ("Open", "packet_loss", ids([h[0], h[2], h[3]]))]),
    Case("the re-test is healthy: refuted, no ticket", "packet_loss",
         [lossy(0), lossy(1), lossy(2), healthy(3, trigger=Trigger.RETEST, command_id="c-1")],
         outstanding=[PendingRetest("c-1", "packet_loss")],
         expect=lambda h: [("Answer", "packet_loss", "refuted")]),
    Case("an answer to another command is not this command's answer", "packet_loss",
         [lossy(0), lossy(1), lossy(2), healthy(3, trigger=Trigger.RETEST, command_id="c-2")],
         outstanding=[PendingRetest("c-1", "packet_loss")]),
    Case("an open ticket resolves after K healthy results newer than its last breach", "line_down",
         [down(0), down(1), healthy(2), healthy(3)], open={"line_down": OpenTicket(at(1))},
         expect=lambda h: [("Resolve", "line_down", ids([h[2], h[3]]))]),
    Case("healthy results older than the last breach do not resolve", "line_down",
         [down(0), healthy(2), healthy(3)], open={"line_down": OpenTicket(at(5))}),
    Case("a ticket opened in this evaluation is not resolved in it", "line_down",
         [healthy(0), healthy(1)], open={"line_down": OpenTicket(just_opened=True)}),
    Case("the silent agent reported: agent_offline resolves", "line_down", [healthy(0)],
         open={"agent_offline": OpenTicket()}, expect=lambda h: [("Resolve", "agent_offline", ids([h[0]]))]),
    Case("speed below half the plan twice opens speed_below_plan", "speed_below_plan",
         [slow(0, 260), slow(1, 240), slow(2, 230)], rules={"speed_below_plan": {"retest": False, "breaches": 2,
                                                                                 "window": 3}},
         expect=lambda h: [("Open", "speed_below_plan", ids([h[1], h[2]]))]),
    Case("speed tests the agent did not trust (cross-traffic) open nothing", "speed_below_plan",
         [slow(0, 90, flag=1), slow(1, 90, flag=1), slow(2, 90, flag=1)],
         rules={"speed_below_plan": {"retest": False, "breaches": 2, "window": 3}}),
    Case("tests a cap stopped before the rate settled open nothing (issue 21)", "speed_below_plan",
         [slow(0, 90, stable=0), slow(1, 90, stable=0), slow(2, 90, stable=0)],
         rules={"speed_below_plan": {"retest": False, "breaches": 2, "window": 3}}),
    Case("tests the line interrupted open nothing", "speed_below_plan",
         [slow(0, None, interrupted=1), slow(1, None, interrupted=1), slow(2, None, interrupted=1)],
         rules={"speed_below_plan": {"retest": False, "breaches": 2, "window": 3}}),
    Case("nor do unsettled or interrupted tests resolve an open speed ticket", "speed_below_plan",
         [slow(0, 90), slow(1, 480, stable=0), slow(2, None, interrupted=1), slow(3, 480, stable=0)],
         open={"speed_below_plan": OpenTicket(at(0))}, rules={"speed_below_plan": {"heal_after": 2}}),
    Case("settled tests still open: the flags are per test, not a blanket", "speed_below_plan",
         [slow(0, 90, stable=0), slow(1, 90, stable=1), slow(2, 90, stable=1)],
         rules={"speed_below_plan": {"retest": False, "breaches": 2, "window": 3}},
         expect=lambda h: [("Open", "speed_below_plan", ids([h[1], h[2]]))]),
    Case("nor do they resolve an open speed ticket", "speed_below_plan",
         [slow(0, 90), slow(1, 480, flag=1), slow(2, 480, flag=1), slow(3, 480, flag=1)],
         open={"speed_below_plan": OpenTicket(at(0))}, rules={"speed_below_plan": {"heal_after": 2}}),
]


def _check(o: object, want: tuple) -> None:
    name, cls, extra = want
    assert (type(o).__name__, getattr(o, "fault_class", "")) == (name, cls)
    if isinstance(o, Open | Resolve):
        assert o.evidence == extra
    elif isinstance(o, AskRetest):
        assert o.checks == extra and o.agent_id == AGENT
    elif isinstance(o, Answer):
        assert o.answer == extra and o.command_id == "c-1"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_evaluate(case: Case) -> None:
    engine = RuleEngine(RulesConfig.model_validate({"classes": case.rules}))
    h = case.history
    ev = LineEvidence(line_id=LINE, plan=PLAN, fresh=h[len(h) - case.fresh:],
                      open=dict(case.open), refuted=dict(case.refuted), outstanding=list(case.outstanding),
                      recent={case.cls: list(reversed(h))})
    before = copy.deepcopy(ev)
    got = engine.evaluate(ev)
    want = case.expect(h)
    assert kinds(got) == [(w[0], w[1]) for w in want], got
    for o, w in zip(got, want, strict=True):
        _check(o, w)
    assert ev == before  # evaluation does not change its evidence


def test_open_carries_what_the_ticket_needs() -> None:
    engine = RuleEngine(RulesConfig())
    h = [healthy(0), down(1), down(2)]
    ev = LineEvidence(line_id=LINE, plan=PLAN, fresh=h[-1:], recent={"line_down": list(reversed(h))})
    (opened,) = engine.evaluate(ev)
    assert isinstance(opened, Open)
    assert opened.summary.startswith("Line down on line l-1: 2 of the last 3 results breached — line_down observed")
    assert (opened.severity, opened.location, opened.agent_id, opened.retest) == ("critical", "wan", AGENT, None)
    assert opened.detail["last_breach_at"] == at(2).isoformat()
    assert opened.detail["observed"] == [2, 3]


def test_a_confirmed_retest_opens_with_the_retest_named() -> None:
    engine = RuleEngine(RulesConfig())
    retest = lossy(4, trigger=Trigger.RETEST, command_id="c-1")
    h = [lossy(0), lossy(1), lossy(2), retest]
    ev = LineEvidence(line_id=LINE, plan=PLAN, fresh=[retest], outstanding=[PendingRetest("c-1", "packet_loss")],
                      recent={"packet_loss": list(reversed(h))})
    answer, opened = engine.evaluate(ev)
    assert isinstance(answer, Answer) and answer.result_id == retest.result_id
    assert isinstance(opened, Open) and opened.retest == (AGENT, retest.result_id)
    assert "re-test confirmed" in opened.summary
