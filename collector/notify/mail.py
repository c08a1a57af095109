"""SMTP mail for ticket events (plain text, one message per event and target)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from collector.notify.config import Mail
from collector.notify.webhook import Outcome


def compose(target: Mail, event: str, ticket: dict[str, Any], delivery_id: int) -> EmailMessage:
    msg = EmailMessage()
    verb = event.removeprefix("ticket.")
    msg["Subject"] = (f"[linecheck] ticket #{ticket['ticket_id']} {verb}: {ticket['fault_class']} "
                      f"on line {ticket['line_id']}")
    msg["From"] = target.sender
    msg["To"] = ", ".join(target.to)
    msg["X-Linecheck-Delivery"] = str(delivery_id)
    lines = [ticket["summary"], "",
             f"Ticket:    #{ticket['ticket_id']} ({ticket['state']}, {ticket['severity']})",
             f"Line:      {ticket['line_id']}  site {ticket.get('site_id') or '-'}  "
             f"tenant {ticket.get('tenant_id') or '-'}",
             f"Where:     {ticket.get('location') or '-'}",
             f"Opened:    {ticket['opened_at']}"]
    if ticket.get("resolved_at"):
        lines.append(f"Resolved:  {ticket['resolved_at']}")
    lines += ["", "Evidence (agent / result / role):"]
    lines += [f"  {e['agent_id']} {e['result_id']} {e['role']}" for e in ticket.get("evidence", [])]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def send(target: Mail, msg: EmailMessage) -> Outcome:
    try:
        if target.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(target.host, target.port, timeout=target.timeout_s,
                                                 context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(target.host, target.port, timeout=target.timeout_s)
        with smtp:
            if target.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if target.username:
                password = target.password_file.read_text().strip() if target.password_file else ""
                smtp.login(target.username, password)
            smtp.send_message(msg)
    except smtplib.SMTPResponseException as exc:
        # 4xx: try again later; 5xx: the server refuses this for good.
        return Outcome(False, exc.smtp_code < 500, exc.smtp_code, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:500])
    except (smtplib.SMTPException, OSError) as exc:
        return Outcome(False, True, None, f"{type(exc).__name__}: {exc}"[:500])
    return Outcome(True, False, 250, None)
