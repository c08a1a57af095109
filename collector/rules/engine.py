"""Debounced rules: results in, tickets out. Declarative, configured under `rules:` (docs/rules.md).

For each line and fault class the engine looks at the line's most recent results that *observe*
the class (a result observes it when it carries one of the class's check kinds, ran, and the class
is not masked — e.g. packet loss means nothing while the line is down). Each observation is a
breach or healthy. A ticket opens when at least M of the last N observations breach and the newest
one does (a fault that already cleared opens nothing). For re-test classes (speed, loss) it first
asks the agent for a re-test (a remote command) and opens only when the re-test breaches too; a
healthy re-test discards the window. An open ticket resolves after K consecutive healthy
observations newer than its last breach. `agent_offline` is separate: a periodic sweep notices
an agent silent for longer than its schedule allows (the line may be fine; the agent is not talking).

The hook has three parts: `load_evidence` reads each line's plan, open tickets, re-tests and recent
results from the database (`LineEvidence`); `evaluate` is a pure function from that evidence to
outcomes (open, resolve, ask for a re-test, answer one), table-tested without a database in
tests/test_rules_pure.py; `apply` writes the outcomes. Everything runs inside the ingest
transaction (an ingest hook), serialised per line on PostgreSQL with an advisory lock, so several
collectors evaluating one line see each other's results.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, model_validator
from sqlalchemy import Connection, func, select, text

from collector.commands import queue as cmds
from collector.rules import outages
from collector.rules.outages import IntermittentOutageRule
from collector.store import documents
from collector.store import schema as t
from collector.tickets import lifecycle as tickets
from linecheck import catalogue, speed
from linecheck.catalogue import THROUGHPUT
from linecheck.configfile import Strict
from linecheck.i18n import english, phrase
from linecheck.i18n.phrases import Phrase
from linecheck.wire import AGENT_CHECK, ResultEnvelope, Status, Trigger

log = logging.getLogger(__name__)

_LOCK_SPACE = 7413  # pg_advisory_xact_lock(space, key), one per line; 7411 migrations, 7412 per-agent ingest
_SEVERITY_RANK = {"warning": 1, "critical": 2}
_NOT_RUN = frozenset((Status.ERROR, Status.SKIPPED))  # a set built once: enum attribute access is slow


class Condition(Strict):
    """A metric threshold; the first non-null metric of `metrics` in an observing check is compared."""

    metrics: list[str] = Field(min_length=1, description="e.g. [capacity_down_mbps, down_mbps]: first measured wins")
    above: float | None = Field(default=None, description="breach when the value is at or above this")
    below: float | None = Field(default=None, description="breach when the value is below this")
    below_plan_pct: float | None = Field(default=None, gt=0, le=100,
                                         description="breach when the value is below this % of the line's plan")
    plan: Literal["down", "up"] | None = Field(default=None, description="which plan below_plan_pct refers to")

    @model_validator(mode="after")
    def _one_threshold(self) -> Condition:
        given = [k for k in ("above", "below", "below_plan_pct") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of above, below, below_plan_pct (got {given or 'none'})")
        if (self.below_plan_pct is None) != (self.plan is None):
            raise ValueError("plan (down or up) goes with below_plan_pct, and only with it")
        return self


class Rule(Strict):
    """One fault class. Unset M/N/K fall back to the `rules:` defaults."""

    enabled: bool = True
    title: str = Field(default="", max_length=80, description="Human name used in ticket summaries")
    findings: list[str] = Field(default_factory=list, description="agent finding codes that count as a breach")
    min_severity: Literal["warning", "critical"] = "warning"
    conditions: list[Condition] = Field(default_factory=list, description="metric thresholds that count as a breach")
    observed_by: list[str] = Field(default_factory=list,
                                   description="check kinds that make a result count; [] = any check of the line")
    masked_by: list[str] = Field(default_factory=list,
                                 description="classes that, breaching in the same result, make it not count")
    breaches: int | None = Field(default=None, ge=1, le=100, description="M: breaches needed ...")
    window: int | None = Field(default=None, ge=1, le=100, description="N: ... among the last N observations")
    heal_after: int | None = Field(default=None, ge=1, le=100, description="K: healthy observations that resolve")
    retest: bool = Field(default=False, description="ask the agent to re-test before opening")
    retest_checks: list[str] | None = Field(default=None, description="checks the re-test runs; default observed_by")
    severity: Literal["warning", "critical"] = "critical"
    where: str | None = Field(default=None, description="localisation when no finding says (wan, cpe, lan, ...)")


def _rule(title: str, codes: list[str], observed_by: list[str], **kw: Any) -> Rule:
    return Rule(title=title, findings=codes, observed_by=observed_by, **kw)


# The documented defaults (docs/rules.md). A key under rules.classes changes only what it names.
DEFAULT_RULES: dict[str, Rule] = {
    "line_down": _rule("Line down", ["line_down"], ["link"], breaches=2, window=3, heal_after=2, where="wan"),
    "packet_loss": _rule("Packet loss", ["packet_loss"], ["ping", "udp_latency"], masked_by=["line_down"],
                         retest=True, where="wan"),
    "high_latency": _rule("High latency", ["high_latency"], ["ping", "udp_latency"],
                          masked_by=["line_down", "packet_loss"], severity="warning", where="wan"),
    # The class keeps its name (tickets and configs use it); the finding it matches is the one the
    # throughput check emits, and its conditions are the same judgement (linecheck/speed.py).
    "speed_below_plan": Rule(
        title="Speed below plan", findings=["throughput_below_plan"], observed_by=[THROUGHPUT],
        conditions=[Condition(metrics=list(speed.FIGURES["down"]), below_plan_pct=speed.SLOW_PCT_OF_PLAN, plan="down"),
                    Condition(metrics=list(speed.FIGURES["up"]), below_plan_pct=speed.SLOW_PCT_OF_PLAN, plan="up")],
        masked_by=["line_down", "wan_link_degraded"], retest=True, severity="warning", where="wan"),
    "dns_failure": _rule("DNS failure", ["dns_failure"], ["dns"], masked_by=["line_down"], where="dns"),
    # Slow but working DNS is its own, lesser fault; a failing resolver is dns_failure's business.
    "dns_slow": _rule("DNS slow", ["dns_slow"], ["dns"], masked_by=["line_down", "dns_failure"], severity="warning",
                      where="dns"),
    # A line that drops during checks: seen only while a check runs (the link's carrier changes).
    "link_flap": _rule("Line drops", ["link_flap"], ["link"], masked_by=["line_down"], severity="warning", where="wan"),
    # Bufferbloat: round trips grow under load; whatever the speed, calls stutter while the line is busy.
    "latency_under_load": _rule("Latency under load", ["latency_under_load"], [THROUGHPUT], masked_by=["line_down"],
                                severity="warning", where="wan"),
    "wan_link_degraded": _rule("WAN port degraded", ["wan_link_degraded"], ["link"], masked_by=["line_down"],
                               severity="warning", where="cpe"),
    "wifi_weak": _rule("Weak WiFi", ["wifi_weak"], ["wifi"], severity="warning", where="wifi"),
    "service_suspended": _rule("Service suspended", ["service_suspended"], [], breaches=1, window=1,
                               heal_after=1, where="service"),
}


class AgentOfflineRule(Strict):
    enabled: bool = True
    grace_factor: float = Field(default=2.0, ge=1, description="silent for this many report intervals = offline")
    default_interval_s: int = Field(default=3600, ge=10, description="when the registry gives no report_interval_s")
    min_silence_s: int = Field(default=300, ge=0, description="never call an agent offline sooner than this")
    severity: Literal["warning", "critical"] = "warning"


class RulesConfig(Strict):
    enabled: bool = True
    breaches: int = Field(default=3, ge=1, le=100, description="default M")
    window: int = Field(default=5, ge=1, le=100, description="default N")
    heal_after: int = Field(default=3, ge=1, le=100, description="default K")
    retest_timeout_s: float = Field(default=900, ge=10, le=86400, description="a re-test not answered by then expires")
    sweep_interval_s: float = Field(default=60, ge=1, le=3600, description="how often agent_offline is checked")
    classes: dict[str, Rule] = Field(default_factory=dict, description="per class: changes to the defaults, or new")
    agent_offline: AgentOfflineRule = Field(default_factory=AgentOfflineRule)
    intermittent_outage: IntermittentOutageRule = Field(
        default_factory=IntermittentOutageRule,
        description="M of the last N days with heartbeat outages open a ticket (collector/rules/outages.py)")

    @model_validator(mode="after")
    def _check_merged(self) -> RulesConfig:
        for name, rule in self.effective().items():
            if not rule.findings and not rule.conditions:
                raise ValueError(f"classes.{name}: a rule needs findings or conditions (or both)")
            m, n = rule.breaches or self.breaches, rule.window or self.window
            if m > n:
                raise ValueError(f"classes.{name}: breaches (M={m}) cannot exceed window (N={n})")
            unknown = [c for c in rule.masked_by if c not in self.effective()]
            if unknown:
                raise ValueError(f"classes.{name}.masked_by: unknown class(es) {unknown}")
            # A code or kind outside the catalogue would match nothing, silently: refuse it.
            if codes := catalogue.unknown_codes(rule.findings):
                raise ValueError(f"classes.{name}.findings: unknown finding code(s) {codes} (linecheck/findings.csv)")
            for key in ("observed_by", "retest_checks"):
                if kinds := catalogue.unknown_kinds(getattr(rule, key) or []):
                    raise ValueError(f"classes.{name}.{key}: unknown check kind(s) {kinds} (linecheck/kinds.csv)")
        return self

    def effective(self) -> dict[str, Rule]:
        """Defaults with the configured changes applied (only the keys a user wrote override)."""
        merged = dict(DEFAULT_RULES)
        for name, patch in self.classes.items():
            base = DEFAULT_RULES.get(name)
            merged[name] = patch if base is None else base.model_copy(
                update={k: getattr(patch, k) for k in patch.model_fields_set})
        return merged


@dataclass(frozen=True)
class Observation:
    agent_id: str
    result_id: str
    started_at: datetime
    breach: bool
    where: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Plan:
    down: float | None
    up: float | None


AGENT_OFFLINE = "agent_offline"  # the class the sweep opens and a report from the agent resolves


@dataclass(frozen=True)
class OpenTicket:
    """An open ticket of a class, as the rules need it."""

    last_breach_at: datetime | None = None  # newer healthy observations count towards resolving it
    just_opened: bool = False  # opened by this evaluation: nothing resolves it in the same batch
    # The ticket carrying this class may be another class's naming the same fault (tickets.SAME_FAULT,
    # e.g. the promise ledger's upgrade_not_delivered for speed_below_plan): the rule does not own it,
    # so it neither resolves it nor opens a second one; once linked, its breaches only refresh the link.
    owned: bool = True
    linked: bool = False


@dataclass(frozen=True)
class PendingRetest:
    """A re-test command sent (or about to be) and not answered yet."""

    command_id: str
    fault_class: str | None


@dataclass
class LineEvidence:
    """What the rules know about one line when a batch of its results arrives (collector/rules/engine.py loads
    it from the database; tests build it by hand)."""

    line_id: str
    plan: Plan
    fresh: list[ResultEnvelope]  # the batch's results of this line
    open: dict[str, OpenTicket] = field(default_factory=dict)  # class -> its open ticket
    refuted: dict[str, datetime] = field(default_factory=dict)  # class -> when a healthy re-test last ran
    outstanding: list[PendingRetest] = field(default_factory=list)
    recent: dict[str, list[ResultEnvelope]] = field(default_factory=dict)  # class -> newest results, newest first


@dataclass(frozen=True)
class Resolve:
    line_id: str
    fault_class: str
    reason: str
    evidence: tuple[tuple[str, str], ...]  # (agent_id, result_id), oldest first
    said: Phrase | None = None  # the reason as a phrase (linecheck/i18n [tickets]): the console translates it


def _resolve(line_id: str, fault_class: str, evidence: tuple[tuple[str, str], ...], key: str,
             **args: Any) -> Resolve:
    said = phrase("tickets", key, **args)
    return Resolve(line_id, fault_class, english("tickets", said), evidence, said)


@dataclass(frozen=True)
class Open:
    line_id: str
    fault_class: str
    summary: str
    severity: str
    location: str | None
    evidence: tuple[tuple[str, str], ...]  # the breaching results, oldest first
    agent_id: str
    detail: dict[str, Any]
    retest: tuple[str, str] | None = None  # the re-test that confirmed it


@dataclass(frozen=True)
class AskRetest:
    line_id: str
    fault_class: str
    agent_id: str
    checks: list[str] | None  # None: every check
    reason: str


@dataclass(frozen=True)
class Answer:
    """A re-test result answered a command: `confirmed` (it breached too) or `refuted`."""

    command_id: str
    answer: Literal["confirmed", "refuted"]
    result_id: str
    started_at: datetime
    line_id: str
    fault_class: str


@dataclass(frozen=True)
class Update:
    """An open ticket of the class (or the one it is linked to) takes the class's current statement."""

    line_id: str
    fault_class: str
    summary: str
    detail: dict[str, Any]
    evidence: tuple[tuple[str, str], ...]  # the fresh breaching results


