"""Delivery accounting at the collector: per-agent sequence gaps, kept in the ingest transaction.

Every agent numbers its results 1, 2, 3, ... in its spool (the numbers survive restarts and are
never reused). A result that arrives past a hole opens a gap; a late result (re-sent after an outage,
or delivered out of order) narrows or closes it. What remains open is either still on its way, was
deliberately evicted by the agent's bounded spool (the agent reports how many in the `agent`
pseudo-check: `spool_evicted_count`), or was lost. `missing - evicted` is the figure to watch.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, Float, and_, bindparam, case, cast, delete, desc, func, insert, select, text

from collector.store import schema as t
from linecheck.wire import ResultEnvelope

log = logging.getLogger(__name__)

_LOCK_CLASS = 7412  # pg_advisory_xact_lock(class, key) namespace for per-agent ingest order


@dataclass(frozen=True)
class SeqGap:
    agent_id: str
    first_seq: int
    last_seq: int
    detected_at: datetime

    @property
    def missing(self) -> int:
        return self.last_seq - self.first_seq + 1


@dataclass(frozen=True)
class AgentDelivery:
    """One agent's delivery state as the collector sees it."""

    agent_id: str
    max_seq: int
    result_count: int
    missing_count: int  # seq numbers below max_seq not received
    gaps: list[SeqGap]
    status: str | None  # online / offline (retained status topic), None if never seen
    status_at: datetime | None
    last_seen: datetime | None
    spool_evicted_count: int | None  # as reported in the agent's latest result
    spool_backlog_count: int | None


def lock_agents(conn: Connection, agent_ids: Sequence[str]) -> None:
    """On PostgreSQL, serialise ingest per agent across collectors (gap bookkeeping reads max_seq).
    SQLite has a single writer already."""
    if conn.dialect.name != "postgresql" or not agent_ids:
        return
    # One round trip for the whole batch (one per agent made several collectors latency-bound).
    # unnest yields the array in its order and each row takes its lock as it is produced, so the
    # locks are still taken in one order everywhere: no deadlock between collectors.
    conn.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(a)) FROM unnest(CAST(:ids AS text[])) AS u(a)"),
                 {"space": _LOCK_CLASS, "ids": sorted(set(agent_ids))})


def track_sequences(conn: Connection, fresh: Sequence[ResultEnvelope], now: datetime) -> None:
    """Open, narrow and close gaps for the newly stored results. Runs in the ingest transaction,
    after lock_agents and BEFORE agents.max_seq is raised by this batch."""
    by_agent: dict[str, set[int]] = defaultdict(set)
    for e in fresh:
        by_agent[e.agent_id].add(e.seq)
    _track(conn, by_agent, now)


def account_quarantined(conn: Connection, seqs: Sequence[tuple[str, int]], now: datetime) -> None:
    """Quarantined results with a known seq arrived: they are not missing. They close or narrow a gap,
    open the ones below them, and raise the agent's max_seq as a stored result would (an agent can only
    spoil its own accounting: the topic, not the payload, names it). Agents without a row are skipped."""
    by_agent: dict[str, set[int]] = defaultdict(set)
    for agent_id, seq in seqs:
        by_agent[agent_id].add(seq)
    if not by_agent:
        return
    a = t.agents.c
    known = set(conn.execute(select(a.agent_id).where(a.agent_id.in_(sorted(by_agent)))).scalars())
    by_agent = defaultdict(set, {k: v for k, v in by_agent.items() if k in known})
    if not by_agent:
        return
    _track(conn, by_agent, now, quiet=True)
    highest = bindparam("b_seq")
    conn.execute(t.agents.update().where(a.agent_id == bindparam("b_agent"))
                 .values(max_seq=case((a.max_seq < highest, highest), else_=a.max_seq)),
                 [{"b_agent": k, "b_seq": max(v)} for k, v in sorted(by_agent.items())])


def _track(conn: Connection, by_agent: dict[str, set[int]], now: datetime, quiet: bool = False) -> None:
    known = dict(conn.execute(select(t.agents.c.agent_id, t.agents.c.max_seq)
                              .where(t.agents.c.agent_id.in_(sorted(by_agent)))).all()) if by_agent else {}
    for agent_id in sorted(by_agent):
        seqs = sorted(by_agent[agent_id])
        prev_max = known.get(agent_id) or 0
        expected = prev_max + 1
        opened = []
        for seq in seqs:
            if seq <= prev_max:
                _fill(conn, agent_id, seq, now, quiet)
                continue
            if seq > expected:
                opened.append({"agent_id": agent_id, "first_seq": expected, "last_seq": seq - 1, "detected_at": now})
            expected = seq + 1
        if opened:
            conn.execute(insert(t.seq_gaps), opened)


