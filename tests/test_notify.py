"""Webhooks to a real local HTTP receiver (signature, retry on 500, dead-letter) and mail to a real
local SMTP server (aiosmtpd), from tickets opened and resolved on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from collector.notify.config import NotifyConfig
from collector.notify.outbox import Notifier
from collector.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from collector.store import schema as t
from collector.store.database import Store
from collector.tickets import lifecycle as tickets
from tests.mosquitto import free_port

SECRET = b"s3cret-for-tests"


class Receiver:
    """A real HTTP server on a free port that answers with scripted status codes and keeps requests."""

    def __init__(self, statuses: list[int]):
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                code = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code < 300 else b"broken")

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def _notifier(store: Store, tmp_path: Path, url: str, **retry: float) -> Notifier:
    secret = tmp_path / "hook.secret"
    secret.write_bytes(SECRET + b"\n")
    cfg = NotifyConfig.model_validate({"webhooks": [{"name": "desk", "url": url, "secret_file": str(secret)}],
                                       "retry": {"backoff_s": 10, **retry}})
    return Notifier(store.engine, cfg)


def _open(store: Store, line: str = "l-1") -> int:
    with store.engine.begin() as conn:
        return tickets.open_ticket(conn, line_id=line, fault_class="line_down", summary=f"Line down on {line}",
                                   location="wan", evidence=[("gw", "018f0000-0000-7000-8000-000000000001")]).ticket_id


def _attempts(store: Store) -> list[tuple[str, int | None]]:
    with store.engine.connect() as conn:
        return [(r.outcome, r.status_code) for r in conn.execute(
            select(t.notification_attempts).order_by(t.notification_attempts.c.attempt_id))]


def test_webhook_is_signed_retried_on_500_and_delivered_once(store: Store, tmp_path: Path) -> None:
    rx = Receiver([500, 500, 200])
    try:
        first, second = _notifier(store, tmp_path, rx.url), _notifier(store, tmp_path, rx.url)  # two collectors
        tid = _open(store)
        now = datetime.now(UTC)
        assert first.run_once(now) == 1 and second.run_once(now) == 0  # the other collector had claimed it
        assert second.run_once(now + timedelta(seconds=5)) == 0  # backoff (10 s ±20%) not over yet
        assert second.run_once(now + timedelta(seconds=13)) == 1
        assert first.run_once(now + timedelta(seconds=40)) == 1  # 2nd backoff: 20 s ±20%
        assert first.run_once(now + timedelta(seconds=400)) == 0  # delivered: nothing more
    finally:
        rx.close()
    assert _attempts(store) == [("retry", 500), ("retry", 500), ("delivered", 200)]
    assert len(rx.requests) == 3
    headers, body = rx.requests[-1]
    assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify(b"wrong", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify(SECRET, headers[TIMESTAMP_HEADER], body + b" ", headers[SIGNATURE_HEADER])
    doc = json.loads(body)
    assert doc["event"] == "ticket.opened" and headers["X-Linecheck-Event"] == "ticket.opened"
    assert doc["ticket"]["ticket_id"] == tid and doc["ticket"]["location"] == "wan"
    assert doc["ticket"]["evidence"] == [{"agent_id": "gw", "result_id": "018f0000-0000-7000-8000-000000000001",
                                         "role": "trigger"}]
    assert {h["X-Linecheck-Delivery"] for h, _ in rx.requests} == {str(doc["delivery_id"])}  # same on retries


def test_webhook_dead_letters_after_the_limit_and_on_refusal(store: Store, tmp_path: Path) -> None:
    rx = Receiver([500])
    try:
        notifier = _notifier(store, tmp_path, rx.url, max_attempts=3)
        _open(store)
        now = datetime.now(UTC)
        for minutes in range(0, 10):
            notifier.run_once(now + timedelta(minutes=minutes))
    finally:
        rx.close()
    assert _attempts(store) == [("retry", 500), ("retry", 500), ("dead", 500)]
    with store.engine.connect() as conn:
        row = conn.execute(select(t.notifications)).one()
    assert row.state == "dead" and row.attempts == 3 and row.last_error.startswith("HTTP 500")
    rx = Receiver([404])
    try:
        notifier = _notifier(store, tmp_path, rx.url)
        _open(store, "l-2")
        notifier.run_once(now)
    finally:
        rx.close()
    assert _attempts(store)[-1] == ("dead", 404)  # a refusal that retrying cannot fix


def test_unreachable_receiver_is_retried(store: Store, tmp_path: Path) -> None:
    notifier = _notifier(store, tmp_path, f"http://127.0.0.1:{free_port()}/nobody")
    _open(store)
    notifier.run_once(datetime.now(UTC))
    assert _attempts(store) == [("retry", None)]


def test_mail_on_open_and_resolve_reaches_a_local_smtp_server(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.messages: list[tuple[str, list[str], bytes]] = []

        async def handle_DATA(self, _server: object, _session: object, envelope: object) -> str:  # noqa: N802
            self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))  # type: ignore[attr-defined]
            return "250 OK"

    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    store = Store(f"sqlite:///{tmp_path}/n.db")
    try:
        cfg = NotifyConfig.model_validate({"mail": [{
            "name": "noc", "host": "127.0.0.1", "port": port, "security": "none",
            "sender": "linecheck@carrier.example", "to": ["noc@carrier.example", "field@carrier.example"]}]})
        notifier = Notifier(store.engine, cfg)
        tid = _open(store)
        with store.engine.begin() as conn:
            tickets.resolve_open(conn, "l-1", "line_down", "rule", "2 healthy results")
        assert notifier.run_once() == 2
    finally:
        smtp.stop()
        store.close()
    assert [m[1] for m in inbox.messages] == [["noc@carrier.example", "field@carrier.example"]] * 2
    subjects = [message_from_bytes(m[2])["Subject"] for m in inbox.messages]
    assert subjects == [f"[linecheck] ticket #{tid} opened: line_down on line l-1",
                        f"[linecheck] ticket #{tid} resolved: line_down on line l-1"]
    assert "Line down on l-1" in message_from_bytes(inbox.messages[0][2]).get_payload()


def test_notify_config_refuses_duplicate_names() -> None:
    with pytest.raises(ValueError, match="target names must be unique \\(repeated: a\\)"):
        NotifyConfig.model_validate({"webhooks": [{"name": "a", "url": "http://x.example/", "secret_file": "s"}],
                                     "mail": [{"name": "a", "sender": "a@b.c", "to": ["d@e.f"]}]})
