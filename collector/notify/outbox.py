"""Fan ticket events out to targets, claim due notifications, deliver them, log every attempt."""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, select

from collector.fleet import registry
from collector.notify import mail, services, text, webhook
from collector.notify.config import AppriseTarget, Mail, NotifyConfig, Target, Webhook
from collector.notify.webhook import Outcome
from collector.store import schema as t
from collector.store.upsert import insert_for
from collector.tickets import lifecycle as tickets

log = logging.getLogger(__name__)


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


class Notifier:
    def __init__(self, engine: Engine, cfg: NotifyConfig):
        self.engine = engine
        self.cfg = cfg
        self.targets: dict[str, Target] = {f"webhook:{w.name}": w for w in cfg.webhooks}
        self.targets |= {f"mail:{m.name}": m for m in cfg.mail}
        self.targets |= {f"apprise:{a.name}": a for a in cfg.apprise}

    def run_once(self, now: datetime | None = None) -> int:
        """Fan out new events, then deliver what is due. Returns how many deliveries were attempted."""
        if not self.targets:
            return 0
        now = now or datetime.now(UTC)
        self.fan_out(now)
        attempted = 0
        for notification_id in self._due(now):
            if self._claim(notification_id, now):
                self._deliver(notification_id, now)
                attempted += 1
        return attempted

    # --- fan-out ----------------------------------------------------------------------------------
    def fan_out(self, now: datetime) -> int:
        created = 0
        with self.engine.begin() as conn:
            scopes = {name: self._scope(conn, target) for name, target in self.targets.items()}
            for name, target in self.targets.items():
                n = t.notifications
                stmt = (select(t.ticket_events.c.event_id, t.tickets.c.tenant_id)
                        .join(t.tickets, t.tickets.c.ticket_id == t.ticket_events.c.ticket_id)
                        .outerjoin(n, and_(n.c.event_id == t.ticket_events.c.event_id, n.c.target == name))
                        .where(t.ticket_events.c.kind.in_(list(target.events)),
                               t.ticket_events.c.at >= now - timedelta(seconds=self.cfg.lookback_s),
                               n.c.notification_id.is_(None)))
                rows = [r for r in conn.execute(stmt) if scopes[name] is None or r.tenant_id in scopes[name]]
                if not rows:
                    continue
                ins = insert_for(conn, n).values([
                    {"event_id": r.event_id, "target": name, "state": "pending", "attempts": 0,
                     "next_attempt_at": now, "created_at": now} for r in rows]).on_conflict_do_nothing()
                created += conn.execute(ins).rowcount or 0
        return created

    @staticmethod
    def _scope(conn: Any, target: Target) -> set[str] | None:
        if target.tenants is None:
            return None
        scope: set[str] = set()
        for tenant in target.tenants:
            scope |= registry.tenant_scope(conn, tenant)
        return scope

    # --- delivery ---------------------------------------------------------------------------------
    def _due(self, now: datetime, limit: int = 100) -> list[int]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(t.notifications.c.notification_id).where(
                t.notifications.c.state == "pending", t.notifications.c.next_attempt_at <= now,
                t.notifications.c.target.in_(list(self.targets)))
                .order_by(t.notifications.c.next_attempt_at).limit(limit)).scalars())

    def _claim(self, notification_id: int, now: datetime) -> bool:
        """Compare-and-set lease: of several collectors, exactly one wins each due attempt."""
        n = t.notifications
        with self.engine.begin() as conn:
            won = conn.execute(n.update().where(n.c.notification_id == notification_id, n.c.state == "pending",
                                                n.c.next_attempt_at <= now)
                               .values(next_attempt_at=now + timedelta(seconds=self.cfg.retry.lease_s))).rowcount
        return won == 1

    def _deliver(self, notification_id: int, now: datetime) -> None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.notifications, t.ticket_events.c.kind, t.ticket_events.c.ticket_id,
                                      t.ticket_events.c.at.label("event_at"))
                               .join(t.ticket_events, t.ticket_events.c.event_id == t.notifications.c.event_id)
                               .where(t.notifications.c.notification_id == notification_id)).one()
            ticket = self.ticket_document(conn, row.ticket_id)
        event = f"ticket.{row.kind}"
        target = self.targets[row.target]
        started = time.monotonic()
        try:
            if isinstance(target, Webhook):
                body = json.dumps({"event": event, "event_id": row.event_id, "delivery_id": notification_id,
                                   "at": _iso(row.event_at), "ticket": ticket}, separators=(",", ":")).encode()
                outcome = webhook.post(target, event, notification_id, body)
            elif isinstance(target, AppriseTarget):
                outcome = services.send(target.apprise_url(), text.subject(event, ticket),
                                        text.body(ticket, evidence=False))
            else:
                assert isinstance(target, Mail)
                outcome = mail.send(target, mail.compose(target, event, ticket, notification_id))
        except Exception as exc:  # e.g. the secret file vanished: log it as a failed attempt, keep going
            error = f"{type(exc).__name__}: {exc}"
            if isinstance(target, AppriseTarget):  # never the service's token in a log line or the database
                error = services.redact(error, target.apprise_url())
            outcome = Outcome(False, True, None, error[:500])
        self._record(notification_id, row.attempts + 1, outcome, (time.monotonic() - started) * 1000, now)

    def _record(self, notification_id: int, attempt: int, outcome: Outcome, duration_ms: float,
                now: datetime) -> None:
        r = self.cfg.retry
        if outcome.ok:
            state, verdict = "delivered", "delivered"
        elif not outcome.retryable or attempt >= r.max_attempts:
            state, verdict = "dead", "dead"
        else:
            state, verdict = "pending", "retry"
        # Exponential backoff with ±20% jitter, so a receiver coming back is not hit by every retry at once.
        delay = min(r.backoff_max_s, r.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
        values: dict[str, Any] = {"state": state, "attempts": attempt, "last_error": outcome.error}
        if state == "delivered":
            values["delivered_at"] = now
        if state == "pending":
            values["next_attempt_at"] = now + timedelta(seconds=delay)
        with self.engine.begin() as conn:
            conn.execute(t.notifications.update().where(t.notifications.c.notification_id == notification_id)
                         .values(**values))
            conn.execute(t.notification_attempts.insert().values(
                notification_id=notification_id, at=now, outcome=verdict, status_code=outcome.status_code,
                error=outcome.error, duration_ms=duration_ms))
        if state == "dead":
            log.error("notification %d dead-lettered after %d attempt(s): %s", notification_id, attempt,
                      outcome.error)
        elif state == "pending":
            log.warning("notification %d attempt %d failed (%s); retry in %.0f s", notification_id, attempt,
                        outcome.error, delay)

    @staticmethod
    def ticket_document(conn: Any, ticket_id: int) -> dict[str, Any]:
        """The ticket as webhooks and mails show it (JSON-ready)."""
        tk = tickets.get(conn, ticket_id)
        doc: dict[str, Any] = {k: tk._mapping[k] for k in (
            "ticket_id", "line_id", "fault_class", "state", "severity", "location", "summary", "tenant_id",
            "site_id", "agent_id", "opened_by", "assignee")}
        for k in ("opened_at", "acknowledged_at", "dispatched_at", "resolved_at", "verified_at"):
            doc[k] = _iso(tk._mapping[k])
        doc["detail"] = json.loads(tk.detail) if tk.detail else None
        doc["evidence"] = [{"agent_id": e.agent_id, "result_id": e.result_id, "role": e.role}
                           for e in tickets.evidence(conn, ticket_id)]
        return doc
