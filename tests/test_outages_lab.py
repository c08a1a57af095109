"""Faults that come and go, in the line lab: the real daemon's heartbeat sees the line drop between checks,
the next result carries the outages, and the collector's intermittent_outage rule opens its ticket.

The daemon (`linecheck-agent run`) runs in the gateway namespace with a 1 s heartbeat and no broker
reachable (its results would wait in the spool; the check here is read with `check --json --no-spool`
on the same data directory, as the next scheduled check would be built).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.checkctx import by_kind
from tests.helpers import wait_for
from tests.lab import SERVER_ADDR, LineLab
from tests.labcollector import AGENT, LINE, SITE, LabCollector

pytestmark = pytest.mark.lab


def outages(log: Path) -> list[dict[str, Any]]:
    try:
        return json.loads(log.read_text()).get("outages", [])
    except (OSError, ValueError):
        return []


def test_a_line_that_drops_between_checks_is_reported_with_the_next_result(lab: LineLab, tmp_path: Path) -> None:
    """Between two checks the access line drops three times for 3 s (link down on the carrier side) and
    once the carrier's network beyond the first hop stops answering for 3 s.

    Expected: the heartbeat records four outages, dated from the first missed round, three at the link
    and one beyond the first hop; the next result carries a heartbeat summary (4 outages, the longest),
    one outage result per interval and the finding line_outages (warning, where=wan) saying how often,
    how long and when; the collector, told that one day of seven is enough here (the default is 3 of 7,
    tests/test_outage_rule.py), opens one intermittent_outage ticket at the wan with that statement."""
    data = tmp_path / "agent"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"agent_id: {AGENT}\nline_id: {LINE}\nsite_id: {SITE}\ndata_dir: {data}\n"
        f"line: {{wan_interface: wan0, test_server: '{SERVER_ADDR}:8080'}}\n"
        "mqtt: {host: 127.0.0.1, port: 9}\n"  # nothing listens: results wait in the spool
        "schedule: {interval_s: 3600, jitter_s: 0, first_delay_s: 3600}\nidle: {enabled: false}\n"
        "heartbeat: {interval_s: 1, down_after: 2, reply_timeout_s: 0.5}\n"
        "checks:\n  link: {window_s: 0.1}\n  ping: {targets: [gateway], count: 3, interval_s: 0.05}\n")
    log = data / "outages.json"
    with (tmp_path / "agent.log").open("ab") as out:
        lab.popen(lab.gw, [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)], stdout=out, stderr=out)
    wait_for(log.exists, 30, "the heartbeat to start")

    def fault(cut: str, restore: str, count: int) -> None:
        lab.sh(lab.carrier, cut)
        time.sleep(3)  # the outage itself: its length is the fault, not a synchronisation
        lab.sh(lab.carrier, restore)
        wait_for(lambda: len(outages(log)) >= count, 20, f"outage {count} in the log")

    for n in (1, 2, 3):
        fault(f"ip link set {lab.carrier_if} down", f"ip link set {lab.carrier_if} up", n)
    fault(f"ip addr del {SERVER_ADDR}/32 dev lo; ip route add blackhole {SERVER_ADDR}/32",
          f"ip route del blackhole {SERVER_ADDR}/32; ip addr add {SERVER_ADDR}/32 dev lo", 4)

    out = lab.run(lab.gw, [sys.executable, "-m", "agent.cli", "check", "--json", "--no-spool", "--config", str(cfg)])
    assert out.returncode in (0, 1, 3), out.stderr[-3000:]
    result = json.loads(out.stdout)
    kinds = by_kind(result)
    (summary,) = kinds["heartbeat"]
    assert summary["metrics"]["outages_count"] == 4 and summary["status"] == "degraded", summary
    each = kinds["outage"]
    assert sorted(c["target"] for c in each) == ["beyond", "link", "link", "link"], each
    for c in each:
        m = c["metrics"]
        assert 2 <= m["duration_s"] <= 7 and m["ended_unix_s"] - m["started_unix_s"] == pytest.approx(m["duration_s"],
                                                                                                     abs=0.1), m
    [f] = [f for f in result["findings"] if f["code"] == "line_outages"]
    assert (f["where"], f["severity"], f["detail"]["count"], f["detail"]["where"]) == ("wan", "warning", 4, "link")
    assert "dropped 4 times" in f["message"] and "longest" in f["message"], f["message"]

    with LabCollector(tmp_path, rules={"intermittent_outage": {"days": 7, "min_days": 1}}) as collector:
        collector.ingest(result)
        tickets = collector.tickets()
    assert [(t.fault_class, t.state, t.location) for t in tickets] == [("intermittent_outage", "open", "wan")]
    assert "dropped on 1 of the last 7 days: 4 drops" in tickets[0].summary, tickets[0].summary
    shutil.rmtree(data, ignore_errors=True)