def _fill(conn: Connection, agent_id: str, seq: int, now: datetime, quiet: bool = False) -> None:
    gap = conn.execute(select(t.seq_gaps.c.first_seq, t.seq_gaps.c.last_seq, t.seq_gaps.c.detected_at).where(and_(
        t.seq_gaps.c.agent_id == agent_id, t.seq_gaps.c.first_seq <= seq, t.seq_gaps.c.last_seq >= seq))).first()
    if gap is None:
        if quiet:  # a quarantined re-send of a stored seq (e.g. its result id reused): nothing was missing
            return
        # Below max_seq, new result id, not in a gap: the agent's spool was recreated (seq restarted).
        log.warning("agent %s sent seq %d again under a new result id: was its spool reset?", agent_id, seq)
        return
    conn.execute(delete(t.seq_gaps).where(and_(t.seq_gaps.c.agent_id == agent_id,
                                               t.seq_gaps.c.first_seq == gap.first_seq)))
    pieces = [(gap.first_seq, seq - 1), (seq + 1, gap.last_seq)]
    rows = [{"agent_id": agent_id, "first_seq": a, "last_seq": b, "detected_at": gap.detected_at}
            for a, b in pieces if a <= b]
    if rows:
        conn.execute(insert(t.seq_gaps), rows)


# --- queries (API, metrics, CLI) ---------------------------------------------------------------


def seq_gaps(engine: Engine, agent_id: str | None = None) -> list[SeqGap]:
    stmt = select(t.seq_gaps).order_by(t.seq_gaps.c.agent_id, t.seq_gaps.c.first_seq)
    if agent_id is not None:
        stmt = stmt.where(t.seq_gaps.c.agent_id == agent_id)
    with engine.connect() as conn:
        return [SeqGap(r.agent_id, r.first_seq, r.last_seq, r.detected_at) for r in conn.execute(stmt)]


def missing_totals(engine: Engine) -> tuple[int, int]:
    """(seq numbers missing across the fleet, agents with at least one gap) — for /metrics."""
    with engine.connect() as conn:
        missing, agents = conn.execute(select(
            # Summed as floats: two agents at seq 2**63-1 overflow SQLite's integer SUM (and /metrics then
            # reported the database down for good); a gauge is a float anyway.
            func.coalesce(func.sum(cast(t.seq_gaps.c.last_seq - t.seq_gaps.c.first_seq + 1, Float)), 0),
            func.count(func.distinct(t.seq_gaps.c.agent_id)))).one()
    return int(missing), int(agents)  # int() of a float: exact below 2**53, close enough above


def agent_delivery(engine: Engine, agent_id: str) -> AgentDelivery | None:
    gaps = seq_gaps(engine, agent_id)
    with engine.connect() as conn:
        agent = conn.execute(select(t.agents).where(t.agents.c.agent_id == agent_id)).first()
        if agent is None:
            return None
        latest = conn.execute(select(t.results.c.result_id).where(t.results.c.agent_id == agent_id)
                              .order_by(desc(t.results.c.seq)).limit(1)).scalar()
        reported: dict[str, float | None] = {}
        if latest is not None:
            rows = conn.execute(
                select(t.metrics.c.name, t.metrics.c.value).select_from(t.metrics.join(t.checks, and_(
                    t.metrics.c.agent_id == t.checks.c.agent_id, t.metrics.c.result_id == t.checks.c.result_id,
                    t.metrics.c.idx == t.checks.c.idx, t.metrics.c.started_at == t.checks.c.started_at)))
                .where(t.checks.c.agent_id == agent_id, t.checks.c.result_id == latest, t.checks.c.kind == "agent"))
            reported = {name: value for name, value in rows}

    def _int(name: str) -> int | None:
        value = reported.get(name)
        return None if value is None else int(value)

    return AgentDelivery(agent_id=agent_id, max_seq=int(agent.max_seq), result_count=int(agent.result_count),
                         missing_count=sum(g.missing for g in gaps), gaps=gaps, status=agent.status,
                         status_at=agent.status_at, last_seen=agent.last_seen,
                         spool_evicted_count=_int("spool_evicted_count"),
                         spool_backlog_count=_int("spool_backlog_count"))


def render(engine: Engine, agent_id: str | None = None) -> str:
    """Text for `linecheck-collector delivery`: one agent in full, or every agent with gaps."""
    if agent_id is None:
        gaps = seq_gaps(engine)
        if not gaps:
            return "no sequence gaps: every agent's results up to its latest have arrived"
        agents = sorted({g.agent_id for g in gaps})
    else:
        agents = [agent_id]
    lines = []
    for aid in agents:
        d = agent_delivery(engine, aid)
        if d is None:
            lines.append(f"{aid}: no results stored")
            continue
        ranges = ", ".join(str(g.first_seq) if g.missing == 1 else f"{g.first_seq}-{g.last_seq}" for g in d.gaps[:20])
        more = f" (+{len(d.gaps) - 20} more ranges)" if len(d.gaps) > 20 else ""
        lines.append(f"{aid}: max_seq={d.max_seq} stored={d.result_count} missing={d.missing_count} "
                     f"status={d.status or 'unknown'} agent_reports evicted={_n(d.spool_evicted_count)} "
                     f"backlog={_n(d.spool_backlog_count)}" + (f"\n  missing seq: {ranges}{more}" if ranges else ""))
    return "\n".join(lines)


def _n(value: int | None) -> str:
    return "?" if value is None else str(value)
