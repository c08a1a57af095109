"""Ticket notifications through Apprise URLs to real local receivers (a generic JSON endpoint via json://,
an ntfy server stand-in via ntfy://): the message arrives, a failing receiver is retried through the
outbox, and the tokens those URLs carry appear in no log line, no delivery record, no API answer and
no config error."""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from collector.api.app import create_app
from collector.config import load
from collector.notify import services
from collector.notify.config import NotifyConfig
from collector.notify.outbox import Notifier
from collector.store import schema as t
from collector.store.database import Store
from collector.tickets import lifecycle as tickets
from linecheck.configfile import ConfigError
from tests.mosquitto import free_port

TOKEN = "tk9Zq7SeCrEt"  # stands for a bot token / API key in the URL
PASSWORD = "pw4PaSsWoRd"


class Receiver:
    """A real HTTP server answering with scripted statuses; a 500 body echoes the request line, as a
    hostile or careless service might (the token is in the path)."""

    def __init__(self, statuses: list[int]):
        self.statuses = statuses
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.path, dict(self.headers), body))
                code = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"{}" if code < 300 else f"refused {self.path} {self.headers}".encode())

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/n.db")
    yield s
    s.close()


def _open(store: Store, line: str = "l-1") -> int:
    with store.engine.begin() as conn:
        return tickets.open_ticket(conn, line_id=line, fault_class="dns_failure", summary=f"DNS fails on {line}",
                                   location="dns", evidence=[("gw", "018f0000-0000-7000-8000-000000000001")]).ticket_id


def _notifier(store: Store, url: str, **retry: float) -> Notifier:
    cfg = NotifyConfig.model_validate({"apprise": [{"name": "field-team", "url": url}],
                                       "retry": {"backoff_s": 10, **retry}})
    return Notifier(store.engine, cfg)


def _attempts(store: Store) -> list[tuple[str, str | None]]:
    with store.engine.connect() as conn:
        return [(r.outcome, r.error) for r in conn.execute(
            select(t.notification_attempts).order_by(t.notification_attempts.c.attempt_id))]


def test_json_endpoint_gets_the_ticket_after_a_retry(store: Store) -> None:
    rx = Receiver([500, 200])
    try:
        notifier = _notifier(store, f"json://127.0.0.1:{rx.port}/hooks/{TOKEN}")
        tid = _open(store)
        now = datetime.now(UTC)
        assert notifier.run_once(now) == 1
        assert notifier.run_once(now + timedelta(seconds=5)) == 0  # backoff (10 s ±20 %) not over
        assert notifier.run_once(now + timedelta(seconds=13)) == 1
        assert notifier.run_once(now + timedelta(seconds=400)) == 0  # delivered: once
    finally:
        rx.close()
    assert [o for o, _ in _attempts(store)] == ["retry", "delivered"]
    assert len(rx.requests) == 2
    path, _headers, body = rx.requests[-1]
    assert path == f"/hooks/{TOKEN}"
    doc = json.loads(body)
    assert doc["title"] == f"[linecheck] ticket #{tid} opened: dns_failure on line l-1"
    assert "DNS fails on l-1" in doc["message"] and "Where:     dns" in doc["message"]


def test_ntfy_topic_with_basic_auth_gets_the_ticket(store: Store) -> None:
    rx = Receiver([200])
    try:
        notifier = _notifier(store, f"ntfy://field:{PASSWORD}@127.0.0.1:{rx.port}/linecheck-{TOKEN}")
        tid = _open(store)
        assert notifier.run_once(datetime.now(UTC)) == 1
    finally:
        rx.close()
    assert _attempts(store) == [("delivered", None)]
    (_path, headers, body), = rx.requests
    assert headers["Authorization"] == "Basic " + base64.b64encode(f"field:{PASSWORD}".encode()).decode()
    doc = json.loads(body)
    assert doc["topic"] == f"linecheck-{TOKEN}" and doc["title"].startswith(f"[linecheck] ticket #{tid} opened")


