"""The human report of a line check (the self-check a customer or technician reads), in English or Chinese.

Verdict first, then where the fault is, then each finding in plain language with what to do,
then the checks for the technician. One view model feeds both the terminal (rich) and the
standalone HTML file a technician hands over (`--save-report`, a Jinja2 template with autoescape):
no external assets, everything escaped, deterministic output (snapshot-tested in tests/test_report.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined
from rich.console import Console
from rich.table import Table
from rich.text import Text

from agent.coverage import kinds_run, not_run
from agent.wrap import Wrapped
from linecheck.i18n import Texts
from linecheck.wire import CheckResult, ResultEnvelope, Status, Verdict

_STYLE = {Status.OK: "green", Status.DEGRADED: "yellow", Status.FAILED: "red", Status.ERROR: "magenta",
          Status.SKIPPED: "dim"}
# By the report's state: the verdict, except that "healthy" with checks that could not run is "incomplete".
_VERDICT_STYLE = {"healthy": "bold green", "problems": "bold red", "unknown": "bold yellow",
                  "incomplete": "bold yellow"}
_VERDICT_MARK = {"healthy": "✔", "problems": "✘", "unknown": "?", "incomplete": "?"}


@dataclass(frozen=True)
class FindingView:
    severity: str
    severity_text: str
    sentence: str
    advice: str
    where: str


@dataclass(frozen=True)
class CheckRow:
    title: str
    target: str
    status: Status
    status_text: str
    details: str


@dataclass
class ReportView:
    lang: str
    title: str
    verdict: Verdict
    headline: str
    sub: str
    where: str | None
    findings: list[FindingView] = field(default_factory=list)
    checks: list[CheckRow] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    header: str = ""  # line · time · why, under the title
    state: str = ""  # healthy | problems | unknown | incomplete (no problem found, but not every check ran)
    not_run: list[tuple[str, str]] = field(default_factory=list)  # (check title, why it could not run)
    not_run_title: str = ""  # "Could not run (2 of 7)"


MAX_METRICS_SHOWN = 6


def _details(t: Texts, c: CheckResult) -> str:
    """The reason, then the measured figures (unmeasured ones are left out: the reason says why), in the
    reader's language: the reason from its phrases, each figure with its label (linecheck/i18n [metrics])."""
    figures = [t.metric(k, v) for k, v in c.metrics.items() if v is not None]
    if len(figures) > MAX_METRICS_SHOWN:
        figures = [*figures[:MAX_METRICS_SHOWN], "…"]
    text = t.ui("figure_sep").join(figures)
    reason = t.reason(c)
    if reason:
        return reason + (t.ui("figures", figures=text) if text else "")
    return text


def build(envelope: ResultEnvelope, lang: str = "en") -> ReportView:
    t = Texts(lang)
    # A check that could not run never counts as passed (agent/coverage.py): with no problem found, the
    # verdict is "not fully checked", and in every case the report lists what did not run and why.
    missing = not_run(envelope.checks)
    total = len(kinds_run(envelope.checks))
    state = envelope.verdict.value
    if envelope.verdict is Verdict.HEALTHY and missing:
        state = "incomplete"
        headline = t.ui("verdict_incomplete", count=len(missing), total=total)
        sub = t.ui("verdict_incomplete_sub")
    elif envelope.verdict is Verdict.HEALTHY:
        headline, sub = t.ui("verdict_healthy"), t.ui("verdict_healthy_sub")
    elif envelope.verdict is Verdict.PROBLEMS:
        count = len(envelope.findings) or sum(c.status in (Status.FAILED, Status.DEGRADED) for c in envelope.checks)
        headline = t.ui("verdict_problems", count=count)
        sub = t.ui("verdict_problems_sub" if envelope.findings else "verdict_problems_nofinding_sub")
    else:
        headline, sub = t.ui("verdict_unknown"), t.ui("verdict_unknown_sub")
    findings = []
    places: list[str] = []
    for f in envelope.findings:
        sentence, advice = t.finding(f)
        place = t.where(f.where)
        room = f.detail.get("room")
        if isinstance(room, str) and f.where in ("wifi", "lan"):
            place = t.ui("in_room", where=place, room=room)
        if place not in places:
            places.append(place)
        findings.append(FindingView(f.severity, t.severity(f.severity), sentence, advice, place))
    checks = [CheckRow(t.check(c.kind), c.target or "", c.status, t.status(c.status), _details(t, c))
              for c in envelope.checks]
    clock = envelope.clock.synced
    facts = [
        (t.ui("line"), envelope.line_id),
        (t.ui("site"), envelope.site_id),
        (t.ui("agent"), envelope.agent_id),
        (t.ui("time"), f"{envelope.started_at:%Y-%m-%d %H:%M:%S} UTC"),
        (t.ui("trigger"), t.trigger(envelope.trigger, envelope.trigger_info)),
        (t.ui("clock"), t.ui("clock_unknown" if clock is None else "clock_synced" if clock else "clock_unsynced")),
        (t.ui("result_id"), envelope.result_id),
        (t.ui("version"), envelope.agent_version),
    ]
    labels = {k: t.ui(k) for k in ("where", "what_to_do", "findings", "checks", "col_check", "col_target",
                                   "col_status", "col_details", "footer", "colon", "sentence_gap")}
    header = " · ".join(value for _, value in (facts[0], facts[3], facts[4]))
    return ReportView(t.lang, t.ui("title"), envelope.verdict, headline, sub, t.ui("list_sep").join(places) or None,
                      findings, checks, facts, labels, header, state,
                      [(t.check(c.kind), t.reason(c) or t.status(c.status)) for c in missing],
                      t.ui("not_run", count=len(missing), total=total))


