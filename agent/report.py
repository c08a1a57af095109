"""The human report of a line check (the self-check a customer or technician reads)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from agent.localise import where_summary
from linecheck.wire import ResultEnvelope, Status, Verdict

_STYLE = {Status.OK: "green", Status.DEGRADED: "yellow", Status.FAILED: "red", Status.ERROR: "magenta",
          Status.SKIPPED: "dim"}
_VERDICT = {Verdict.HEALTHY: ("[bold green]Line healthy[/]", "No problems found."),
            Verdict.PROBLEMS: ("[bold red]Problems found[/]", "See the findings below."),
            Verdict.UNKNOWN: ("[bold yellow]Could not tell[/]", "No check could measure the line.")}


def render(envelope: ResultEnvelope, console: Console) -> None:
    head, sub = _VERDICT[envelope.verdict]
    console.print(f"{head} — line {envelope.line_id}, agent {envelope.agent_id}, "
                  f"{envelope.started_at:%Y-%m-%d %H:%M:%S} UTC. {sub}")
    where = where_summary(envelope.findings)
    if where:
        console.print(f"  Where the fault is: [bold]{where}[/]")
    for f in envelope.findings:
        console.print(f"  [{'red' if f.severity == 'critical' else 'yellow'}]●[/] {f.message}")
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
    for col in ("check", "target", "status", "details"):
        table.add_column(col)
    for c in envelope.checks:
        shown = ", ".join(f"{k}={'—' if v is None else v}" for k, v in c.metrics.items())
        details = c.reason + (f" ({shown})" if shown else "") if c.reason else shown
        table.add_row(c.kind, c.target or "", f"[{_STYLE[c.status]}]{c.status.value}[/]", details)
    console.print(table)
