"""What a verdict sets in motion: tickets to the carrier for broken promises, to the customer for local limits.

Only verdicts past their grace window act (PromiseVerdict.actionable). One ticket per line and fault
class stays open (the ticket store enforces it), so judging again attaches fresh evidence to the
open ticket instead of opening another. A later `delivered` verdict resolves the carrier's ticket;
a verdict that can judge the line again (delivered or not_delivered) resolves the customer's.
Inconclusive verdicts change nothing: absence of evidence closes no ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from collector.promises import ledger
from collector.promises.criterion import PromisePolicy
from collector.promises.model import Outcome
from collector.promises.verdict import PromiseVerdict
from collector.tickets import lifecycle as tickets
from linecheck.i18n import english, phrase
from linecheck.i18n.phrases import Phrase

# Fault class per promise kind (the carrier's side) and where the fault lies.
FAULT_CLASS = {
    "speed": "upgrade_not_delivered",
    "wifi_coverage": "wifi_coverage_not_delivered",
    "tariff_reduction": "tariff_reduction_not_delivered",
    "fee_waiver": "fee_waiver_not_delivered",
    "service_continuity": "suspended_despite_protection",
}
LOCATION = {"speed": "wan", "wifi_coverage": "wifi", "tariff_reduction": "service", "fee_waiver": "service",
            "service_continuity": "service"}
# The customer's side: equipment at the office keeps the line from being judged.
LOCAL_CLASS = "local_equipment_limit"
ACTOR = "promise-ledger"
MAX_EVIDENCE = 20  # the most recent results that show it; the verdict keeps the full list


@dataclass
class LedgerRun:
    verdicts: list[PromiseVerdict]
    opened: list[int] = field(default_factory=list)
    refreshed: list[int] = field(default_factory=list)  # already open: evidence added
    resolved: list[int] = field(default_factory=list)


def _tests(v: PromiseVerdict) -> list[dict[str, Any]]:
    if v.kind == "speed":
        return [t for d in v.detail.get("directions", {}).values() for t in d.get("tests", [])]
    if v.kind == "wifi_coverage":
        return [t for r in v.detail.get("rooms", {}).values() for t in r.get("tests", [])]
    return []


def evidence_of(v: PromiseVerdict, local: bool = False) -> list[tuple[str, str]]:
    """(agent_id, result_id) of the results that show the verdict: failing valid tests, or locally limited ones."""
    if v.kind == "service_continuity":
        picked = [(s["agent_id"], s["result_id"]) for s in v.detail.get("suspensions", [])]
    else:
        tests = sorted(_tests(v), key=lambda t: t["at"], reverse=True)
        if local:
            chosen = [t for t in tests if t.get("excluded") in ("wan_port_below_promise", "gateway_cpu_saturated")]
        else:
            chosen = [t for t in tests if t.get("passed") is False]
        picked = [(t["agent_id"], t["result_id"]) for t in chosen if t.get("agent_id")]
    return list(dict.fromkeys(picked))[:MAX_EVIDENCE]


def _ticket_detail(v: PromiseVerdict, said: list[Phrase]) -> dict[str, Any]:
    # `said`: the summary as phrases, shown by the console in the reader's language (collector/tickets)
    return {"promise_id": v.promise_id, "kind": v.kind, "outcome": v.outcome.value, "fixes": v.fixes,
            "evaluated_at": v.evaluated_at.isoformat(), "delivered_ratio": v.delivered_ratio,
            "said": [p.as_json() for p in said]}


def act(conn: Connection, verdicts: Sequence[PromiseVerdict], now: datetime, run: LedgerRun) -> None:
    for v in verdicts:
        carrier_class = FAULT_CLASS[v.kind]
        if v.actionable and v.outcome is Outcome.NOT_DELIVERED:
            opened = tickets.open_ticket(
                conn, line_id=v.line_id, fault_class=carrier_class, summary=v.summary[:2000], severity="warning",
                location=LOCATION[v.kind], evidence=evidence_of(v), opened_by=ACTOR,
                detail=_ticket_detail(v, v.said), now=now)
            (run.opened if opened.created else run.refreshed).append(opened.ticket_id)
            ledger.set_ticket(conn, v.promise_id, opened.ticket_id)
        elif v.actionable and v.outcome is Outcome.LIMITED:
            said = [phrase("tickets", "local_limit"), *v.fixes_said]
            summary = english("tickets", said[:1]) + " " + " ".join(v.fixes)
            opened = tickets.open_ticket(
                conn, line_id=v.line_id, fault_class=LOCAL_CLASS, summary=summary[:2000], severity="warning",
                location="cpe", evidence=evidence_of(v, local=True), opened_by=ACTOR, detail=_ticket_detail(v, said),
                now=now)
            (run.opened if opened.created else run.refreshed).append(opened.ticket_id)
            ledger.set_ticket(conn, v.promise_id, opened.ticket_id)
        if v.outcome is Outcome.DELIVERED:
            done = tickets.resolve_open(conn, v.line_id, carrier_class, ACTOR, note=v.summary[:2000], now=now,
                                        said=v.said)
            if done is not None:
                run.resolved.append(done)
                ledger.set_ticket(conn, v.promise_id, None)
        if v.kind == "speed" and v.outcome in (Outcome.DELIVERED, Outcome.NOT_DELIVERED):
            again = phrase("tickets", "judged_again")
            done = tickets.resolve_open(conn, v.line_id, LOCAL_CLASS, ACTOR,
                                        note=f"{english('tickets', again)} {v.summary[:1900]}", now=now,
                                        said=[again, *v.said])
            if done is not None:
                run.resolved.append(done)


def run_ledger(conn: Connection, policy: PromisePolicy, now: datetime | None = None,
               line_ids: Sequence[str] | None = None) -> LedgerRun:
    """Judge, keep the verdicts and act on them, all in the caller's transaction."""
    now = now or datetime.now(UTC)
    verdicts = ledger.judge(conn, policy, now, line_ids)
    ledger.save_verdicts(conn, verdicts)
    run = LedgerRun(verdicts)
    if policy.open_tickets:
        act(conn, verdicts, now, run)
    return run