Outcome = Resolve | Open | AskRetest | Answer | Update


def _open_ticket(row: Any, fault_class: str) -> OpenTicket:
    detail = json.loads(row.detail) if row.detail else {}
    if row.fault_class != fault_class:  # another class's ticket carries this fault
        linked = any(x.get("fault_class") == fault_class for x in detail.get("linked", []))
        return OpenTicket(owned=False, linked=linked)
    last = detail.get("last_breach_at")
    return OpenTicket(last_breach_at=datetime.fromisoformat(last) if last else None)


@dataclass
class _Batch:
    """What one ingest batch's rule evaluation needs, loaded set-wise for all its lines."""

    plans: dict[str, Plan] = field(default_factory=dict)
    open: dict[tuple[str, str], Any] = field(default_factory=dict)  # (line, class) -> open ticket row
    refuted: dict[tuple[str, str], datetime] = field(default_factory=dict)  # last healthy re-test taken at
    outstanding: dict[str, list[Any]] = field(default_factory=dict)  # line -> pending/sent commands
    by_kind: dict[tuple[str, str], dict[tuple[str, str], datetime]] = field(default_factory=dict)
    by_code: dict[tuple[str, str], dict[tuple[str, str], datetime]] = field(default_factory=dict)
    by_line: dict[str, dict[tuple[str, str], datetime]] = field(default_factory=dict)


