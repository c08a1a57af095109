"""The demo's simulated fleet (linecheck/demo) through a real collector, broker and database.

The seeding publishes over a private Mosquitto to `linecheck-collector serve` on a temporary
SQLite; the API must then show four simulated lines, each with what its story makes it: the
healthy line no ticket and its promise delivered, the slow line its promise not delivered and one
ticket for the fault with the speed rule's confirmed re-test linked to it, the DNS line a dns_failure
ticket, the reopened office its resume-after-idle result and the fault it found. Seeding again with
the same state adds nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from linecheck.demo import fleet, seed
from tests.helpers import collector_config, start, stop, wait_for
from tests.mosquitto import Broker, free_port

pytestmark = pytest.mark.broker
SIM_LINES = {x.line_id for x in fleet.LINES}


def _cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "collector.cli", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _tickets(api: httpx.Client) -> dict[str, set[str]]:
    """Fault classes per line: a ticket's own and those linked to it (one fault seen by two sides)."""
    by_line: dict[str, set[str]] = {}
    for t in api.get("/api/v1/tickets", params={"per_page": 200}).json()["items"]:
        detail = api.get(f"/api/v1/tickets/{t['ticket_id']}").json()["detail"] or {}
        linked = {x["fault_class"] for x in detail.get("linked", [])}
        by_line.setdefault(t["line_id"], set()).update({t["fault_class"], *linked})
    return by_line


def _counts(api: httpx.Client) -> dict[str, int]:
    lines = [x for x in api.get("/api/v1/lines", params={"per_page": 200}).json()["items"] if x["line_id"] in SIM_LINES]
    results = sum(api.get(f"/api/v1/lines/{x['line_id']}/results").json()["total"] for x in lines)
    return {"lines": len(lines), "results": results,
            "tickets": api.get("/api/v1/tickets").json()["total"],
            "verdicts": api.get("/api/v1/promises/verdicts").json()["total"]}


def test_demo_fleet_fills_tickets_and_promises_once(broker: Broker, tmp_path: Path) -> None:
    port = free_port()
    ccfg = collector_config(tmp_path, broker.port)
    ccfg.write_text(ccfg.read_text().replace("http: {port: 0}", f"http: {{port: {port}}}"))
    (tmp_path / "pw").write_text("operator-password-1")
    _cli("user", "add", "--config", str(ccfg), "ops", "--role", "carrier_admin",
         "--password-file", str(tmp_path / "pw"))
    token = _cli("user", "token", "--config", str(ccfg), "ops", "--name", "test")
    collector = start("collector.cli", "serve", "--config", str(ccfg), log=tmp_path / "collector.log")
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    state = tmp_path / "demo-fleet"
    sim = None
    try:
        wait_for(lambda: _up(api), 30, "the collector's API")
        sim = seed.start(state, ccfg, "127.0.0.1", broker.port, interval_s=3600, timeout_s=90)
        assert sim.seeded_now == sum(len(h) for h in fleet.history(_anchor(state)).values())
        # (a re-test the rules asked for meanwhile may be stored too)
        assert sim.receipts()["stored"] >= sim.seeded_now and not sim.receipts()["quarantined"]

        # The speed rule's verdict on the slow line waits for the re-test it asks for, which the simulated
        # agent answers over the broker: wait for it, not for a fixed time. It joins the promise ledger's
        # ticket for the same fault (collector/tickets/lifecycle.py SAME_FAULT), never a second one.
        def speed_ticket() -> dict[str, set[str]] | None:
            found = _tickets(api)
            return found if "speed_below_plan" in found.get("sim-pudong-1", ()) else None

        tickets = wait_for(speed_ticket, 60, "the slow line's speed ticket after its re-test")
        assert "sim-xuhui-1" not in tickets  # healthy: no ticket
        assert tickets["sim-pudong-1"] == {"speed_below_plan", "upgrade_not_delivered"}
        slow = [t for t in api.get("/api/v1/tickets", params={"per_page": 200}).json()["items"]
                if t["line_id"] == "sim-pudong-1"]
        assert [t["fault_class"] for t in slow] == ["upgrade_not_delivered"]
        assert tickets["sim-jingan-1"] == {"dns_failure"}
        assert tickets["sim-huangpu-1"] == {"wan_link_degraded"}

        lines = {x["line_id"]: x for x in api.get("/api/v1/lines", params={"per_page": 200}).json()["items"]}
        assert set(lines) >= SIM_LINES
        assert lines["sim-xuhui-1"]["health"] == "healthy"
        assert {lines[x]["health"] for x in SIM_LINES - {"sim-xuhui-1"}} == {"problems"}
        detail = api.get("/api/v1/lines/sim-pudong-1").json()
        assert "simulated" in str(detail).lower()  # the site/line names say so

        verdicts = {v["promise_id"]: v["outcome"]
                    for v in api.get("/api/v1/promises/verdicts", params={"per_page": 200}).json()["items"]}
        assert verdicts == {"sim-upgrade-healthy": "delivered", "sim-upgrade-slow": "not_delivered",
                            "sim-tariff-dns": "delivered"}

        reopened = api.get("/api/v1/lines/sim-huangpu-1/results", params={"per_page": 200}).json()["items"]
        triggers = [r["trigger"] for r in reopened]
        assert triggers.count("idle_watchdog") == fleet.IDLE_DAYS - 1 and triggers.count("resume_after_idle") == 1
        resume = next(r for r in reopened if r["trigger"] == "resume_after_idle")
        assert resume["verdict"] == "problems"
        full = api.get(f"/api/v1/results/sim-huangpu-gw/{resume['result_id']}").json()
        # The office was quiet for IDLE_DAYS: nothing but daily watchdog checks since its last scheduled one.
        last_before = max(datetime.fromisoformat(r["started_at"]) for r in reopened
                          if r["trigger"] == "schedule" and r["started_at"] < resume["started_at"])
        assert (datetime.fromisoformat(resume["started_at"]) - last_before).days == fleet.IDLE_DAYS
        assert [f["code"] for f in full["findings"]] == ["wan_link_degraded"]

        before = _counts(api)
        sim.stop()
        # Started again on the same state: nothing imported or published twice.
        sim = seed.start(state, ccfg, "127.0.0.1", broker.port, interval_s=3600, timeout_s=60)
        assert sim.seeded_now == 0
        assert _counts(api) == before

        # Live: the next scheduled result of each simulated agent arrives with the next seq.
        ids = [a.send_scheduled() for a in sim.agents]
        assert all(a.wait_drained(time.monotonic() + 30) for a in sim.agents)
        assert sim.receipts()["stored"] == len(ids)
        assert _counts(api)["results"] == before["results"] + len(ids)
    finally:
        if sim is not None:
            sim.stop()
        stop(collector)


