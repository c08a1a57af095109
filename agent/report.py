"""The human report of a line check (the self-check a customer or technician reads), in English or Chinese.

Verdict first, then where the fault is, then each finding in plain language with what to do,
then the checks for the technician. One view model feeds both the terminal (rich) and the
standalone HTML file a technician hands over (`--save-report`): no external assets, everything
escaped, deterministic output (snapshot-tested in tests/test_report.py).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table
from rich.text import Text

from agent.i18n import Texts
from linecheck.wire import CheckResult, ResultEnvelope, Status, Verdict

_STYLE = {Status.OK: "green", Status.DEGRADED: "yellow", Status.FAILED: "red", Status.ERROR: "magenta",
          Status.SKIPPED: "dim"}
_VERDICT_STYLE = {Verdict.HEALTHY: "bold green", Verdict.PROBLEMS: "bold red", Verdict.UNKNOWN: "bold yellow"}
_VERDICT_MARK = {Verdict.HEALTHY: "✔", Verdict.PROBLEMS: "✘", Verdict.UNKNOWN: "?"}


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


# Unit suffixes of metric names (linecheck/metrics.csv) as a reader writes them.
_UNITS = (("_mbps", " Mbit/s"), ("_kbps", " kbit/s"), ("_ms", " ms"), ("_pct", "%"), ("_dbm", " dBm"),
          ("_bytes", " B"), ("_count", ""), ("_s", " s"))
MAX_METRICS_SHOWN = 6


def _metric(name: str, value: float | int) -> str:
    if name.endswith("_flag"):
        return f"{name[:-5]} {'yes' if value else 'no'}"
    shown = f"{value:.3g}" if isinstance(value, float) and abs(value) < 1000 else f"{value:g}"
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return f"{name[: -len(suffix)]} {shown}{unit}"
    return f"{name} {shown}"


def _details(c: CheckResult) -> str:
    """The reason, then the measured figures (unmeasured ones are left out: the reason says why)."""
    figures = [_metric(k, v) for k, v in c.metrics.items() if v is not None]
    if len(figures) > MAX_METRICS_SHOWN:
        figures = [*figures[:MAX_METRICS_SHOWN], "…"]
    text = ", ".join(figures)
    if c.reason:
        return c.reason + (f" ({text})" if text else "")
    return text


def build(envelope: ResultEnvelope, lang: str = "en") -> ReportView:
    t = Texts(lang)
    if envelope.verdict is Verdict.HEALTHY:
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
    checks = [CheckRow(t.check(c.kind), c.target or "", c.status, t.status(c.status), _details(c))
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
    return ReportView(lang, t.ui("title"), envelope.verdict, headline, sub, t.ui("list_sep").join(places) or None,
                      findings, checks, facts, labels, header)


def render(envelope: ResultEnvelope, console: Console, lang: str = "en") -> None:
    """Print the report to a rich console (the terminal)."""
    v = build(envelope, lang)
    style = _VERDICT_STYLE[v.verdict]
    console.print(f"[bold]{v.title}[/] — {v.header}", highlight=False)
    console.print(Text(f"{_VERDICT_MARK[v.verdict]} {v.headline}", style=style)
                  + Text(v.labels["sentence_gap"] + v.sub))
    colon = v.labels["colon"]
    if v.where:
        console.print(Text(v.labels["where"] + colon) + Text(v.where, style="bold"))
    if v.findings:
        # A grid gives the sentences a hanging indent, and lets unspaced Chinese text fold in its column.
        grid = Table.grid(padding=(0, 1))
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for i, f in enumerate(v.findings, 1):
            colour = "red" if f.severity == "critical" else "yellow"
            if i > 1:
                grid.add_row("", "", "")
            grid.add_row(f"{i}.", Text(f"● {f.severity_text}", style=colour), Text(f.sentence))
            grid.add_row("", Text(v.labels["what_to_do"] + colon.rstrip(), style="bold"), Text(f.advice))
        console.print()
        console.print(grid)
    table = Table(title=v.labels["checks"], title_justify="left", show_header=True, header_style="bold",
                  box=None, padding=(0, 1))
    for key in ("col_check", "col_target", "col_status", "col_details"):
        table.add_column(v.labels[key])
    for row in v.checks:
        table.add_row(row.title, row.target, f"[{_STYLE[row.status]}]{row.status_text}[/]", row.details)
    console.print()
    console.print(table)
    console.print()
    for label, value in v.facts:
        console.print(Text(f"{label}{colon}{value}", style="dim"))


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif;margin:2rem auto;
max-width:52rem;padding:0 1rem;color:#1d2430;line-height:1.5}
h1{font-size:1.4rem;margin-bottom:.2rem}.facts{color:#566;font-size:.9rem}
.verdict{border-radius:.5rem;padding:1rem 1.2rem;margin:1.2rem 0;font-size:1.15rem}
.verdict strong{display:block;font-size:1.35rem}
.healthy{background:#e6f6ea;border:1px solid #3a9d55}.problems{background:#fdeaea;border:1px solid #c73a3a}
.unknown{background:#fff6df;border:1px solid #c9972b}
ol.findings li{margin-bottom:.9rem}.sev{font-size:.8rem;padding:.05rem .4rem;border-radius:.3rem;color:#fff}
.critical{background:#c73a3a}.warning{background:#c9972b}.advice{margin:.2rem 0 0;color:#333}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid #dde;vertical-align:top}td:nth-child(-n+3),th{white-space:nowrap}
.st-ok{color:#2d7d46}.st-degraded{color:#a87300}.st-failed{color:#c73a3a}.st-error{color:#8a3aa8}
.st-skipped{color:#778}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;font-size:.85rem;color:#455}
dt{font-weight:600}dd{margin:0}footer{margin-top:2rem;font-size:.8rem;color:#667}
""".strip()


