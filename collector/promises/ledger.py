"""The ledger in the collector's database: store promises and billing, gather evidence, keep verdicts.

Works inside the caller's transaction on SQLite and PostgreSQL (SQLAlchemy Core). Evidence is
loaded for many lines at once (chunks of 500 ids), so judging a fleet is a handful of queries per
chunk, not per line. Consequences (tickets) are in consequences.py.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from collector.promises.billing import BillingRecord
from collector.promises.continuity import SUSPENDED_CODE, Suspension
from collector.promises.criterion import PromisePolicy
from collector.promises.judge import LineEvidence, evaluate
from collector.promises.model import (
    PROMISE_ADAPTER,
    FeeWaiverPromise,
    Outcome,
    Promise,
    ServiceContinuityPromise,
    SpeedPromise,
    TariffReductionPromise,
    WifiCoveragePromise,
)
from collector.promises.speed import sample_from_metrics
from collector.promises.verdict import PromiseVerdict, dumps
from collector.promises.wifi import WifiSample
from collector.store import documents
from collector.store import schema as t
from collector.store.upsert import upsert_rows
from linecheck.catalogue import LINK, THROUGHPUT, WIFI_THROUGHPUT
from linecheck.configfile import ConfigError

# Check kinds the evidence comes from, from the kind catalogue (linecheck/kinds.csv). The WiFi
# throughput test records the room's label as the check's target.
WIFI_KINDS = (WIFI_THROUGHPUT,)
CHUNK = 500


def _chunks(ids: Iterable[str]) -> Iterable[list[str]]:
    ids = sorted(set(ids))
    for i in range(0, len(ids), CHUNK):
        yield ids[i:i + CHUNK]


def _unknown_lines(conn: Connection, line_ids: Iterable[str]) -> set[str]:
    wanted = set(line_ids)
    known: set[str] = set()
    for chunk in _chunks(wanted):
        known.update(conn.execute(select(t.lines.c.line_id).where(t.lines.c.line_id.in_(chunk))).scalars())
    return wanted - known


# --- promises and billing in ---------------------------------------------------------------------


def import_promises(conn: Connection, promises: Sequence[Promise], source: str = "promises",
                    now: datetime | None = None) -> int:
    """Upsert promises; every line must be in the registry (else nothing is imported)."""
    unknown = _unknown_lines(conn, (p.line_id for p in promises))
    if unknown:
        raise ConfigError(source, [f"line_id: unknown line(s) {sorted(unknown)} (import them into the registry first)"])
    now = now or datetime.now(UTC)
    upsert_rows(conn, t.promises, ["promise_id"], [{
        "promise_id": p.id, "line_id": p.line_id, "kind": p.kind, "effective": p.effective,
        "grace_days": p.grace_days, "terms": p.model_dump_json(), "note": p.note,
        "created_at": now, "updated_at": now} for p in promises], keep=("created_at",))
    return len(promises)


def remove_promise(conn: Connection, promise_id: str) -> bool:
    conn.execute(t.promise_verdicts.delete().where(t.promise_verdicts.c.promise_id == promise_id))
    return conn.execute(t.promises.delete().where(t.promises.c.promise_id == promise_id)).rowcount > 0


def import_billing(conn: Connection, records: Sequence[BillingRecord], source: str = "billing",
                   now: datetime | None = None) -> int:
    unknown = _unknown_lines(conn, (r.line_id for r in records))
    if unknown:
        raise ConfigError(source, [f"line_id: unknown line(s) {sorted(unknown)} (import them into the registry first)"])
    now = now or datetime.now(UTC)
    upsert_rows(conn, t.billing_records, ["line_id", "period", "product"], [
        r.model_dump() | {"source": source[-255:], "imported_at": now} for r in records])
    return len(records)


def stored_promises(conn: Connection, line_ids: Iterable[str] | None = None) -> list[Promise]:
    stmt = select(t.promises.c.terms).order_by(t.promises.c.promise_id)
    if line_ids is None:
        return [PROMISE_ADAPTER.validate_json(r) for r in conn.execute(stmt).scalars()]
    out: list[Promise] = []
    for chunk in _chunks(line_ids):
        out += [PROMISE_ADAPTER.validate_json(r)
                for r in conn.execute(stmt.where(t.promises.c.line_id.in_(chunk))).scalars()]
    return out


# --- evidence ------------------------------------------------------------------------------------


def _check_metrics(conn: Connection, line_ids: list[str], kinds: Sequence[str], since: datetime, until: datetime
                   ) -> list[dict[str, Any]]:
    """Checks of these kinds on these lines in [since, until], each with its metrics as a dict."""
    c = t.checks.c  # with its metrics as one JSON object: no join to the metrics view (a second expansion)
    stmt = (select(c.agent_id, c.result_id, c.line_id, c.kind, c.target, c.status, c.reason, c.started_at,
                   c.metrics)
            .where(c.line_id.in_(line_ids), c.kind.in_(list(kinds)), c.started_at >= since, c.started_at <= until))
    return [{"agent_id": r.agent_id, "result_id": r.result_id, "line_id": r.line_id, "kind": r.kind,
             "target": r.target, "status": r.status, "reason": r.reason, "at": r.started_at,
             "metrics": documents.metric_values(r.metrics)} for r in conn.execute(stmt)]


def _speed_and_wifi(conn: Connection, line_ids: list[str], since: datetime, until: datetime,
                    evidence: dict[str, LineEvidence]) -> None:
    rows = _check_metrics(conn, line_ids, (THROUGHPUT, LINK, *WIFI_KINDS), since, until)
    links = {(r["agent_id"], r["result_id"]): r["metrics"] for r in rows if r["kind"] == LINK}
    for r in rows:
        ev = evidence[r["line_id"]]
        if r["kind"] == THROUGHPUT:
            ev.speed.append(sample_from_metrics(r["result_id"], r["at"], r["metrics"],
                                                links.get((r["agent_id"], r["result_id"])), r["status"],
                                                r["reason"], r["agent_id"]))
        elif r["kind"] in WIFI_KINDS and r["target"]:
            mt = r["metrics"]
            ev.wifi.append(WifiSample(r["result_id"], r["at"], r["target"], mt.get("down_mbps"), mt.get("up_mbps"),
                                      r["status"], r["reason"], r["agent_id"]))


def load_evidence(conn: Connection, promises: Sequence[Promise], policy: PromisePolicy, now: datetime
                  ) -> dict[str, LineEvidence]:
    """What every promised line's verdicts need, loaded per kind for all lines in a few queries."""
    evidence = {p.line_id: LineEvidence(p.line_id) for p in promises}
    for chunk in _chunks(evidence):
        for r in conn.execute(select(t.lines.c.line_id, t.lines.c.account_since).where(t.lines.c.line_id.in_(chunk))):
            evidence[r.line_id].account_since = r.account_since
    measured = {p.line_id for p in promises if isinstance(p, SpeedPromise | WifiCoveragePromise)}
    since = now - timedelta(days=policy.speed.window_days)
    for chunk in _chunks(measured):
        _speed_and_wifi(conn, chunk, since, now, evidence)
    billed = {p.line_id for p in promises if isinstance(p, TariffReductionPromise | FeeWaiverPromise)}
    for chunk in _chunks(billed):
        for r in conn.execute(select(t.billing_records).where(t.billing_records.c.line_id.in_(chunk))):
            evidence[r.line_id].billing.append(BillingRecord(
                line_id=r.line_id, period=r.period, product=r.product, amount=r.amount, waived=r.waived,
                currency=r.currency))
    protected = [p for p in promises if isinstance(p, ServiceContinuityPromise)]
    if protected:
        zone = policy.speed.zone
        start = min(p.window(zone)[0] for p in protected)
        for chunk in _chunks(p.line_id for p in protected):
            f = t.findings
            for fr in conn.execute(select(f.c.line_id, f.c.agent_id, f.c.result_id, f.c.started_at, f.c.message)
                                   .where(f.c.line_id.in_(chunk), f.c.code == SUSPENDED_CODE,
                                          f.c.started_at >= start, f.c.started_at <= now)):
                evidence[fr.line_id].suspensions.append(Suspension(fr.agent_id, fr.result_id,
                                                                   fr.started_at, fr.message))
            for rr in conn.execute(select(t.results.c.line_id, t.results.c.started_at)
                                   .where(t.results.c.line_id.in_(chunk), t.results.c.started_at >= start,
                                          t.results.c.started_at <= now)):
                evidence[rr.line_id].report_times.append(rr.started_at)
    return evidence


