"""SMTP mail for ticket events (plain text, one message per event and target)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from collector.notify import text
from collector.notify.config import Mail
from collector.notify.webhook import Outcome


def compose(target: Mail, event: str, ticket: dict[str, Any], delivery_id: int) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = text.subject(event, ticket)
    msg["From"] = target.sender
    msg["To"] = ", ".join(target.to)
    msg["X-Linecheck-Delivery"] = str(delivery_id)
    msg.set_content(text.body(ticket))
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