def render(envelope: ResultEnvelope, console: Console, lang: str = "en") -> None:
    """Print the report to a rich console (the terminal)."""
    v = build(envelope, lang)
    style = _VERDICT_STYLE[v.state]
    console.print(f"[bold]{v.title}[/] — {v.header}", highlight=False)
    console.print(Text(f"{_VERDICT_MARK[v.state]} {v.headline}", style=style)
                  + Text(v.labels["sentence_gap"] + v.sub))
    colon = v.labels["colon"]
    if v.where:
        console.print(Text(v.labels["where"] + colon) + Text(v.where, style="bold"))
    if v.not_run:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for title, why in v.not_run:
            grid.add_row(Text(f"• {title}{colon.rstrip()}", style="yellow"), Wrapped(why))
        console.print(Text(v.not_run_title + colon.rstrip(), style="bold"))
        console.print(grid)
    if v.findings:
        # A grid gives the sentences a hanging indent; agent/wrap.py breaks them between words and Chinese
        # characters, never inside a Latin word.
        grid = Table.grid(padding=(0, 1))
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for i, f in enumerate(v.findings, 1):
            colour = "red" if f.severity == "critical" else "yellow"
            if i > 1:
                grid.add_row("", "", "")
            grid.add_row(f"{i}.", Text(f"● {f.severity_text}", style=colour), Wrapped(f.sentence))
            grid.add_row("", Text(v.labels["what_to_do"] + colon.rstrip(), style="bold"), Wrapped(f.advice))
        console.print()
        console.print(grid)
    table = Table(title=v.labels["checks"], title_justify="left", show_header=True, header_style="bold",
                  box=None, padding=(0, 1))
    for key in ("col_check", "col_target", "col_status", "col_details"):
        # fold: unspaced Chinese text wraps inside its column instead of ending in an ellipsis (details: Wrapped)
        table.add_column(v.labels[key], overflow="fold" if key == "col_details" else "ellipsis")
    for row in v.checks:
        # Targets and details carry text from the line (a reason's arguments): never rich markup.
        table.add_row(Text(row.title), Text(row.target), Text(row.status_text, style=_STYLE[row.status]),
                      Wrapped(row.details))
    console.print()
    console.print(table)
    console.print()
    for label, value in v.facts:
        console.print(Text(f"{label}{colon}{value}", style="dim"))


_COLUMNS = ("col_check", "col_target", "col_status", "col_details")


@cache
def _templates() -> Environment:
    # autoescape on for every template: the report carries texts from the line (targets, reasons, a newer
    # agent's messages) that must never become markup; StrictUndefined: a misspelt field fails, not blanks.
    return Environment(loader=PackageLoader("agent", "templates"), autoescape=True, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render_html(envelope: ResultEnvelope, lang: str = "en") -> str:
    """A standalone HTML report (agent/templates/report.html.j2: inline CSS, no scripts, no external files)."""
    v = build(envelope, lang)
    return _templates().get_template("report.html.j2").render(v=v, mark=_VERDICT_MARK[v.state], columns=_COLUMNS)