# --- verdicts ------------------------------------------------------------------------------------


def judge(conn: Connection, policy: PromisePolicy, now: datetime | None = None,
          line_ids: Iterable[str] | None = None) -> list[PromiseVerdict]:
    """Judge the stored promises (of these lines, or all) from the stored evidence. Pure reads."""
    now = now or datetime.now(UTC)
    promises = stored_promises(conn, line_ids)
    evidence = load_evidence(conn, promises, policy, now)
    return [evaluate(p, evidence[p.line_id], policy, now) for p in promises]


def save_verdicts(conn: Connection, verdicts: Sequence[PromiseVerdict]) -> dict[str, Any]:
    """Keep the latest verdict per promise; returns the previous rows by promise id (None when new)."""
    previous: dict[str, Any] = {}
    for chunk in _chunks(v.promise_id for v in verdicts):
        for old in conn.execute(select(t.promise_verdicts).where(t.promise_verdicts.c.promise_id.in_(chunk))):
            previous[old.promise_id] = old
    rows = []
    for v in verdicts:
        before = previous.get(v.promise_id)
        since = before.outcome_since if before is not None and before.outcome == v.outcome.value \
            else v.evaluated_at
        rows.append({"promise_id": v.promise_id, "line_id": v.line_id, "kind": v.kind, "outcome": v.outcome.value,
                     "in_grace": v.in_grace, "summary": v.summary, "detail": dumps(v.as_dict()),
                     "delivered_ratio": v.delivered_ratio, "evaluated_at": v.evaluated_at,
                     "judgeable_from": v.judgeable_from, "outcome_since": since,
                     "ticket_id": before.ticket_id if before is not None else None})
    upsert_rows(conn, t.promise_verdicts, ["promise_id"], rows)
    return previous


