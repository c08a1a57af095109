"""Verdicts on a line with real round-trip times, jitter and loss: the line lab's access link through the
user-space line emulator (tests/lineemu.py, `line_lab`/`line` fixtures). Each test: the agent's verdict,
where it puts the fault, and the ticket the collector opens or does not (tests/labcollector.py).
Expected verdicts are in each docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.checkctx import by_kind, run_agent
from tests.lab import SERVER_ADDR, LineLab, start_testserver
from tests.labcollector import LabCollector

pytestmark = pytest.mark.lab

LINE = f"{{wan_interface: wan0, plan_down_mbps: 100, plan_up_mbps: 100, test_server: '{SERVER_ADDR}:8080'}}"
PROBES = ("  ping: {targets: [test_server], count: 40, interval_s: 0.02, reply_timeout_s: 1}\n"
          "  udp_latency: {count: 100, interval_s: 0.005, reply_timeout_s: 1}\n")


@pytest.fixture
def served(line_lab: LineLab) -> LineLab:
    """The carrier's linecheck-testserver (HTTP and STAMP reflector) behind the emulated line."""
    return start_testserver(line_lab)


def probes(lab: LineLab) -> Callable[[], dict]:  # type: ignore[type-arg]
    return lambda: run_agent(lab, PROBES, line_yaml=LINE)


def codes(result: object) -> list[tuple[str, str, str]]:
    return [(f.code, f.where, f.severity) for f in result.findings]  # type: ignore[attr-defined]


def test_a_long_but_stable_round_trip_is_not_a_fault(served: LineLab, line: Callable[..., None],
                                                     tmp_path: Path) -> None:
    """A 100/100 line 2 x 30 ms away (a 60 ms round trip: another province), steady.

    Expected: ping and STAMP measure at least 60 ms with no loss; that is below the 100 ms latency
    threshold and steady, so no finding (long is not broken); the speed test still reaches the plan at
    that RTT and settles; verdict healthy, and the collector opens nothing. (The emulator shares this
    busy 2-core host: a frame may leave tens of ms late now and then, so averages sit a few ms above.)"""
    line(down=dict(delay_ms=30, rate_mbit=100), up=dict(delay_ms=30, rate_mbit=100))
    with LabCollector(tmp_path, plan_down=100, plan_up=100) as collector:
        results = collector.feed(probes(served), times=3)
        # The shipped time cap (15 s per direction): with 10 s a loaded CI host once left both directions
        # unsettled at this RTT (12 streams, time cap) -- the engine's long-RTT settling is issue 22's.
        speed = run_agent(served, "  throughput: {timeout_s: 60}\n", line_yaml=LINE)
        collector.ingest(speed)
        assert collector.tickets() == []
    for r in results:
        assert r.findings == [] and r.verdict.value == "healthy", [(c.kind, c.metrics) for c in r.checks]
        for c in r.checks:
            assert c.metrics["rtt_min_ms"] >= 59 and c.metrics["rtt_avg_ms"] < 100, (c.kind, c.metrics)
            assert c.metrics["loss_pct"] == 0, (c.kind, c.metrics)
    (test,) = by_kind(speed)["throughput"]
    assert speed["findings"] == [] and test["status"] == "ok", test
    assert test["metrics"]["down_mbps"] > 85 and test["metrics"]["up_mbps"] > 85, test["metrics"]


def test_a_long_round_trip_above_the_threshold_is_high_latency(served: LineLab, line: Callable[..., None],
                                                             tmp_path: Path) -> None:
    """The line is 2 x 90 ms away: a 180 ms round trip.

    Expected: high_latency (warning, where=wan) from ping and from STAMP, nothing else; the collector
    opens one high_latency ticket (warning, wan) after 3 of 5 results (no re-test for latency)."""
    line(down=dict(delay_ms=90), up=dict(delay_ms=90))
    with LabCollector(tmp_path) as collector:
        results = collector.feed(probes(served), times=3)
        tickets = collector.tickets()
    for r in results:
        assert set(codes(r)) == {("high_latency", "wan", "warning")}, r.findings
        # The first echoes wait for ARP across the same 180 ms (the emulator delays every frame), so
        # ping's average sits a little above the path's round trip.
        assert all(175 <= f.detail["rtt_avg_ms"] <= 230 for f in r.findings), [(f.check, f.detail) for f in r.findings]
    assert [(t.fault_class, t.severity, t.location) for t in tickets] == [("high_latency", "warning", "wan")]


def test_jitter_on_the_line_is_high_jitter_without_a_ticket(served: LineLab, line: Callable[..., None],
                                                          tmp_path: Path) -> None:
    """Each direction 20 ms with 40 ms of normal jitter (frames keep their order, as queues keep them).

    Expected: high_jitter (warning, where=wan) from ping and STAMP, with jitter above the 30 ms
    threshold; no loss finding. The collector opens no ticket: no default rule for jitter (a carrier
    that promises it adds one, docs/rules.md). The probes are spaced 80-100 ms apart here: packets
    closer than the spread would queue behind each other and smooth the jitter out (order is kept)."""
    line(down=dict(delay_ms=20, jitter_ms=40), up=dict(delay_ms=20, jitter_ms=40))
    sparse = ("  ping: {targets: [test_server], count: 30, interval_s: 0.1, reply_timeout_s: 1}\n"
              "  udp_latency: {count: 40, interval_s: 0.08, reply_timeout_s: 1}\n")
    with LabCollector(tmp_path) as collector:
        results = collector.feed(lambda: run_agent(served, sparse, line_yaml=LINE), times=3)
        assert collector.tickets() == []
    for r in results:
        assert ("high_jitter", "wan", "warning") in codes(r), [(c.kind, c.metrics) for c in r.checks]
        assert {c for c, _, _ in codes(r)} <= {"high_jitter", "high_latency"}, r.findings
        assert all(f.detail["jitter_ms"] >= 30 for f in r.findings if f.code == "high_jitter")


def test_random_loss_on_the_line_is_packet_loss_and_a_confirmed_ticket(served: LineLab, line: Callable[..., None],
                                                                      tmp_path: Path) -> None:
    """The line loses 4 % of frames each way (about 8 % of round trips).

    Expected: packet_loss (warning: between 1 % and 20 %), where=wan, from ping and STAMP; the collector
    asks for a re-test after 3 of 5 lossy results, the re-test confirms, and one packet_loss ticket
    opens at the wan. The loss is the seeded emulator's, the same every run."""
    line(down=dict(loss=0.04), up=dict(loss=0.04))
    with LabCollector(tmp_path) as collector:
        results = collector.feed(probes(served), times=3)
        tickets = collector.tickets()
    assert [r.trigger.value for r in results] == ["manual", "manual", "manual", "retest"]
    for r in results:
        assert set(codes(r)) == {("packet_loss", "wan", "warning")}, r.findings
        assert all(2 <= f.detail["loss_pct"] <= 18 for f in r.findings), r.findings
    assert [(t.fault_class, t.location) for t in tickets] == [("packet_loss", "wan")]
    assert "re-test confirmed" in tickets[0].summary
