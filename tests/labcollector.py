"""The carrier's side for line-lab verdict tests: what the collector does with real agent results.

A lab test runs the real agent in the gateway namespace (tests/checkctx.run_agent) and hands each
envelope here. `LabCollector` plays the two parts between them that need no network:
  - the agent's spool: each result is numbered (agent.envelope.sealed, as the spool does);
  - the collector: the result goes through ingest's own validation (collector.ingest.worker.validate)
    into an SQLite store with the rules and the promise ledger hooked in exactly as `linecheck-collector
    serve` hooks them (collector/cli/serve.py).
A re-test the rules ask for is answered by running the agent again (the `again` callable) and sending
that result as the daemon answers a command (trigger `retest`, the command's id), so speed and loss
tickets open only as they would in the field. The broker in between is tested elsewhere
(tests/test_tickets_lab.py runs the whole chain over MQTT).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from agent.envelope import parse_draft, sealed
from collector.fleet import registry
from collector.ingest.worker import validate
from collector.promises import ledger
from collector.promises.criterion import PromisePolicy
from collector.promises.hook import PromiseHook
from collector.promises.model import SpeedPromise
from collector.rules.engine import RuleEngine, RulesConfig
from collector.store import schema as t
from collector.store.database import Store
from linecheck.wire import ResultEnvelope, results_topic

AGENT, LINE, SITE = "lab-gw", "lab-line", "lab-site"  # what tests/checkctx.run_agent writes


@dataclass(frozen=True)
class Ticket:
    ticket_id: int
    fault_class: str
    state: str
    location: str | None
    severity: str
    summary: str
    detail: dict[str, Any]


class LabCollector:
    def __init__(self, tmp_path: Path, *, plan_down: float | None = None, plan_up: float | None = None,
                 rules: dict[str, Any] | None = None, policy: PromisePolicy | None = None,
                 promise: tuple[float, float] | None = None) -> None:
        self.store = Store(f"sqlite:///{tmp_path}/lab-collector.db")
        self.seq = 0
        self.results: list[ResultEnvelope] = []
        with self.store.engine.begin() as conn:
            registry.import_registry(conn, registry.Registry.model_validate({
                "tenants": [{"tenant_id": "lab-carrier", "name": "Lab Telecom", "kind": "carrier"}],
                "sites": [{"site_id": SITE, "tenant_id": "lab-carrier"}],
                "lines": [{"line_id": LINE, "tenant_id": "lab-carrier", "site_id": SITE,
                           "plan_down_mbps": plan_down, "plan_up_mbps": plan_up}],
                "agents": [{"agent_id": AGENT, "line_id": LINE, "report_interval_s": 3600}]}))
            if promise is not None:
                ledger.import_promises(conn, [SpeedPromise(
                    id=f"{LINE}-upgrade", line_id=LINE, effective=date.today() - timedelta(days=60),
                    down_mbps=promise[0], up_mbps=promise[1])])
        self.rules = RuleEngine(RulesConfig.model_validate(rules or {}))
        self.store.add_hook(self.rules.on_ingest)
        self.store.add_hook(PromiseHook(policy or PromisePolicy()))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> LabCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- results in -----------------------------------------------------------------------------
    def ingest(self, envelope: dict[str, Any], retest_of: str | None = None) -> ResultEnvelope:
        """Number the agent's draft as its spool would, validate it as ingest does, store it."""
        draft = parse_draft(json.dumps(envelope))
        if retest_of is not None:  # how the daemon answers a re-test command (agent/commands.py)
            draft = draft.model_copy(update={"trigger": "retest", "trigger_info": {"command_id": retest_of,
                                                                              "command_action": "retest"}})
        self.seq += 1
        numbered = sealed(draft, self.seq)
        checked = validate(results_topic(AGENT), numbered.model_dump_json(by_alias=True).encode(), 256 * 1024)
        assert checked.envelope is not None, checked.reason
        assert self.store.ingest([checked.envelope]), "the collector did not store the result"
        self.results.append(checked.envelope)
        return checked.envelope

    def feed(self, run: Callable[[], dict[str, Any]], times: int = 1) -> list[ResultEnvelope]:
        """`times` agent runs, each stored; a re-test the rules ask for is answered by one more run."""
        out = []
        for _ in range(times):
            out.append(self.ingest(run()))
            for command_id in self.pending_retests():
                out.append(self.ingest(run(), retest_of=command_id))
        return out

    # --- what the collector concluded ----------------------------------------------------------
    def pending_retests(self) -> list[str]:
        with self.store.engine.connect() as conn:
            return [r.command_id for r in conn.execute(
                select(t.commands.c.command_id).where(t.commands.c.state.in_(("pending", "sent")),
                                                      t.commands.c.action == "retest"))]

    def tickets(self) -> list[Ticket]:
        with self.store.engine.connect() as conn:
            return [Ticket(r.ticket_id, r.fault_class, r.state, r.location, r.severity, r.summary,
                           json.loads(r.detail) if r.detail else {})
                    for r in conn.execute(select(t.tickets).order_by(t.tickets.c.ticket_id))]

    def evidence(self, ticket_id: int) -> set[str]:
        """The result ids attached to a ticket, whatever their role."""
        with self.store.engine.connect() as conn:
            return {r.result_id for r in conn.execute(select(t.ticket_evidence.c.result_id).where(
                t.ticket_evidence.c.ticket_id == ticket_id))}

    def open_classes(self) -> dict[str, str | None]:
        """fault class -> location of every open ticket."""
        return {tk.fault_class: tk.location for tk in self.tickets() if tk.state in t.OPEN_STATES}

    def verdicts(self) -> list[Any]:
        """The promise ledger's latest verdicts (PromiseVerdict), as `promises evaluate` reads them."""
        with self.store.engine.connect() as conn:
            found = [ledger.stored_verdict(conn, p.id) for p in ledger.stored_promises(conn, [LINE])]
        return [v for v in found if v is not None]