def set_ticket(conn: Connection, promise_id: str, ticket_id: int | None) -> None:
    conn.execute(t.promise_verdicts.update().where(t.promise_verdicts.c.promise_id == promise_id)
                 .values(ticket_id=ticket_id))


def stored_verdict(conn: Connection, promise_id: str) -> PromiseVerdict | None:
    detail = conn.execute(select(t.promise_verdicts.c.detail)
                          .where(t.promise_verdicts.c.promise_id == promise_id)).scalar()
    return None if detail is None else PromiseVerdict.from_dict(json.loads(detail))


def verdict_rows(conn: Connection, scope: set[str] | None = None, line_ids: Iterable[str] | None = None
                 ) -> list[dict[str, Any]]:
    """Latest verdicts joined with the registry (tenant, district, segment), optionally within tenants."""
    v, ln = t.promise_verdicts, t.lines
    stmt = (select(v.c.promise_id, v.c.line_id, v.c.kind, v.c.outcome, v.c.in_grace, v.c.summary,
                   v.c.delivered_ratio, v.c.evaluated_at, v.c.outcome_since, v.c.judgeable_from, v.c.ticket_id,
                   ln.c.tenant_id, ln.c.district, ln.c.segment, ln.c.name.label("line_name"))
            .select_from(v.outerjoin(ln, ln.c.line_id == v.c.line_id))
            .order_by(v.c.line_id, v.c.promise_id))
    if scope is not None:
        stmt = stmt.where(ln.c.tenant_id.in_(sorted(scope)))
    if line_ids is not None:
        stmt = stmt.where(v.c.line_id.in_(sorted(set(line_ids))))
    out = []
    for r in conn.execute(stmt):
        row = dict(r._mapping)
        row["outcome"] = Outcome(row["outcome"])
        out.append(row)
    return out


def lines_with_new_measurements(conn: Connection, keys: Iterable[tuple[str, str]]) -> set[str]:
    """Lines whose results (agent_id, result_id) carry a throughput or WiFi test: worth re-judging."""
    lines: set[str] = set()
    pairs = list(keys)
    for i in range(0, len(pairs), CHUNK):
        part = pairs[i:i + CHUNK]
        ids = [rid for _, rid in part]
        rows = conn.execute(select(t.checks.c.line_id, t.checks.c.agent_id, t.checks.c.result_id)
                            .where(t.checks.c.result_id.in_(ids),
                                   t.checks.c.kind.in_([THROUGHPUT, *WIFI_KINDS])))
        wanted = set(part)
        lines.update(r.line_id for r in rows if (r.agent_id, r.result_id) in wanted)
    return lines


def by_line(verdicts: Iterable[PromiseVerdict]) -> dict[str, list[PromiseVerdict]]:
    out: dict[str, list[PromiseVerdict]] = defaultdict(list)
    for v in verdicts:
        out[v.line_id].append(v)
    return out
