"""The correlation decision, pure: held faults and open incidents in, actions out. No database.

A fault the rules would ticket on a line that names its access path is *held* (correlate.hold) for up
to `hold_s`. Each pass decides for every held fault:

- an open incident of the same class on a node of its path → the line joins it (no ticket);
- enough lines behind one node failing alike within `window_s` → one incident on that node; "enough"
  is ≥ max(min_lines, fraction × the node's lines that reported in the window): lines that stayed
  closed (never reported) neither count for nor against, and a few unrelated faults elsewhere under a
  big node do not reach its threshold;
- the node is the deepest one that explains the failure: start at each failing line's deepest
  qualifying node and climb while the parent qualifies, has failing lines under at least
  max(2, half of its reporting children) children, and qualifies on its lines outside the child
  too (an OLT whose ports all fail is one OLT incident; one dead port, or three dead ports of sixteen,
  stay port incidents; a port whose failing lines are spread over its splitters is the port);
- held longer than `hold_s` and none of the above → the line's own ticket;
- recovered while held → dropped (it never became a ticket).

An open incident resolves when at least `resolve_fraction` of its members have recovered; the members
still failing then (stragglers) get their own tickets — their fault outlasted the area fault."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import Field

from linecheck.configfile import Strict


class IncidentConfig(Strict):
    enabled: bool = Field(default=True, description="Correlate line faults into area incidents")
    classes: list[str] = Field(default_factory=lambda: ["line_down", "agent_offline", "packet_loss",
                                                        "dns_failure"],
                               description="Fault classes that can be an area fault")
    window_s: int = Field(default=900, ge=60, le=86400, description="Faults within this window are correlated")
    hold_s: int = Field(default=300, ge=0, le=86400,
                        description="How long a fault waits for its neighbours before its own ticket")
    min_lines: int = Field(default=3, ge=2, le=10000, description="Fewest failing lines that make an incident")
    fraction: float = Field(default=0.3, gt=0, le=1,
                            description="Share of the node's reporting lines that must fail alike")
    resolve_fraction: float = Field(default=0.9, gt=0, le=1,
                                    description="Share of members recovered that resolves the incident")


@dataclass(frozen=True)
class Held:
    line_id: str
    fault_class: str
    first_at: datetime
    recovered: bool = False


@dataclass(frozen=True)
class OpenIncident:
    incident_id: int
    node: str
    fault_class: str
    members: Mapping[str, bool]  # line_id → recovered


@dataclass
class Snapshot:
    paths: Mapping[str, Sequence[str]]  # line_id → node keys, district first (only lines that name one)
    reporting: Mapping[str, int]  # node → lines behind it that reported within the window
    held: Sequence[Held]
    incidents: Sequence[OpenIncident] = field(default_factory=list)
    # node -> how many of its child nodes have lines that reported within the window; a node missing
    # here counts only the children seen failing
    fanout: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Join:
    incident_id: int
    line_id: str
    fault_class: str


@dataclass(frozen=True)
class Open:
    node: str
    fault_class: str
    members: tuple[str, ...]
    reporting: int


@dataclass(frozen=True)
class Move:
    """An open incident turns out wider: it moves up to `node` and takes the new members."""
    incident_id: int
    node: str
    members: tuple[str, ...]
    reporting: int


@dataclass(frozen=True)
class Merge:
    """Two open incidents turned out to be one: `source`'s members go to `target`, `source` closes."""
    source: int
    target: int


@dataclass(frozen=True, order=True)
class Release:
    line_id: str
    fault_class: str


@dataclass(frozen=True, order=True)
class Drop:
    line_id: str
    fault_class: str


@dataclass(frozen=True)
class Resolve:
    incident_id: int
    stragglers: tuple[str, ...]


Action = Join | Open | Move | Merge | Release | Drop | Resolve


# A failure climbs to a parent only if it touches at least this share of the parent's reporting children:
# three dead ports of an OLT's sixteen stay three port incidents; a port whose failing lines are spread
# over most of its splitters is the port's failure, even where no single splitter reaches the threshold.
SPREAD = 0.5


def threshold(reporting: int, cfg: IncidentConfig) -> int:
    return max(cfg.min_lines, math.ceil(cfg.fraction * reporting))


