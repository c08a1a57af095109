"""A small two-carrier fleet for API, console and dashboard tests: registry, results, quarantine, users.

Tenant A is Shanghai Telecom with its enterprise customer Acme; tenant B is Shanghai Mobile with
Bravo. Every role exists on both sides, so each test can ask "own tenant or the other one".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from collector.api.accounts import Accounts
from collector.fleet import registry
from collector.store import schema as t
from collector.store.database import Quarantined, Store
from tests.factory import envelope, finding, link_check, ping_check, throughput_check

REGISTRY = registry.Registry.model_validate({
    "tenants": [
        {"tenant_id": "sh-telecom", "name": "Shanghai Telecom", "kind": "carrier"},
        {"tenant_id": "acme-trading", "name": "Acme Trading", "kind": "enterprise", "parent_id": "sh-telecom"},
        {"tenant_id": "sh-mobile", "name": "Shanghai Mobile", "kind": "carrier"},
        {"tenant_id": "bravo-foods", "name": "Bravo Foods", "kind": "enterprise", "parent_id": "sh-mobile"},
    ],
    "sites": [
        {"site_id": "acme-xuhui", "tenant_id": "acme-trading", "name": "Acme office", "district": "Xuhui"},
        {"site_id": "tel-jingan", "tenant_id": "sh-telecom", "name": "Telecom shop", "district": "Jing'an"},
        {"site_id": "bravo-pudong", "tenant_id": "bravo-foods", "name": "Bravo kitchen", "district": "Pudong"},
    ],
    "lines": [
        {"line_id": "acme-xuhui-1", "tenant_id": "acme-trading", "site_id": "acme-xuhui", "segment": "sme",
         "name": "Acme main line", "plan_down_mbps": 500, "plan_up_mbps": 300},
        {"line_id": "acme-xuhui-2", "tenant_id": "acme-trading", "site_id": "acme-xuhui", "segment": "sme",
         "plan_down_mbps": 200, "plan_up_mbps": 50},
        {"line_id": "tel-jingan-1", "tenant_id": "sh-telecom", "site_id": "tel-jingan", "segment": "retail",
         "plan_down_mbps": 1000, "plan_up_mbps": 300},
        {"line_id": "bravo-pudong-1", "tenant_id": "bravo-foods", "site_id": "bravo-pudong", "segment": "sme",
         "plan_down_mbps": 500, "plan_up_mbps": 300},
    ],
    "agents": [
        {"agent_id": "acme-gw", "line_id": "acme-xuhui-1", "report_interval_s": 3600},
        {"agent_id": "acme-gw2", "line_id": "acme-xuhui-2", "report_interval_s": 3600},
        {"agent_id": "tel-gw", "line_id": "tel-jingan-1", "report_interval_s": 3600},
        {"agent_id": "bravo-gw", "line_id": "bravo-pudong-1", "report_interval_s": 3600},
    ],
})

PASSWORD = "correct-horse-battery"
# user id -> (role, tenant, assigned lines)
USERS: dict[str, tuple[str, str | None, list[str]]] = {
    "operator": ("carrier_admin", None, []),
    "a-admin": ("carrier_admin", "sh-telecom", []),
    "a-viewer": ("carrier_viewer", "sh-telecom", []),
    "a-tech": ("technician", "sh-telecom", ["acme-xuhui-1"]),
    "a-ent": ("enterprise", "acme-trading", []),
    "b-admin": ("carrier_admin", "sh-mobile", []),
    "b-viewer": ("carrier_viewer", "sh-mobile", []),
    "b-tech": ("technician", "sh-mobile", ["bravo-pudong-1"]),
    "b-ent": ("enterprise", "bravo-foods", []),
}
# For each side: a line its technician and enterprise user may see, and the other side's.
OWN_LINE = {"a": "acme-xuhui-1", "b": "bravo-pudong-1"}


@dataclass
class Fleet:
    store: Store
    tokens: dict[str, str] = field(default_factory=dict)  # user id -> API token
    results: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # line -> [(agent, result id)]
    quarantine_ids: dict[str, int] = field(default_factory=dict)  # agent id or "none" -> quarantine row id
    tickets: dict[str, int] = field(default_factory=dict)  # line id -> its seeded ticket

    @property
    def engine(self) -> Engine:
        return self.store.engine


def seed(url: str, results_per_line: int = 12, now: datetime | None = None) -> Fleet:
    store = Store(url)
    fleet = Fleet(store)
    with store.engine.begin() as conn:
        registry.import_registry(conn, REGISTRY, source="fleet_data")
    now = now or datetime.now(UTC)
    plans = {"acme-xuhui-1": ("acme-gw", 500.0, "acme-xuhui"), "acme-xuhui-2": ("acme-gw2", 200.0, "acme-xuhui"),
             "tel-jingan-1": ("tel-gw", 1000.0, "tel-jingan"), "bravo-pudong-1": ("bravo-gw", 500.0, "bravo-pudong")}
    envelopes = []
    for line_id, (agent_id, plan, site) in plans.items():
        for i in range(results_per_line):
            at = now - timedelta(hours=6 * (results_per_line - i))
            # acme-xuhui-1 gets slower and lossy at the end: its latest result has problems.
            bad = line_id == "acme-xuhui-1" and i >= results_per_line - 2
            down = plan * (0.45 if bad else 0.93 + 0.01 * (i % 5))
            checks = [link_check(), ping_check(loss_pct=8.0 if bad else 0.0, rtt_ms=40.0 if bad else 6.0 + i % 3),
                      throughput_check(down, plan * 0.5)]
            e = envelope(agent_id, line_id, checks=checks, findings=[finding("packet_loss")] if bad else None,
                         started_at=at, site_id=site)
            envelopes.append(e)
            fleet.results.setdefault(line_id, []).append((agent_id, e.result_id))
    bad_msgs = [Quarantined("linecheck/v1/agents/bravo-gw/results", "bravo-gw", "schema: seq: missing", b'{"x":1}'),
                Quarantined("linecheck/v1/agents/acme-gw/results", "acme-gw", "schema: seq: missing", b'{"y":2}'),
                Quarantined("linecheck/v1/agents/bad+id/results", None, "topic does not name a valid agent", b"?")]
    store.ingest(envelopes, bad_msgs)
    store.set_agent_status("acme-gw", "online")
    store.set_agent_status("tel-gw", "online")
    store.set_agent_status("bravo-gw", "offline")
    with store.engine.connect() as conn:
        for row in conn.execute(select(t.quarantine.c.id, t.quarantine.c.agent_id)):
            fleet.quarantine_ids[row.agent_id or "none"] = row.id
    # Tickets: an open one on each carrier's side, and one further along on tenant A's own line.
    from collector.tickets import lifecycle as tickets

    with store.engine.begin() as conn:
        for line_id, fault, state in (("acme-xuhui-1", "packet_loss", "open"),
                                      ("tel-jingan-1", "high_latency", "acknowledged"),
                                      ("bravo-pudong-1", "line_down", "open")):
            agent_id, rid = fleet.results[line_id][-1]
            opened = tickets.open_ticket(conn, line_id=line_id, fault_class=fault, location="wan",
                                         summary=f"{fault} on {line_id}", evidence=[(agent_id, rid)],
                                         agent_id=agent_id, now=now - timedelta(hours=1))
            fleet.tickets[line_id] = opened.ticket_id
            if state != "open":
                tickets.transition(conn, opened.ticket_id, state, "a-admin", now=now - timedelta(minutes=30))
        conn.execute(t.tickets.update().where(t.tickets.c.ticket_id == fleet.tickets["bravo-pudong-1"])
                     .values(assignee="b-tech"))
    # Speed promises judged by the real ledger from the results above.
    from collector.promises import ledger
    from collector.promises.criterion import PromisePolicy
    from collector.promises.model import SpeedPromise

    effective = (now - timedelta(days=10)).date()
    promises = [SpeedPromise(id=f"{line_id}-speed", line_id=line_id, effective=effective, grace_days=0,
                             # acme-xuhui-2 was promised its full plan upstream too; it gets half: not delivered.
                             down_mbps=plan, up_mbps=plan if line_id == "acme-xuhui-2" else plan * 0.5)
                for line_id, (_, plan, _) in plans.items()]
    with store.engine.begin() as conn:
        ledger.import_promises(conn, promises, source="fleet_data")
        ledger.save_verdicts(conn, ledger.judge(conn, PromisePolicy(), now + timedelta(seconds=1)))
    accounts = Accounts(store.engine)
    for user_id, (role, tenant, lines) in USERS.items():
        accounts.create_user(user_id, role, tenant, PASSWORD, display_name=user_id)
        for line_id in lines:
            accounts.assign_line(user_id, line_id)
        fleet.tokens[user_id] = accounts.issue_token(user_id, name="tests")[1]
    return fleet