def render_html(envelope: ResultEnvelope, lang: str = "en") -> str:
    """A standalone HTML report (inline CSS, no scripts, no external files)."""
    v = build(envelope, lang)
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{"zh-CN" if lang == "zh" else "en"}">',
        '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(v.title)} — {e(v.header)}</title>",
        f"<style>{_CSS}</style></head>",
        "<body>",
        f"<h1>{e(v.title)}</h1>",
        f'<div class="facts">{e(v.header)}</div>',
        f'<div class="verdict {v.verdict.value}"><strong>{_VERDICT_MARK[v.verdict]} {e(v.headline)}</strong>'
        f"{e(v.sub)}</div>",
    ]
    if v.where:
        parts.append(f"<p><b>{e(v.labels['where'] + v.labels['colon'])}</b>{e(v.where)}</p>")
    if v.findings:
        parts.append(f"<h2>{e(v.labels['findings'])}</h2>")
        parts.append('<ol class="findings">')
        for f in v.findings:
            parts.append(f'<li><span class="sev {e(f.severity)}">{e(f.severity_text)}</span> {e(f.sentence)}'
                         f'<p class="advice"><b>{e(v.labels["what_to_do"] + v.labels["colon"])}</b>'
                         f"{e(f.advice)}</p></li>")
        parts.append("</ol>")
    parts.append(f"<h2>{e(v.labels['checks'])}</h2>")
    parts.append("<table><thead><tr>" + "".join(
        f"<th>{e(v.labels[k])}</th>" for k in ("col_check", "col_target", "col_status", "col_details"))
        + "</tr></thead><tbody>")
    for row in v.checks:
        parts.append(f"<tr><td>{e(row.title)}</td><td>{e(row.target)}</td>"
                     f'<td class="st-{row.status.value}">{e(row.status_text)}</td><td>{e(row.details)}</td></tr>')
    parts.append("</tbody></table>")
    parts.append("<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(val)}</dd>" for k, val in v.facts) + "</dl>")
    parts.append(f"<footer>{e(v.labels['footer'])}</footer>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
