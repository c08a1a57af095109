"""End to end in the line lab: the access line goes down on the carrier side for longer than the
rule window → exactly one line_down ticket, confirmed by a re-test the collector asks the real
agent for; the line comes back → the ticket resolves.

Where things run: the agent in the gateway namespace; Mosquitto and the collector in the carrier
namespace on 198.18.3.1, which the gateway reaches over a separate management link (an LTE
backup or management VLAN in real life). The gateway namespace cannot reach the root namespace's
127.0.0.1, and a broker behind the access line itself would be unreachable exactly while the line
is down (the agent would spool, and the collector would see agent_offline instead: docs/rules.md).
The database is an SQLite file the test reads from the root namespace.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.lab import LineLab

pytestmark = [pytest.mark.lab, pytest.mark.broker]
AGENT, LINE = "lab-gw", "lab-line"


def _rows(db: Path, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []


def test_line_down_opens_one_ticket_after_retest_and_resolves_when_back(lab: LineLab, tmp_path: Path) -> None:
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed")
    broker_addr = lab.add_management_link()
    db = tmp_path / "collector.db"
    (tmp_path / "mosquitto.conf").write_text(
        f"listener 1883 {broker_addr}\nallow_anonymous true\nuser root\n"
        f"log_dest file {tmp_path}/mosquitto.log\n")
    ccfg = tmp_path / "collector.yaml"
    ccfg.write_text(f"database: sqlite:///{db}\nmqtt: {{host: {broker_addr}, port: 1883}}\nhttp: {{enabled: false}}\n"
                    # line_down re-tests too here, so the agent's answer to a real command is exercised.
                    "rules: {classes: {line_down: {breaches: 2, window: 3, heal_after: 2, retest: true}}}\n")
    acfg = tmp_path / "agent.yaml"
    acfg.write_text(
        f"agent_id: {AGENT}\nline_id: {LINE}\nsite_id: lab-site\ndata_dir: {tmp_path}/agent\n"
        "line: {wan_interface: wan0}\n"
        f"mqtt: {{host: {broker_addr}, port: 1883, resend_after_s: 5}}\n"
        "schedule: {interval_s: 3600, jitter_s: 0, first_delay_s: 3600}\nidle: {enabled: false}\n"
        "checks:\n  link: {window_s: 0.1}\n"
        "  ping: {targets: [gateway], count: 3, interval_s: 0.1, reply_timeout_s: 0.5}\n")
    # Registered first: `command` refuses an agent the collector neither knows nor has heard from.
    registry = tmp_path / "registry.yaml"
    registry.write_text("tenants: [{tenant_id: lab, name: Lab, kind: carrier}]\n"
                        "sites: [{site_id: lab-site, tenant_id: lab, name: Lab}]\n"
                        f"lines: [{{line_id: {LINE}, tenant_id: lab, site_id: lab-site}}]\n"
                        f"agents: [{{agent_id: {AGENT}, line_id: {LINE}}}]\n")
    imported = subprocess.run([sys.executable, "-m", "collector.cli", "registry", "import", "--config", str(ccfg),
                               str(registry)], capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    logs = {name: (tmp_path / f"{name}.log").open("ab") for name in ("collector", "agent")}
    lab.popen(lab.carrier, [shutil.which("mosquitto") or "mosquitto", "-c", str(tmp_path / "mosquitto.conf")])
    lab.popen(lab.carrier, [sys.executable, "-m", "collector.cli", "serve", "--config", str(ccfg)],
              stdout=logs["collector"], stderr=logs["collector"])
    wait_for(lambda: "collector connected" in (tmp_path / "collector.log").read_text(), 30, "the collector")
    lab.popen(lab.gw, [sys.executable, "-m", "agent.cli", "run", "--config", str(acfg)],
              stdout=logs["agent"], stderr=logs["agent"])

    def stored() -> int:
        return len(_rows(db, "SELECT 1 FROM results"))

    def check_now() -> None:
        """Ask the agent for a check through the collector's own command path, wait until it is stored."""
        before = stored()
        out = lab.run(lab.carrier, [sys.executable, "-m", "collector.cli", "command", "--config", str(ccfg),
                                    "--agent", AGENT, "check_now"], timeout=60)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: stored() > before, 30, "the requested result in the collector's database")

    def tickets() -> list[tuple]:  # type: ignore[type-arg]
        return _rows(db, "SELECT ticket_id, fault_class, state, location FROM tickets")

    # Subscribed to its command topic once connected (the subscription goes out in on_connect).
    wait_for(lambda: "connected to" in (tmp_path / "agent.log").read_text(), 30, "the agent online")
    check_now()
    assert tickets() == []

    lab.link(False)
    check_now()
    assert tickets() == []  # one bad result opens nothing
    check_now()  # two of the last three: the collector asks the agent to re-test first
    opened = wait_for(lambda: [t for t in tickets() if t[2] == "open"], 30, "the line_down ticket")
    assert [(f, s, where) for _, f, s, where in opened] == [("line_down", "open", "wan")]
    tid = opened[0][0]
    roles = _rows(db, f"SELECT role FROM ticket_evidence WHERE ticket_id={tid}")
    assert ("retest",) in roles and roles.count(("trigger",)) == 2
    assert _rows(db, "SELECT action, state FROM commands") == [("retest", "confirmed")]
    assert _rows(db, "SELECT trigger FROM results ORDER BY started_at DESC LIMIT 1") == [("retest",)]
    check_now()  # still down: still one ticket
    assert len(tickets()) == 1

    lab.link(True)
    check_now()
    assert tickets()[0][2] == "open"
    check_now()
    wait_for(lambda: tickets()[0][2] == "resolved", 20, "the ticket to resolve")
    assert len(tickets()) == 1
    events = _rows(db, f"SELECT kind, actor FROM ticket_events WHERE ticket_id={tid} ORDER BY event_id")
    assert events == [("opened", "rule"), ("resolved", "rule")]