def test_tokens_never_reach_logs_delivery_records_or_the_api(store: Store) -> None:
    """The receiver refuses and echoes the request (path with the token, Authorization header) in its
    answer; Apprise and urllib3 log the path at DEBUG. None of it may surface: the log is what a root
    handler at DEBUG gets, as `linecheck-collector serve --log-level DEBUG` configures it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level, root.level = root.level, logging.DEBUG
    rx = Receiver([500])
    url = f"json://ops:{PASSWORD}@127.0.0.1:{rx.port}/hooks/{TOKEN}"
    try:
        notifier = _notifier(store, url, max_attempts=2)
        tid = _open(store)
        now = datetime.now(UTC)
        notifier.run_once(now)
        notifier.run_once(now + timedelta(minutes=5))
    finally:
        rx.close()
        root.removeHandler(handler)
        root.level = level
    assert len(rx.requests) == 2 and TOKEN in rx.requests[0][0]  # it really was sent the token
    attempts = _attempts(store)
    assert [o for o, _ in attempts] == ["retry", "dead"]
    assert all(e and "500" in e for _, e in attempts)  # the error says why ...
    with store.engine.connect() as conn:
        stored = [str(tuple(r)) for table in (t.notifications, t.notification_attempts)
                  for r in conn.execute(select(table))]
    logged = stream.getvalue()
    assert "notification" in logged and "dead-lettered" in logged  # ... and the outbox logged it
    api = TestClient(create_app(store.engine))
    answers = [api.get("/metrics").text, api.get("/healthz").text, api.get("/api/openapi.json").text]
    for secret in (TOKEN, PASSWORD, base64.b64encode(f"ops:{PASSWORD}".encode()).decode()):
        assert secret not in "\n".join(stored), secret
        assert secret not in logged, secret
        assert all(secret not in a for a in answers), secret
    assert tid


def test_redact_masks_every_secret_part_of_the_urls_people_use() -> None:
    cases = {
        "wecombot://AbCdEf123456": ["AbCdEf123456"],
        "dingtalk://TokenTokenToken/SecretSecret": ["TokenTokenToken", "SecretSecret"],
        "feishu://FsTokenXYZ": ["FsTokenXYZ"],
        "tgram://123456789:AAbotTOKENzz/-10055555": ["123456789", "AAbotTOKENzz", "-10055555"],
        "ntfys://user:PaSs1234@ntfy.example.com/topicSECRET": ["PaSs1234", "topicSECRET"],
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general": ["TIiajkdnlazkcOXrIdevi7FQ", "A1BRTD4JD"],
        "mailtos://noc:MaIlPaSs@smtp.example.com?to=field@carrier.example": ["MaIlPaSs"],
    }
    for url, secrets in cases.items():
        text = services.redact(f"failed sending to {url} with {' '.join(secrets)}", url)
        assert all(s not in text for s in secrets), (url, text)
    # Hosts that are names or addresses stay readable: the error must still say where it failed.
    assert "ntfy.example.com" in services.redact("ntfy.example.com: 500", "ntfys://u:p1234@ntfy.example.com/topic")
    assert "127.0.0.1" in services.redact("127.0.0.1 refused", "json://127.0.0.1:8080/x")


@pytest.mark.parametrize(("entry", "expected"), [
    ({"name": "x", "url": f"nosuch://{TOKEN}"}, "notify.apprise[0]: url: 'nosuch://' is not a service Apprise knows"),
    ({"name": "x", "url": f"tgram://{TOKEN}"}, "notify.apprise[0]: url: Apprise cannot use this tgram:// URL"),
    ({"name": "x", "url": TOKEN}, "notify.apprise[0]: url: expected an Apprise URL"),
    ({"name": "x"}, "notify.apprise[0]: give url or url_file (exactly one)"),
    ({"name": "x", "url": "json://h/", "url_file": "u.txt"}, "notify.apprise[0]: give url or url_file (exactly one)"),
    ({"name": "x", "url_file": "missing.url"}, "notify.apprise[0]: url_file: cannot read "),
])
def test_config_errors_name_file_key_and_expectation_without_the_url(tmp_path: Path, entry: dict,
                                                                     expected: str) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(json.dumps({"database": f"sqlite:///{tmp_path}/c.db", "notify": {"apprise": [entry]}}))
    with pytest.raises(ConfigError) as err:
        load(path)
    assert f"{path}: {expected}" in str(err.value)
    assert TOKEN not in str(err.value)


def test_url_file_beside_the_config_and_exit_2_on_a_bad_one(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "ntfy.url").write_text(f"ntfy://127.0.0.1:{port}/topic-{TOKEN}\n")
    path = tmp_path / "collector.yaml"
    path.write_text(json.dumps({"database": f"sqlite:///{tmp_path}/c.db",
                                "notify": {"apprise": [{"name": "ntfy", "url_file": "ntfy.url"}]}}))
    cfg = load(path)  # relative to the config file, not to where the command runs
    assert cfg.notify.apprise[0].apprise_url() == f"ntfy://127.0.0.1:{port}/topic-{TOKEN}"
    assert TOKEN not in repr(cfg.notify.apprise[0]) and TOKEN not in str(cfg.model_dump())
    (tmp_path / "ntfy.url").write_text(f"tgram://{TOKEN}\n")
    out = subprocess.run([sys.executable, "-m", "collector.cli", "init-db", "--config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "notify.apprise[0]: url_file: Apprise cannot use this tgram:// URL" in out.stderr
    assert TOKEN not in out.stderr + out.stdout
