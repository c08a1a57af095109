"""Chain of custody at ingest: an agent speaks only for the line and site it is bound to.

The broker authenticates the agent (its certificate's CN is the topic's agent id); the payload's
`line_id` and `site_id` are only claims. Before anything is stored, every result of a batch is checked
against its agent's binding, read in the ingest transaction (so an enrolment, a registry import or a
revocation committed before the batch counts at once, not after a cache refresh):

- an enrolled agent (`agents.enrolled_at` set by enrolment or a registry import) is bound to the row's
  line and site;
- an agent never enrolled is, under `ingest.unenrolled: bind_first`, bound by its first stored result
  (trust on first use: the row that result creates); under `quarantine`, refused;
- an agent whose every certificate is revoked is refused.

A refused result is quarantined with its reason; rules, promises, line state and tickets never see it.
Ingest itself never moves an agent between lines (collector/store/database.py `_touch_agents`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sqlalchemy import Connection, func, select

from collector.store import schema as t
from linecheck.wire import ResultEnvelope

UnenrolledPolicy = Literal["bind_first", "quarantine"]
_CHUNK = 500


def admit(conn: Connection, envelopes: Sequence[ResultEnvelope], unenrolled: UnenrolledPolicy,
          refused: dict[int, str]) -> list[int]:
    """Positions of the envelopes whose agent may speak for the line and site they name; the others go
    into `refused` (by position) with the reason. Two queries per batch of up to 500 agents."""
    agent_ids = sorted({e.agent_id for e in envelopes})
    if not agent_ids:
        return []
    bound: dict[str, tuple[str, str, bool]] = {}  # agent -> (line, site, enrolled)
    revoked: set[str] = set()
    a, c = t.agents.c, t.agent_certificates.c
    for start in range(0, len(agent_ids), _CHUNK):
        chunk = agent_ids[start:start + _CHUNK]
        for row in conn.execute(select(a.agent_id, a.line_id, a.site_id, a.enrolled_at).where(a.agent_id.in_(chunk))):
            bound[row.agent_id] = (row.line_id, row.site_id, row.enrolled_at is not None)
        # Revoked = has certificates and none of them is still valid (count() skips NULLs).
        revoked.update(conn.execute(select(c.agent_id).where(c.agent_id.in_(chunk)).group_by(c.agent_id)
                                    .having(func.count(c.revoked_at) == func.count())).scalars())
    admitted = []
    for i, e in enumerate(envelopes):
        reason = _refusal(e, bound, revoked, unenrolled)
        if reason is None:
            admitted.append(i)
        else:
            refused[i] = reason
    return admitted


def _refusal(e: ResultEnvelope, bound: dict[str, tuple[str, str, bool]], revoked: set[str],
             unenrolled: UnenrolledPolicy) -> str | None:
    if e.agent_id in revoked:
        return f"agent {e.agent_id!r} is revoked"
    binding = bound.get(e.agent_id)
    if binding is None or not binding[2]:
        if unenrolled == "quarantine":
            return f"agent {e.agent_id!r} is not enrolled (ingest.unenrolled: quarantine)"
        if binding is None:  # trust on first use: this result binds the agent (its row is written with it)
            bound[e.agent_id] = (e.line_id, e.site_id, False)
            return None
    line_id, site_id, enrolled = binding
    if (e.line_id, e.site_id) != (line_id, site_id):
        how = "enrolled on" if enrolled else "bound by its first result to"
        return (f"binding: agent {e.agent_id!r} is {how} line {line_id!r} site {site_id!r}; "
                f"the result names line {e.line_id!r} site {e.site_id!r}")
    return None