def decide(s: Snapshot, cfg: IncidentConfig, now: datetime) -> list[Action]:
    out: list[Action] = []
    for inc in s.incidents:
        recovered = sum(inc.members.values())
        if inc.members and recovered >= cfg.resolve_fraction * len(inc.members):
            out.append(Resolve(inc.incident_id, tuple(sorted(k for k, v in inc.members.items() if not v))))
    resolving = {a.incident_id for a in out if isinstance(a, Resolve)}
    live = [i for i in s.incidents if i.incident_id not in resolving]

    waiting: list[Held] = []
    for h in s.held:
        if h.recovered:
            out.append(Drop(h.line_id, h.fault_class))
            continue
        path = set(s.paths.get(h.line_id, ()))
        inc = next((i for i in live if i.fault_class == h.fault_class and i.node in path), None)
        if inc is not None:
            out.append(Join(inc.incident_id, h.line_id, h.fault_class))
        else:
            waiting.append(h)

    claimed: set[tuple[str, str]] = set()
    by_class: dict[str, list[Held]] = defaultdict(list)
    for h in waiting:
        if (now - h.first_at).total_seconds() <= cfg.window_s:
            by_class[h.fault_class].append(h)
    first = {(h.line_id, h.fault_class): h.first_at for h in waiting}
    for cls in sorted(set(by_class) | {i.fault_class for i in live}):
        mine = [i for i in live if i.fault_class == cls]
        # An open incident's members still failing count too: a wider failure moves it up a level.
        failing = [(h.line_id, None) for h in by_class[cls]] + [
            (line, i.incident_id) for i in mine for line, ok in i.members.items() if not ok]
        for node, members in _incidents(s, failing, cfg):
            fresh = tuple(m for m in members if (m, cls) in first)
            claimed.update((m, cls) for m in fresh)
            under = [i for i in mine if i.node == node or i.node.startswith(node + "/")]
            reporting = max(s.reporting.get(node, 0), len(members))
            if under:
                target = min(i.incident_id for i in under)
                if fresh or len(under) > 1 or any(i.node != node for i in under):
                    out.append(Move(target, node, fresh, reporting))
                out += [Merge(i.incident_id, target) for i in sorted(under, key=lambda i: i.incident_id)[1:]]
            elif fresh and max((now - first[(m, cls)]).total_seconds() for m in fresh) >= cfg.hold_s:
                out.append(Open(node, cls, fresh, reporting))  # its oldest fault has waited for its neighbours

    for h in waiting:
        if (h.line_id, h.fault_class) in claimed:
            continue
        if (now - h.first_at).total_seconds() >= cfg.hold_s:
            out.append(Release(h.line_id, h.fault_class))
    return out


def _incidents(s: Snapshot, lines: Sequence[tuple[str, int | None]],
               cfg: IncidentConfig) -> list[tuple[str, tuple[str, ...]]]:
    failing: dict[str, set[str]] = defaultdict(set)
    children: dict[str, set[str]] = defaultdict(set)
    parent: dict[str, str] = {}
    depth: dict[str, int] = {}
    for line_id, _ in lines:
        path = list(s.paths.get(line_id, ()))
        for i, node in enumerate(path):
            failing[node].add(line_id)
            depth[node] = i
            if i:
                parent[node] = path[i - 1]
                children[path[i - 1]].add(node)

    def qualifies_left(node: str) -> bool:
        """Qualifies on the lines no incident chosen so far explains."""
        left = len(failing[node] - taken)
        return left >= threshold(max(s.reporting.get(node, 0) - (len(failing[node]) - left), left), cfg)

    def spread(node: str, child: str) -> bool:
        """The failure is the node's own, not one child's nor a coincidence of a few children: failing
        lines under at least max(2, SPREAD x its reporting children) children, and the node still
        qualifies on its lines outside `child` (lines of incidents chosen before do not count)."""
        fanout = max(s.fanout.get(node, 0), len(children[node]))
        touched = sum(1 for c in children[node] if failing[c] - taken)
        if touched < max(2, math.ceil(SPREAD * fanout)):
            return False
        out = len((failing[node] - failing[child]) - taken)
        return out >= threshold(max(s.reporting.get(node, 0) - s.reporting.get(child, 0), out), cfg)

    chosen: list[tuple[str, tuple[str, ...]]] = []
    taken: set[str] = set()
    for node in sorted(failing, key=lambda n: (-depth[n], n)):  # deepest first
        if not qualifies_left(node):  # lines a deeper incident explains do not make this node fail too
            continue
        top = node
        while top in parent and qualifies_left(parent[top]) and spread(parent[top], top):
            top = parent[top]
        members = tuple(sorted(failing[top] - taken))
        if len(members) >= cfg.min_lines:
            chosen.append((top, members))
            taken.update(members)
    return chosen
