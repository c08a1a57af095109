"""Per test server figures: is one PoP overloaded? (issue 22 item 4)

Over the caller's lines and the last `days`, per throughput target (the server the agent used, as its
result names it): tests that measured, their median download and upload, busy refusals (the check's
reason is "server busy": every server it tried was full), and tests the server itself reported as
saturated (server_limited_flag). A carrier reads an overloaded PoP as a server with many refusals or
saturated tests, and a low median against the others.

The target is what a gateway reported: untrusted text. It is bounded on the wire (255 characters) and
here cut to TARGET_SHOWN characters; the console escapes it (Jinja autoescape), and at most
MAX_SERVERS servers are listed (the ones with the most tests), so a gateway inventing targets cannot
flood the page.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, and_, select

from collector.api.scope import Scope
from collector.store import schema as t
from linecheck.speed import SERVER_LIMITED_FLAG

KIND = "throughput"
TARGET_SHOWN = 100
MAX_SERVERS = 50
MAX_CHECKS = 200_000  # a week of a large fleet's tests is read at most this far (newest first)
BUSY_PREFIX = "server busy"
FIGURES = ("down_mbps", "up_mbps", SERVER_LIMITED_FLAG)


@dataclass
class ServerFigures:
    target: str
    tests: int = 0  # checks that measured (a download or upload figure)
    busy: int = 0  # checks refused: server busy
    failed: int = 0  # other checks without a figure (unreachable, interrupted, ...)
    server_limited: int = 0  # tests the server said it served while saturated
    median_down_mbps: float | None = None
    median_up_mbps: float | None = None
    lines: int = 0

    @property
    def busy_pct(self) -> float | None:
        asked = self.tests + self.busy + self.failed
        return None if not asked else round(100 * self.busy / asked, 1)


def per_server(conn: Connection, scope: Scope, days: int = 7, now: datetime | None = None) -> list[ServerFigures]:
    since = (now or datetime.now(UTC)) - timedelta(days=days)
    c = t.checks.c
    rows = conn.execute(
        select(c.agent_id, c.result_id, c.idx, c.line_id, c.target, c.status, c.reason)
        .where(c.kind == KIND, c.started_at >= since, scope.lines_clause(c.line_id))
        .order_by(c.started_at.desc()).limit(MAX_CHECKS)).all()
    if not rows:
        return []
    m = t.metrics.c
    values: dict[tuple[str, str, int], dict[str, float | None]] = {}
    chk = t.checks.c
    for agent_id, result_id, idx, name, value in conn.execute(
            select(m.agent_id, m.result_id, m.idx, m.name, m.value)
            # started_at on both sides: each side is pruned to the window's day partitions (docs/storage.md)
            .join(t.checks, and_(chk.agent_id == m.agent_id, chk.result_id == m.result_id, chk.idx == m.idx,
                                 chk.started_at == m.started_at))
            .where(chk.kind == KIND, chk.started_at >= since, m.started_at >= since,
                   scope.lines_clause(chk.line_id), m.name.in_(FIGURES))):
        values.setdefault((agent_id, result_id, idx), {})[name] = value
    servers: dict[str, ServerFigures] = {}
    downs: dict[str, list[float]] = {}
    ups: dict[str, list[float]] = {}
    lines: dict[str, set[str]] = {}
    for agent_id, result_id, idx, line_id, target, status, reason in rows:
        name = (target or "(none)")[:TARGET_SHOWN]
        s = servers.setdefault(name, ServerFigures(name))
        lines.setdefault(name, set()).add(line_id)
        figs = values.get((agent_id, result_id, idx), {})
        down, up = figs.get("down_mbps"), figs.get("up_mbps")
        if down is not None or up is not None:
            s.tests += 1
            if down is not None:
                downs.setdefault(name, []).append(down)
            if up is not None:
                ups.setdefault(name, []).append(up)
            if figs.get(SERVER_LIMITED_FLAG) == 1:
                s.server_limited += 1
        elif status == "error" and (reason or "").startswith(BUSY_PREFIX):
            s.busy += 1
        elif status in ("failed", "error"):
            s.failed += 1
    for name, s in servers.items():
        s.lines = len(lines[name])
        s.median_down_mbps = round(statistics.median(downs[name]), 1) if downs.get(name) else None
        s.median_up_mbps = round(statistics.median(ups[name]), 1) if ups.get(name) else None
    ranked = sorted(servers.values(), key=lambda s: (-(s.tests + s.busy + s.failed), s.target))
    return ranked[:MAX_SERVERS]