def _ranked(conn: Connection, table: Any, part: Any, values: list[str] | None, lines: list[str],
            depth: int) -> Any:
    """Rows of `table` for `lines`, the newest `depth` per (line, part) — or per line when part is None."""
    by = [table.c.line_id] if part is None else [table.c.line_id, part]
    rn = func.row_number().over(partition_by=by, order_by=table.c.started_at.desc()).label("rn")
    cols = [table.c.agent_id, table.c.result_id, table.c.line_id, table.c.started_at, rn]
    if part is not None:
        cols.append(part.label("part"))
    stmt = select(*cols).where(table.c.line_id.in_(lines))
    if part is not None:
        stmt = stmt.where(part.in_(values))
    inner = stmt.subquery()
    return conn.execute(select(inner).where(inner.c.rn <= depth))


def _fmt(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


class RuleEngine:
    """Evaluates rules for the lines of each ingest batch (`on_ingest`) and sweeps for silent agents."""

    def __init__(self, cfg: RulesConfig):
        self.cfg = cfg
        self.rules = {k: r for k, r in cfg.effective().items() if r.enabled}
        self._parsed: OrderedDict[tuple[str, str], ResultEnvelope] = OrderedDict()  # parse each payload once
        # Area incidents (collector/incidents/correlate.py) may hold a ticket back while they correlate it:
        # hold(conn, line_id, fault_class, ticket fields, now) -> True when held.
        self.hold: Callable[[Connection, str, str, dict[str, Any], datetime], bool] | None = None

    def m(self, rule: Rule) -> int:
        return rule.breaches or self.cfg.breaches

    def n(self, rule: Rule) -> int:
        return rule.window or self.cfg.window

    def k(self, rule: Rule) -> int:
        return rule.heal_after or self.cfg.heal_after

    # --- one result, one class --------------------------------------------------------------------
    def _breach(self, rule: Rule, e: ResultEnvelope, plan: Plan) -> tuple[str | None, str] | None:
        """(where, what) when this result breaches the rule, else None."""
        for f in e.findings:
            if f.code in rule.findings and _SEVERITY_RANK[f.severity] >= _SEVERITY_RANK[rule.min_severity]:
                return f.where or rule.where, f.message
        for c in self._observing_checks(rule, e):
            for cond in rule.conditions:
                breach, what = self._judge(cond, c.metrics, plan)
                if breach:
                    return rule.where, what + (f" ({c.kind} {c.target})" if c.target else f" ({c.kind})")
        return None

    @staticmethod
    def _judge(cond: Condition, metrics: dict[str, Any], plan: Plan) -> tuple[bool | None, str]:
        """(breach, what) of one condition on one check's metrics; breach is None when the check cannot
        tell: the metric was not measured, the plan is unknown, or (against the plan) the test's
        cross-traffic was too high to trust — the agent's own judgement, linecheck/speed.py."""
        if cond.below_plan_pct is not None:
            assert cond.plan is not None  # the model validator pairs them
            j = speed.judge_speed(metrics, cond.plan, plan.down if cond.plan == "down" else plan.up,
                                  cond.below_plan_pct, cond.metrics)
            if j.slow is None or j.measured_mbps is None or j.limit_mbps is None:
                return None, ""
            return j.slow, (f"{j.metric} {_fmt(j.measured_mbps)} < {_fmt(j.limit_mbps)} "
                            f"({_fmt(cond.below_plan_pct)}% of the {cond.plan} plan)")
        value, name = RuleEngine._value(cond, metrics)
        limit = cond.above if cond.above is not None else cond.below
        if value is None or limit is None:
            return None, ""
        breach = value >= limit if cond.above is not None else value < limit
        return breach, f"{name} {_fmt(value)} {'≥' if cond.above is not None else '<'} {_fmt(limit)}"

    @staticmethod
    def _value(cond: Condition, metrics: dict[str, Any]) -> tuple[float | None, str]:
        for name in cond.metrics:
            if metrics.get(name) is not None:
                return float(metrics[name]), name
        return None, cond.metrics[0]

    @staticmethod
    def _untrusted(rule: Rule, c: Any, plan: Plan) -> bool:
        """A speed test the agent itself did not trust in a direction the class judges (cross-traffic too
        high, interrupted by the line, stopped before it settled), or whose figure the line cannot have
        carried (implausibly above the plan), says nothing about a class judged against the plan: neither
        a breach nor healthy evidence (linecheck/speed.py)."""
        return any(speed.untrusted_reason(c.metrics, cond.plan, plan.down if cond.plan == "down" else plan.up)
                   is not None
                   for cond in rule.conditions if cond.below_plan_pct is not None and cond.plan is not None)

    @staticmethod
    def _observing_checks(rule: Rule, e: ResultEnvelope) -> list[Any]:
        # The agent's own pseudo-check (spool counters, always ok) observes nothing about the line:
        # counting it would make a rule without `observed_by` see every result as healthy evidence.
        return [c for c in e.checks if (c.kind in rule.observed_by if rule.observed_by else c.kind != AGENT_CHECK)
                and c.status not in _NOT_RUN]

    def observe(self, name: str, e: ResultEnvelope, plan: Plan) -> Observation | None:
        """Breach, healthy, or None when this result says nothing about the class."""
        rule = self.rules[name]
        for other in rule.masked_by:
            if other in self.rules and self._breach(self.rules[other], e, plan):
                return None
        hit = self._breach(rule, e, plan)
        if hit:
            return Observation(e.agent_id, e.result_id, e.started_at, True, hit[0], hit[1])
        checks = [c for c in self._observing_checks(rule, e) if not self._untrusted(rule, c, plan)]
        if not checks:
            return None
        if not rule.findings and not any(self._judge(cond, c.metrics, plan)[0] is not None
                                         for c in checks for cond in rule.conditions):
            return None  # e.g. the throughput test failed, or the plan is unknown: unavailable is not slow
        return Observation(e.agent_id, e.result_id, e.started_at, False)

    # --- evidence in, outcomes out: pure, table-tested in tests/test_rules_pure.py ----------------
    def due(self, ev: LineEvidence) -> list[str]:
        """The classes whose state the line's fresh results can change: an open ticket may resolve;
        without one, only a new breach can open a ticket or ask for a re-test (healthy results only push
        breaches out of the window). Skipping the rest spares a healthy fleet the history queries. A
        window that was not acted on (a failed hook, an expired re-test) is acted on at the line's next
        breach."""
        # A result without findings can only breach a class through its metric conditions.
        return [name for name, rule in self.rules.items()
                if name in ev.open
                or any((e.findings or rule.conditions) and self._breach(rule, e, ev.plan) for e in ev.fresh)]

    def evaluate(self, ev: LineEvidence) -> list[Outcome]:
        """What the rules conclude for one line from its evidence, in the order to apply it. Pure: no
        database, no clock; `ev` is not changed."""
        open_ = dict(ev.open)
        refuted = dict(ev.refuted)
        outstanding = list(ev.outstanding)
        out: list[Outcome] = []
        due = self.due(ev)
        if ev.fresh and AGENT_OFFLINE in open_:
            latest = max(ev.fresh, key=lambda e: e.started_at)
            out.append(_resolve(ev.line_id, AGENT_OFFLINE, ((latest.agent_id, latest.result_id),), "agent_back",
                                agent=latest.agent_id))
            del open_[AGENT_OFFLINE]
        out += self._answer_retests(ev, open_, refuted, outstanding)
        for name in due:
            out += self._evaluate_class(ev, name, open_, refuted, outstanding)
        return out

    def _observations(self, ev: LineEvidence, name: str, limit: int) -> list[Observation]:
        found = [self.observe(name, e, ev.plan) for e in ev.recent.get(name, [])[:limit]]
        return [o for o in found if o is not None]

    def _evaluate_class(self, ev: LineEvidence, name: str, open_: dict[str, OpenTicket],
                        refuted: dict[str, datetime], outstanding: list[PendingRetest]) -> list[Outcome]:
        rule = self.rules[name]
        m, n, k = self.m(rule), self.n(rule), self.k(rule)
        obs = self._observations(ev, name, limit=2 * max(n, k) + 5)
        ticket = open_.get(name)
        if ticket is not None and (ticket.owned or ticket.linked):
            if ticket.just_opened:
                return []
            out: list[Outcome] = []
            update = self._update(ev, name, obs[:n])
            if update is not None:
                out.append(update)
            if ticket.owned:  # a linked class leaves resolving to the ticket's owner
                out += self._maybe_resolve(ev.line_id, name, ticket, obs[:k], k)
            return out
        cutoff = refuted.get(name)
        window = [o for o in obs if cutoff is None or o.started_at > cutoff][:n]
        breaches = [o for o in window if o.breach]
        if not window or not window[0].breach or len(breaches) < m:
            return []
        if not rule.retest:
            return [self._open(ev.line_id, name, breaches, len(window), open_)]
        if any(c.fault_class == name for c in outstanding):
            return []  # a re-test is on its way; its result decides
        latest = window[0]
        return [AskRetest(ev.line_id, name, latest.agent_id, self._retest_checks(rule, latest, ev.recent.get(name, [])),
                          f"{rule.title or name}: {len(breaches)} of the last {len(window)} results breached")]

    def _retest_checks(self, rule: Rule, latest: Observation, recent: list[ResultEnvelope]) -> list[str] | None:
        """What to re-run: the configured list, else the observing kinds the breaching result carried
        (an agent refuses a command naming a check it does not have), else everything."""
        if rule.retest_checks:
            return rule.retest_checks
        e = next((r for r in recent if (r.agent_id, r.result_id) == (latest.agent_id, latest.result_id)), None)
        kinds = [c.kind for c in e.checks if c.kind in rule.observed_by] if e else []
        return list(dict.fromkeys(kinds)) or None

    @staticmethod
    def _maybe_resolve(line_id: str, name: str, ticket: OpenTicket, newest: list[Observation],
                       k: int) -> list[Outcome]:
        last = ticket.last_breach_at
        healthy = [o for o in newest if not o.breach and (last is None or o.started_at > last)]
        if len(newest) < k or len(healthy) < k:
            return []
        return [_resolve(line_id, name, tuple((o.agent_id, o.result_id) for o in reversed(healthy)), "rule_healed",
                         count=k)]

    def _statement(self, line_id: str, name: str, breaches: list[Observation], window: int,
                   retest: Observation | None = None) -> tuple[str, dict[str, Any]]:
        """The ticket's summary and detail for these breaches among the last `window` observations."""
        rule = self.rules[name]
        latest = retest or breaches[0]
        summary = (f"{rule.title or name} on line {line_id}: {len(breaches)} of the last {window} results "
                   f"breached{' and the re-test confirmed' if retest else ''} — {latest.detail}")
        detail = {"rule": name, "breaches": self.m(rule), "window": self.n(rule), "heal_after": self.k(rule),
                  "observed": [len(breaches), window],
                  "last_breach_at": max(o.started_at for o in [*breaches, *([retest] if retest else [])])
                  .isoformat(), "retest_result_id": retest.result_id if retest else None,
                  # what the console says, in the reader's language (the English summary adds the agent's figure)
                  "said": [phrase("tickets", "rule_confirmed" if retest else "rule_breached", breaches=len(breaches),
                                  window=window).as_json()]}
        return summary[:1000], detail

    def _update(self, ev: LineEvidence, name: str, window: list[Observation]) -> Update | None:
        """While a ticket is open its statement follows the evidence ("4 of the last 5", the newest figure)."""
        fresh = {(e.agent_id, e.result_id) for e in ev.fresh}
        breaches = [o for o in window if o.breach]
        new = [o for o in breaches if (o.agent_id, o.result_id) in fresh]
        if not new:  # healthy results count towards resolving; the statement follows new breaches
            return None
        summary, detail = self._statement(ev.line_id, name, breaches, len(window))
        return Update(ev.line_id, name, summary, detail, tuple((o.agent_id, o.result_id) for o in reversed(new)))

    def _open(self, line_id: str, name: str, breaches: list[Observation], window: int,
              open_: dict[str, OpenTicket], retest: Observation | None = None) -> Open:
        rule = self.rules[name]
        latest = retest or breaches[0]
        summary, detail = self._statement(line_id, name, breaches, window, retest)
        open_[name] = OpenTicket(just_opened=True)
        return Open(line_id, name, summary, rule.severity, latest.where or rule.where,
                    tuple((o.agent_id, o.result_id) for o in reversed(breaches)), latest.agent_id, detail,
                    (retest.agent_id, retest.result_id) if retest else None)

    def _answer_retests(self, ev: LineEvidence, open_: dict[str, OpenTicket], refuted: dict[str, datetime],
                        outstanding: list[PendingRetest]) -> list[Outcome]:
        answers = sorted((e for e in ev.fresh if e.trigger == Trigger.RETEST), key=lambda x: x.started_at)
        out: list[Outcome] = []
        if not answers:
            return out
        for command in list(outstanding):
            if command.fault_class not in self.rules:
                continue
            for e in answers:
                asked = e.trigger_info.get("command_id")
                if asked is not None and asked != command.command_id:
                    continue
                o = self.observe(command.fault_class, e, ev.plan)
                if o is None:
                    continue  # this result did not test what was asked
                out.append(Answer(command.command_id, "confirmed" if o.breach else "refuted", e.result_id,
                                  e.started_at, ev.line_id, command.fault_class))
                outstanding.remove(command)
                if o.breach:
                    rule = self.rules[command.fault_class]
                    obs = self._observations(ev, command.fault_class, 2 * self.n(rule) + 5)
                    window = [x for x in obs if x.result_id != e.result_id][: self.n(rule)]
                    out.append(self._open(ev.line_id, command.fault_class, [x for x in window if x.breach] or [o],
                                          len(window), open_, retest=o))
                else:
                    refuted[command.fault_class] = e.started_at
                break
        return out

    # --- the ingest hook: load evidence, evaluate, apply -------------------------------------------
    def on_ingest(self, conn: Connection, fresh: Sequence[ResultEnvelope], now: datetime) -> None:
        if not self.cfg.enabled:
            return
        by_line: dict[str, list[ResultEnvelope]] = {}
        for e in fresh:
            self._remember(e)
            by_line.setdefault(e.line_id, []).append(e)
        self.lock_lines(conn, sorted(by_line))
        for ev in self.load_evidence(conn, by_line):
            self.apply(conn, self.evaluate(ev), now)
        outages.on_ingest(conn, fresh, now, self.cfg.intermittent_outage)  # faults that come and go

    def load_evidence(self, conn: Connection, by_line: dict[str, list[ResultEnvelope]]) -> list[LineEvidence]:
        """Each line's evidence, in a handful of set-wise queries for the whole batch."""
        line_ids = sorted(by_line)
        b = self._load_state(conn, line_ids)
        evidence = {line_id: LineEvidence(
            line_id=line_id, plan=b.plans.get(line_id, Plan(None, None)), fresh=by_line[line_id],
            outstanding=[PendingRetest(r.command_id, r.fault_class) for r in b.outstanding.get(line_id, [])])
            for line_id in line_ids}
        for (line_id, cls), row in b.open.items():
            evidence[line_id].open[cls] = _open_ticket(row, cls)
        for (line_id, cls), at in b.refuted.items():
            evidence[line_id].refuted[cls] = at
        wanted = {ev.line_id: [*self.due(ev), *(c.fault_class for c in ev.outstanding
                                                if self._retest_answers(ev.fresh) and c.fault_class in self.rules)]
                  for ev in evidence.values()}
        self._load_history(conn, b, [line_id for line_id, classes in wanted.items() if classes])
        for ev in evidence.values():
            for name in dict.fromkeys(wanted[ev.line_id]):
                rule = self.rules[name]
                ev.recent[name] = self._recent(b, ev.line_id, rule, 2 * max(self.n(rule), self.k(rule)) + 5)
        return list(evidence.values())

    def apply(self, conn: Connection, outcomes: Sequence[Outcome], now: datetime) -> None:
        """Write what `evaluate` concluded: tickets, re-test commands and their answers."""
        for o in outcomes:
            if isinstance(o, Resolve):
                tickets.resolve_open(conn, o.line_id, o.fault_class, "rule", o.reason, list(o.evidence), now, o.said)
                log.info("line %s: %s resolved: %s", o.line_id, o.fault_class, o.reason)
            elif isinstance(o, Answer):
                cmds.answer(conn, o.command_id, o.answer, o.result_id, o.started_at)
                if o.answer == "refuted":
                    log.info("line %s: re-test %s refuted %s; no ticket", o.line_id, o.command_id, o.fault_class)
            elif isinstance(o, Update):
                carrier = tickets.carrying_ticket(conn, o.line_id, o.fault_class)
                if carrier is not None:
                    tickets.refresh(conn, carrier, o.fault_class, o.summary, o.detail, o.evidence, "rule", now)
            elif isinstance(o, AskRetest):
                command_id = cmds.queue(conn, agent_id=o.agent_id, action="retest", ttl_s=self.cfg.retest_timeout_s,
                                        checks=o.checks, line_id=o.line_id, fault_class=o.fault_class,
                                        reason=o.reason, now=now)
                if command_id:
                    log.info("line %s: %s; re-test %s requested from %s", o.line_id, o.reason, command_id, o.agent_id)
            else:
                if self.hold is not None and self.hold(conn, o.line_id, o.fault_class, {
                        "summary": o.summary, "severity": o.severity, "location": o.location, "agent_id": o.agent_id,
                        "evidence": [*o.evidence, *([o.retest] if o.retest else [])], "detail": o.detail}, now):
                    continue
                opened = tickets.open_ticket(conn, line_id=o.line_id, fault_class=o.fault_class, summary=o.summary,
                                             severity=o.severity, location=o.location, evidence=list(o.evidence),
                                             agent_id=o.agent_id, detail=o.detail, now=now)
                if o.retest:
                    tickets.add_evidence(conn, opened.ticket_id, [o.retest], "retest", now)
                if opened.created:
                    log.warning("ticket #%d opened: %s", opened.ticket_id, o.summary)

    @staticmethod
    def _retest_answers(mine: list[ResultEnvelope]) -> bool:
        return any(e.trigger == Trigger.RETEST for e in mine)

    @staticmethod
    def lock_lines(conn: Connection, line_ids: Sequence[str]) -> None:
        """Serialise rule work per line across collectors (sorted: a stable order, no deadlock)."""
        if conn.dialect.name != "postgresql" or not line_ids:
            return  # SQLite: the ingest transaction already holds the single write lock
        # One round trip for all lines, locked in the array's order (see delivery.lock_agents).
        keys = [zlib.crc32(line_id.encode()) - 2**31 for line_id in sorted(set(line_ids))]
        conn.execute(text("SELECT pg_advisory_xact_lock(:space, k) FROM unnest(CAST(:keys AS integer[])) AS u(k)"),
                     {"space": _LOCK_SPACE, "keys": keys})

    def _remember(self, e: ResultEnvelope) -> None:
        self._parsed[(e.agent_id, e.result_id)] = e
        while len(self._parsed) > 50_000:
            self._parsed.popitem(last=False)

    def depth(self) -> int:
        """How many recent observations a class may need (window or heal count, plus slack for masking)."""
        return max(2 * max(self.n(r), self.k(r)) + 5 for r in self.rules.values())

    def _load_state(self, conn: Connection, line_ids: list[str]) -> _Batch:
        """Plans, open tickets and re-tests of the batch's lines."""
        b = _Batch()
        for i in range(0, len(line_ids), 200):
            chunk = line_ids[i:i + 200]
            for r in conn.execute(select(t.lines.c.line_id, t.lines.c.plan_down_mbps, t.lines.c.plan_up_mbps)
                                  .where(t.lines.c.line_id.in_(chunk))):
                b.plans[r.line_id] = Plan(r.plan_down_mbps, r.plan_up_mbps)
            for r in conn.execute(select(t.tickets).where(t.tickets.c.line_id.in_(chunk),
                                                          t.tickets.c.state.in_(tickets.OPEN_STATES))):
                b.open[(r.line_id, r.fault_class)] = r
                for same in tickets.SAME_FAULT.get(r.fault_class, ()):
                    if (r.line_id, same) not in b.open or b.open[(r.line_id, same)].fault_class != same:
                        b.open[(r.line_id, same)] = r
            for r in conn.execute(select(t.commands.c.line_id, t.commands.c.fault_class,
                                         func.max(t.commands.c.answered_at).label("at"))
                                  .where(t.commands.c.line_id.in_(chunk), t.commands.c.state == "refuted")
                                  .group_by(t.commands.c.line_id, t.commands.c.fault_class)):
                b.refuted[(r.line_id, r.fault_class)] = r.at
            for r in conn.execute(select(t.commands).where(t.commands.c.line_id.in_(chunk),
                                                           t.commands.c.state.in_(("pending", "sent")))):
                b.outstanding.setdefault(r.line_id, []).append(r)
        return b

    def _load_history(self, conn: Connection, b: _Batch, line_ids: list[str]) -> None:
        """The newest results of these lines per check kind, per finding code and per line."""
        kinds = sorted({k for r in self.rules.values() for k in r.observed_by})
        codes = sorted({c for r in self.rules.values() for c in r.findings})
        every = any(not r.observed_by for r in self.rules.values())
        depth = self.depth()
        for i in range(0, len(line_ids), 200):
            chunk = line_ids[i:i + 200]
            # The newest results per (line, check kind), per (line, finding code) and per line, in one
            # query each (window functions: SQLite >= 3.25 and PostgreSQL).
            if kinds:
                for r in _ranked(conn, t.checks, t.checks.c.kind, kinds, chunk, depth * 4):
                    b.by_kind.setdefault((r.line_id, r.part), {})[(r.agent_id, r.result_id)] = r.started_at
            if codes:
                for r in _ranked(conn, t.findings, t.findings.c.code, codes, chunk, depth):
                    b.by_code.setdefault((r.line_id, r.part), {})[(r.agent_id, r.result_id)] = r.started_at
            if every:
                for r in _ranked(conn, t.results, None, None, chunk, depth):
                    b.by_line.setdefault(r.line_id, {})[(r.agent_id, r.result_id)] = r.started_at
        started = {k: at for d in (*b.by_kind.values(), *b.by_code.values(), *b.by_line.values())
                   for k, at in d.items()}
        missing = sorted(k for k in started if k not in self._parsed)
        r = t.results.c
        for i in range(0, len(missing), 500):
            part = missing[i:i + 500]
            # By the primary key's leading column and the start's range: a result id alone matches no index
            # prefix and, on PostgreSQL, read every day partition's key (at 10M results this dominated).
            times = [started[k] for k in part]
            stmt = select(t.results).where(r.agent_id.in_(sorted({a for a, _ in part})),
                                           r.result_id.in_([rid for _, rid in part]),
                                           r.started_at >= min(times), r.started_at <= max(times))
            keys = set(part)
            for row in conn.execute(stmt).mappings():
                if (row["agent_id"], row["result_id"]) in keys:
                    self._remember(documents.envelope(row))

    def _recent(self, b: _Batch, line_id: str, rule: Rule, limit: int) -> list[ResultEnvelope]:
        """The line's newest results carrying one of the rule's check kinds or findings, newest first."""
        found: dict[tuple[str, str], datetime] = {}
        if rule.observed_by:
            for kind in rule.observed_by:
                found |= b.by_kind.get((line_id, kind), {})
            for code in rule.findings:  # a finding counts even when the check that would observe it is absent
                found |= b.by_code.get((line_id, code), {})
        else:
            found = b.by_line.get(line_id, {})
        keys = sorted(found, key=lambda k: found[k], reverse=True)[:limit]
        return [self._parsed[k] for k in keys if k in self._parsed]

    # --- the periodic sweep -----------------------------------------------------------------------
    def sweep(self, conn: Connection, now: datetime | None = None) -> dict[str, int]:
        """Expire unanswered re-tests; open agent_offline for silent agents (call from every collector)."""
        now = now or datetime.now(UTC)
        expired = cmds.expire(conn, now)
        opened = 0
        off = self.cfg.agent_offline
        if not (self.cfg.enabled and off.enabled):
            return {"expired": expired, "agent_offline": 0}
        rows = conn.execute(select(t.agents.c.agent_id, t.agents.c.line_id, t.agents.c.last_seen,
                                   t.agents.c.enrolled_at, t.agents.c.report_interval_s)).all()
        for r in rows:
            seen = r.last_seen or r.enrolled_at
            if seen is None:
                continue
            interval = r.report_interval_s or off.default_interval_s
            allowed = max(interval * off.grace_factor, off.min_silence_s)
            silent = (now - seen).total_seconds()
            if silent <= allowed or tickets.open_ticket_for(conn, r.line_id, AGENT_OFFLINE) is not None:
                continue
            self.lock_lines(conn, [r.line_id])
            never = r.last_seen is None
            summary = (f"Agent {r.agent_id} on line {r.line_id} " +
                       ("was enrolled but has never reported" if never else "has not reported") +
                       f" for {timedelta(seconds=int(silent))} (expected every {timedelta(seconds=interval)})")
            last = conn.execute(select(t.results.c.result_id).where(t.results.c.agent_id == r.agent_id)
                                .order_by(t.results.c.started_at.desc()).limit(1)).scalar()
            if self.hold is not None and self.hold(conn, r.line_id, AGENT_OFFLINE, {
                    "summary": summary, "severity": off.severity, "location": "agent", "agent_id": r.agent_id,
                    "evidence": [(r.agent_id, last)] if last else []}, now):
                continue
            got = tickets.open_ticket(conn, line_id=r.line_id, fault_class=AGENT_OFFLINE, summary=summary,
                                      severity=off.severity, location="agent", agent_id=r.agent_id,
                                      evidence=[(r.agent_id, last)] if last else [], now=now,
                                      detail={"rule": AGENT_OFFLINE, "silent_s": int(silent),
                                              "allowed_s": int(allowed),
                                              "said": [phrase("tickets", "agent_never" if never else "agent_silent",
                                                              agent=r.agent_id, silent_h=silent / 3600,
                                                              interval_h=interval / 3600).as_json()]})
            opened += got.created
        return {"expired": expired, "agent_offline": opened}
