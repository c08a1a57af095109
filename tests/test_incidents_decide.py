"""The correlation decision table (collector/incidents/decide.py), without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collector.incidents.decide import (
    Drop,
    Held,
    IncidentConfig,
    Join,
    Merge,
    Move,
    Open,
    OpenIncident,
    Release,
    Resolve,
    Snapshot,
    decide,
    threshold,
)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
CFG = IncidentConfig()  # window 900 s, hold 300 s, min 3 lines, 30 %, resolve at 90 %
OLD = NOW - timedelta(seconds=CFG.hold_s + 1)  # a fault that has waited long enough
NEW = NOW - timedelta(seconds=10)


def chain(*names: str) -> list[str]:
    return ["/".join(names[: i + 1]) for i in range(len(names))]


def port(p: int, s: int = 0) -> list[str]:
    return chain("D", "CO", "OLT", f"P{p}", f"S{s}")


OLT = "D/CO/OLT"
P1 = "D/CO/OLT/P1"


def fleet(ports: int = 4, per_port: int = 10) -> dict[str, list[str]]:
    return {f"p{p}-{i}": port(p, i % 2) for p in range(ports) for i in range(per_port)}


def reporting(paths: dict[str, list[str]], silent: set[str] = frozenset()) -> dict[str, int]:  # type: ignore[assignment]
    out: dict[str, int] = {}
    for line, nodes in paths.items():
        if line not in silent:
            for n in nodes:
                out[n] = out.get(n, 0) + 1
    return out


def held(lines: list[str], at: datetime = OLD, cls: str = "line_down") -> list[Held]:
    return [Held(x, cls, at) for x in lines]


@pytest.mark.parametrize("reporting_lines, need", [(0, 3), (5, 3), (10, 3), (11, 4), (30, 9), (128, 39)])
def test_threshold_by_node_size(reporting_lines: int, need: int) -> None:
    assert threshold(reporting_lines, CFG) == need


def test_one_port_fails_one_incident_on_the_port_not_its_splitters() -> None:
    paths = fleet()
    acts = decide(Snapshot(paths, reporting(paths), held([f"p1-{i}" for i in range(10)])), CFG, NOW)
    assert acts == [Open(P1, "line_down", tuple(sorted(f"p1-{i}" for i in range(10))), 10)]


def test_too_soon_nothing_yet_neither_incident_nor_ticket() -> None:
    paths = fleet()
    assert decide(Snapshot(paths, reporting(paths), held([f"p1-{i}" for i in range(10)], NEW)), CFG, NOW) == []


def test_all_ports_of_an_olt_fail_one_olt_incident() -> None:
    paths = fleet()
    acts = decide(Snapshot(paths, reporting(paths), held(sorted(paths))), CFG, NOW)
    assert acts == [Open(OLT, "line_down", tuple(sorted(paths)), 40)]


def test_one_port_plus_unrelated_singles_elsewhere_stays_on_the_port() -> None:
    paths = fleet()
    faults = held([f"p1-{i}" for i in range(10)] + ["p2-3", "p3-4"])
    acts = decide(Snapshot(paths, reporting(paths), faults), CFG, NOW)
    assert Open(P1, "line_down", tuple(sorted(f"p1-{i}" for i in range(10))), 10) in acts
    assert sorted(a for a in acts if isinstance(a, Release)) == [Release("p2-3", "line_down"),
                                                                  Release("p3-4", "line_down")]
    assert len(acts) == 3


def test_partial_port_counts_only_lines_that_reported() -> None:
    """10 lines on the port, 6 stayed closed (never reported); 3 of the 4 that did are down -> incident."""
    paths = fleet()
    closed = {f"p1-{i}" for i in range(4, 10)}
    acts = decide(Snapshot(paths, reporting(paths, closed), held(["p1-0", "p1-1", "p1-2"])), CFG, NOW)
    assert [a for a in acts if isinstance(a, Open)] == [Open(P1, "line_down", ("p1-0", "p1-1", "p1-2"), 4)]


def test_two_faults_are_never_an_incident_even_on_a_tiny_node() -> None:
    paths = {"a": chain("D", "X", "O", "P"), "b": chain("D", "X", "O", "P")}
    acts = decide(Snapshot(paths, reporting(paths), held(["a", "b"])), CFG, NOW)
    assert sorted(acts) == [Release("a", "line_down"), Release("b", "line_down")]


def test_different_fault_classes_do_not_mix() -> None:
    paths = fleet()
    faults = held(["p1-0", "p1-1"]) + held(["p1-2", "p1-3"], cls="dns_failure")
    acts = decide(Snapshot(paths, reporting(paths), faults), CFG, NOW)
    assert all(isinstance(a, Release) for a in acts) and len(acts) == 4


def test_a_held_fault_under_an_open_incident_joins_it() -> None:
    paths = fleet()
    inc = OpenIncident(7, P1, "line_down", {f"p1-{i}": False for i in range(5)})
    acts = decide(Snapshot(paths, reporting(paths), held(["p1-8"], NEW), [inc]), CFG, NOW)
    assert acts == [Join(7, "p1-8", "line_down")]


def test_an_incident_moves_up_when_the_failure_turns_out_wider() -> None:
    paths = fleet()
    inc = OpenIncident(7, P1, "line_down", {f"p1-{i}": False for i in range(10)})
    others = [f"p{p}-{i}" for p in (0, 2, 3) for i in range(10)]
    acts = decide(Snapshot(paths, reporting(paths), held(others, NEW), [inc]), CFG, NOW)
    assert acts == [Move(7, OLT, tuple(sorted(others)), 40)]


def test_recovery_resolves_and_names_the_stragglers() -> None:
    members = {f"p1-{i}": i != 7 for i in range(10)}  # 9 of 10 recovered: 90 %
    acts = decide(Snapshot({}, {}, [], [OpenIncident(7, P1, "line_down", members)]), CFG, NOW)
    assert acts == [Resolve(7, ("p1-7",))]


def test_not_enough_recovered_stays_open() -> None:
    members = {f"p1-{i}": i < 8 for i in range(10)}  # 80 %
    assert decide(Snapshot({}, {}, [], [OpenIncident(7, P1, "line_down", members)]), CFG, NOW) == []


def test_recovered_while_held_is_dropped_without_ticket() -> None:
    paths = fleet()
    acts = decide(Snapshot(paths, reporting(paths), [Held("p2-1", "line_down", OLD, recovered=True)]), CFG, NOW)
    assert acts == [Drop("p2-1", "line_down")]


def test_a_line_without_path_is_released_after_the_hold() -> None:
    assert decide(Snapshot({}, {}, held(["x"])), CFG, NOW) == [Release("x", "line_down")]


def test_three_dead_ports_of_sixteen_are_three_incidents_not_the_olt() -> None:
    """Big ports failing together can make 30 % of an OLT; still three ports, since 3 of its 16 ports
    failing is no OLT failure (fanout: the OLT's ports that reported)."""
    paths = {f"p{p}-{i}": port(p, i // 8) for p in range(16) for i in range(64 if p < 3 else 16)}
    failing = [x for x in paths if int(x[1:].split("-")[0]) < 3]
    fanout = {OLT: 16, "D/CO": 1, "D": 1} | {f"{OLT}/P{p}": (8 if p < 3 else 2) for p in range(16)}
    acts = decide(Snapshot(paths, reporting(paths), held(failing), fanout=fanout), CFG, NOW)
    assert sorted(a.node for a in acts if isinstance(a, Open)) == [f"{OLT}/P0", f"{OLT}/P1", f"{OLT}/P2"]
    assert len(acts) == 3


def test_a_port_whose_failing_lines_are_spread_over_its_splitters_is_the_port() -> None:
    """Half the lines of a port fail, two or so per splitter: no splitter reaches its threshold alone
    but the port does, and most splitters are touched -> the port (not splitters, not tickets)."""
    paths = {f"x{i}": chain("D", "CO", "OLT", "P9", f"S{i // 8}") for i in range(64)}
    failing = [f"x{i}" for i in range(64) if i % 8 in (0, 3, 5, 6)]  # 4 of 8 on every splitter
    failing = failing[:2] + failing[4:]  # S0 has only 2: below its threshold of 3
    acts = decide(Snapshot(paths, reporting(paths), held(failing), fanout={"D/CO/OLT/P9": 8}), CFG, NOW)
    assert [a.node for a in acts if isinstance(a, Open)] == ["D/CO/OLT/P9"]
    assert len(acts) == 1


def test_two_incidents_under_a_node_that_now_fails_merge() -> None:
    paths = fleet()
    a = OpenIncident(3, P1 + "/S0", "line_down", {f"p1-{i}": False for i in range(0, 10, 2)})
    b = OpenIncident(5, P1 + "/S1", "line_down", {f"p1-{i}": False for i in range(1, 10, 2)})
    acts = decide(Snapshot(paths, reporting(paths), [], [a, b], fanout={P1: 2}), CFG, NOW)
    assert acts == [Move(3, P1, (), 10), Merge(5, 3)]
