"""The words of a ticket notification, the same in a mail, a chat message or a push: subject and body."""

from __future__ import annotations

from typing import Any


def subject(event: str, ticket: dict[str, Any]) -> str:
    verb = event.removeprefix("ticket.")
    return (f"[linecheck] ticket #{ticket['ticket_id']} {verb}: {ticket['fault_class']} "
            f"on line {ticket['line_id']}")


def body(ticket: dict[str, Any], evidence: bool = True) -> str:
    lines = [ticket["summary"], "",
             f"Ticket:    #{ticket['ticket_id']} ({ticket['state']}, {ticket['severity']})",
             f"Line:      {ticket['line_id']}  site {ticket.get('site_id') or '-'}  "
             f"tenant {ticket.get('tenant_id') or '-'}",
             f"Where:     {ticket.get('location') or '-'}",
             f"Opened:    {ticket['opened_at']}"]
    if ticket.get("resolved_at"):
        lines.append(f"Resolved:  {ticket['resolved_at']}")
    if evidence:
        lines += ["", "Evidence (agent / result / role):"]
        lines += [f"  {e['agent_id']} {e['result_id']} {e['role']}" for e in ticket.get("evidence", [])]
    return "\n".join(lines) + "\n"