def _up(api: httpx.Client) -> bool:
    try:
        return api.get("/api/v1/me").status_code == 200
    except httpx.HTTPError:
        return False


def _anchor(state: Path) -> datetime:
    return datetime.fromisoformat(json.loads((state / "fleet.json").read_text())["anchor"])


def test_simulated_history_is_reproducible_and_marked() -> None:
    """Pure: the same anchor gives the same results (ids included), every name says "simulated", and each
    line's story shows in the findings the agent's own judges produce."""
    anchor = datetime(2026, 3, 2, 8, 0, tzinfo=fleet.ZONE)
    first, second = fleet.history(anchor), fleet.history(anchor)
    envelopes = {agent: [fleet.result(p, i + 1) for i, p in enumerate(plans)] for agent, plans in first.items()}
    again = {agent: [fleet.result(p, i + 1) for i, p in enumerate(plans)] for agent, plans in second.items()}
    assert envelopes == again
    ids = [e.result_id for es in envelopes.values() for e in es]
    assert len(ids) == len(set(ids))
    every = [e for es in envelopes.values() for e in es]
    assert all(e.agent_version.endswith("-simulated") and e.started_at < anchor for e in every)
    registry = fleet.registry_yaml(300)
    assert registry.count("(simulated)") == 1 + 2 * len(fleet.LINES)  # tenant, every site and line

    codes = {agent: {f.code for e in es for f in e.findings} for agent, es in envelopes.items()}
    assert codes == {"sim-xuhui-gw": set(), "sim-pudong-gw": {"throughput_below_plan"},
                     "sim-jingan-gw": {"dns_failure"}, "sim-huangpu-gw": {"wan_link_degraded"}}
    reopened = envelopes["sim-huangpu-gw"]
    resume = next(e for e in reopened if e.trigger == "resume_after_idle")
    assert resume.trigger_info["idle_s"] >= fleet.IDLE_DAYS * 86400
    assert not any(e.findings for e in reopened if e.started_at < resume.started_at)  # the fault came with reopening
