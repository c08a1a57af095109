"""Remote commands against a hostile or careless world: they never cost ingest a result, they are
rate-limited and bounded, an agent survives any payload on its command topic, and a carrier's
button never spends the customer's data beyond the daily budget.

The broker tests run Mosquitto with the config `linecheck-collector broker-config` generates (TLS
client certificates, `use_username_as_clientid`, the generated ACL), the real collector and agent
programs. Every test here failed on the main of issue 16 and passes since (docs/security.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from agent.config import ScheduleConfig
from agent.reasons import english
from agent.scheduler import Scheduler
from collector.api.app import create_app
from collector.commands.config import RemoteCommandsConfig
from collector.commands.desk import CommandDesk
from collector.commands.limits import RateLimited
from collector.commands.publish import CommandInvalid, checked_command
from collector.config import CollectorConfig
from collector.fleet import broker_config, enrolment
from collector.fleet.pki import FleetCA
from collector.store import schema as t
from collector.store.database import Store
from linecheck.configfile import ConfigError
from linecheck.identity import key_pem, make_csr, new_key, write_private
from linecheck.wire import (
    CheckResult,
    Command,
    ResultEnvelope,
    Status,
    Trigger,
    commands_topic,
    new_result_id,
    receipts_topic,
    results_topic,
    status_topic,
    utcnow,
)
from tests.api_support import auth
from tests.fleet_data import Fleet
from tests.helpers import start, stop, wait_for
from tests.mosquitto import free_port, wait_port

pytestmark = pytest.mark.broker


# --- a broker from the generated config -------------------------------------------------------------
@dataclass
class TLSFleet:
    root: Path
    ca: FleetCA
    files: broker_config.BrokerFiles
    port: int
    db: Path

    @property
    def collector_cert(self) -> tuple[Path, Path]:
        return self.files.collectors[broker_config.COLLECTOR_IDENTITY]

    def enrol(self, agent_id: str, line_id: str, site_id: str) -> tuple[Path, Path]:
        """Enrol like a gateway does (token, CSR): the agent is bound to the line; returns (cert, key)."""
        store = Store(f"sqlite:///{self.db}")
        try:
            key = new_key()
            issued = enrolment.issue_token(store.engine, agent_id, line_id, site_id)
            done = enrolment.redeem(store.engine, self.ca, issued.token, make_csr(agent_id, key))
        finally:
            store.close()
        cert, key_path = self.root / f"{agent_id}.crt", self.root / f"{agent_id}.key"
        cert.write_bytes(done.certificate_pem)
        write_private(key_path, key_pem(key))
        return cert, key_path

    def collector_yaml(self, name: str, *, command_identity: bool, http_port: int = 0) -> Path:
        cert, key = self.collector_cert
        body = (f"database: sqlite:///{self.db}\n"
                f"mqtt: {{host: 127.0.0.1, port: {self.port}, client_id: {broker_config.COLLECTOR_IDENTITY}, "
                f"ca_file: {self.ca.cert_path}, cert_file: {cert}, key_file: {key}}}\n"
                f"http: {{port: {http_port}}}\n")
        if command_identity:
            assert self.files.commands is not None
            ccert, ckey = self.files.commands
            body += f"commands: {{cert_file: {ccert}, key_file: {ckey}}}\n"
        path = self.root / name
        path.write_text(body)
        return path


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[TLSFleet]:
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (scripts/test.sh installs it when run as root)")
    ca = FleetCA.open_or_create(tmp_path / "ca")
    port = free_port()
    files = broker_config.generate(tmp_path / "broker", ca, ["127.0.0.1", "localhost"], port=port, bind="127.0.0.1",
                               run_as="root" if os.geteuid() == 0 else os.environ.get("USER", "nobody"))
    broker = subprocess.Popen(["mosquitto", "-c", str(files.config)], stdout=subprocess.DEVNULL,
                              stderr=(tmp_path / "mosquitto.log").open("wb"))
    wait_port(port)
    Store(f"sqlite:///{tmp_path}/collector.db").close()  # migrated once, before any process uses it
    yield TLSFleet(tmp_path, ca, files, port, tmp_path / "collector.db")
    broker.terminate()
    broker.wait(10)


class Probe:
    """A TLS MQTT client with some identity; records what it receives and the PUBACK reason codes."""

    def __init__(self, fleet: TLSFleet, cert: tuple[Path, Path], client_id: str):
        self.messages: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=str(fleet.ca.cert_path), certfile=str(cert[0]), keyfile=str(cert[1]))
        self.client.on_connect = lambda *a: None if a[3].is_failure else self.connected.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.acks: dict[int, Any] = {}
        self.client.on_publish = lambda _c, _u, mid, reason, _p: self.acks.__setitem__(mid, reason)
        self.client.connect("127.0.0.1", fleet.port)
        self.client.loop_start()
        wait_for(self.connected.is_set, 10, f"{client_id} connected")

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, 1)
        wait_for(done.is_set, 10, f"SUBACK for {topic}")

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> int:
        """Publish QoS 1, wait for the PUBACK; returns its reason code (0 ok, 0x87 not authorised)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        wait_for(lambda: info.mid in self.acks, 10, "the PUBACK")
        return int(self.acks[info.mid].value)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def result_payload(agent_id: str, line_id: str, site_id: str) -> bytes:
    now = utcnow()
    env = ResultEnvelope(result_id=new_result_id(), agent_id=agent_id, seq=1, line_id=line_id, site_id=site_id,
                         trigger=Trigger.MANUAL, started_at=now - timedelta(seconds=5), ended_at=now,
                         agent_version="test", checks=[CheckResult(kind="link", status=Status.OK, duration_s=0.1)])
    return env.to_json()


def delivered(db: Path, agent_id: str) -> int:
    """Results of `agent_id` that reached ingest (stored)."""
    store = Store(f"sqlite:///{db}")
    try:
        with store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.results)
                                    .where(t.results.c.agent_id == agent_id)).scalar() or 0)
    finally:
        store.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector.cli", *args], capture_output=True, text=True, timeout=60)


# --- 1. a command never costs ingest its session -----------------------------------------------------
def test_a_command_sent_while_ingest_is_away_costs_no_result(tls: TLSFleet) -> None:
    """Ingest has a persistent session; while it is away an agent publishes a result and someone sends
    a command. On main the command connected as ingest with a clean session and the broker threw the
    queued result away; now an old config (ingest identity only) is refused and the command identity
    sends it, and the restarted collector gets the result from the broker's session."""
    cert = tls.enrol("sess-gw", "sess-line", "sess-site")
    old_cfg = tls.collector_yaml("old.yaml", command_identity=False)
    new_cfg = tls.collector_yaml("new.yaml", command_identity=True)
    log = tls.root / "collector.log"
    collector = start("collector.cli", "serve", "--config", str(new_cfg), log=log)
    try:
        wait_for(lambda: "collector connected" in log.read_text(), 20, "ingest's first session")
    finally:
        stop(collector)

    agent = Probe(tls, cert, "sess-gw")  # publishes once and is gone: no re-send can rescue the result
    assert agent.publish(results_topic("sess-gw"), result_payload("sess-gw", "sess-line", "sess-site")) == 0
    agent.close()

    refused = cli("command", "--config", str(old_cfg), "--agent", "sess-gw", "check_now")
    assert refused.returncode == 1, refused.stdout
    assert "no command identity configured" in refused.stderr and "commands.cert_file" in refused.stderr
    sent = cli("command", "--config", str(new_cfg), "--agent", "sess-gw", "check_now")
    assert sent.returncode == 0, sent.stderr

    collector = start("collector.cli", "serve", "--config", str(new_cfg), log=log)
    try:
        wait_for(lambda: delivered(tls.db, "sess-gw") == 1, 30, "the result queued in ingest's session")
    finally:
        stop(collector)


def test_check_now_in_serve_goes_out_on_ingests_own_connection(tls: TLSFleet) -> None:
    """The API inside `serve` publishes on ingest's connection: ingest is never disconnected, even
    with no command identity configured (on main the API connected as ingest and knocked it off)."""
    cert = tls.enrol("api-gw", "api-line", "api-site")
    http_port = free_port()
    cfg = tls.collector_yaml("serve.yaml", command_identity=False, http_port=http_port)
    (tls.root / "pw").write_text("operator-password-1")
    assert cli("user", "add", "--config", str(cfg), "ops", "--role", "carrier_admin",
               "--password-file", str(tls.root / "pw")).returncode == 0
    token = cli("user", "token", "--config", str(cfg), "ops", "--name", "t").stdout.strip()
    log = tls.root / "serve.log"
    collector = start("collector.cli", "serve", "--config", str(cfg), log=log)
    agent = Probe(tls, cert, "api-gw")
    try:
        wait_for(lambda: "collector connected" in log.read_text(), 20, "ingest connected")
        agent.subscribe(commands_topic("api-gw"))
        assert agent.publish(results_topic("api-gw"), result_payload("api-gw", "api-line", "api-site")) == 0
        wait_for(lambda: delivered(tls.db, "api-gw") == 1, 30, "the agent's first result")
        api = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", headers={"Authorization": f"Bearer {token}"})
        r = api.post("/api/v1/lines/api-line/commands", json={"action": "check_now", "checks": ["link"]})
        assert r.status_code == 202, r.text
        command_id = r.json()["commands"][0]["command_id"]
        wait_for(lambda: any(command_id.encode() in p for _t, p in agent.messages), 10, "the command at the agent")
        # Ingest is still connected: a result published now is stored without any reconnect.
        assert agent.publish(results_topic("api-gw"), result_payload("api-gw", "api-line", "api-site")) == 0
        wait_for(lambda: delivered(tls.db, "api-gw") == 2, 30, "the second result")
        assert "collector disconnected" not in log.read_text()
    finally:
        agent.close()
        stop(collector)


def test_command_identity_may_only_write_commands(tls: TLSFleet) -> None:
    """The ACL entry of linecheck.commands: it writes command topics, reads no results, forges no
    results or receipts."""
    assert tls.files.commands is not None
    agent_cert = tls.enrol("acl-gw", "acl-line", "acl-site")
    commands = Probe(tls, tls.files.commands, broker_config.COMMANDS_IDENTITY)
    reader = Probe(tls, tls.collector_cert, broker_config.COLLECTOR_IDENTITY)  # the control: may read results
    agent = Probe(tls, agent_cert, "acl-gw")
    try:
        commands.subscribe("linecheck/v1/agents/+/results")
        commands.subscribe("linecheck/v1/agents/+/status")
        reader.subscribe("linecheck/v1/agents/+/results")
        agent.subscribe(commands_topic("acl-gw"))
        agent.subscribe(receipts_topic("acl-gw"))
        payload = result_payload("acl-gw", "acl-line", "acl-site")
        assert agent.publish(results_topic("acl-gw"), payload) == 0
        assert commands.publish(results_topic("acl-gw"), payload) == 0x87  # not authorised
        assert commands.publish(receipts_topic("acl-gw"), b'{"result_ids": []}') == 0x87
        assert commands.publish(status_topic("acl-gw"), b"offline") == 0x87
        assert commands.publish(commands_topic("acl-gw"), b"{}") == 0
        wait_for(lambda: reader.messages and agent.messages, 10, "deliveries to the reader and the agent")
        assert reader.messages == [(results_topic("acl-gw"), payload)]
        assert agent.messages == [(commands_topic("acl-gw"), b"{}")]  # no forged receipt
        assert commands.messages == []  # the command identity saw no result, no status
    finally:
        for p in (commands, reader, agent):
            p.close()


def test_acl_rewritten_after_a_revocation_keeps_the_command_identity_write_only(tmp_path: Path) -> None:
    ca = FleetCA.open_or_create(tmp_path / "ca")
    files = broker_config.generate(tmp_path / "broker", ca, ["127.0.0.1"])
    assert files.commands is not None and files.commands[0].name == "linecheck.commands.crt"
    acl = broker_config.write_acl(tmp_path / "broker", ["stolen-gw"]).read_text()
    block = acl.split("user linecheck.commands\n", 1)[1].split("\n\n", 1)[0]
    assert block == "topic write linecheck/v1/agents/+/commands"
    assert "user linecheck.collector\n" in acl and "user stolen-gw\ntopic deny linecheck/v1/agents/#" in acl


def test_config_names_the_command_identity_problem(tmp_path: Path) -> None:
    from collector.config import load

    path = tmp_path / "c.yaml"
    path.write_text("commands: {cert_file: /etc/linecheck/linecheck.commands.crt}\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(path) in str(err.value) and "commands" in str(err.value) and "key_file" in str(err.value)
    path.write_text("commands: {per_line: 0}\n")
    with pytest.raises(ConfigError, match=r"commands\.per_line"):
        load(path)


# --- 2. rate limits, in one place, shared through the database --------------------------------------
class Published:
    """The broker side of the desk in API tests; the broker path itself is tested above."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, Command]] = []

    def __call__(self, agent_id: str, command: Command) -> None:
        self.commands.append((agent_id, command))


def limited_cfg(**limits: Any) -> CollectorConfig:
    return CollectorConfig(commands=RemoteCommandsConfig(**limits))


def test_api_refuses_over_the_line_limit_with_429_and_retry_after(fleet: Fleet) -> None:
    published = Published()
    desk = CommandDesk(limited_cfg(per_line=2, per_line_window_s=600), fleet.engine, published)
    with TestClient(create_app(fleet.engine, commands=desk)) as client:
        def ask(user: str = "a-admin", line: str = "acme-xuhui-1") -> httpx.Response:
            return client.post(f"/api/v1/lines/{line}/commands", headers=auth(fleet, user), json={})

        assert [ask().status_code for _ in range(2)] == [202, 202]
        r = ask("a-tech")  # another user, the same line: the line's limit binds
        assert r.status_code == 429, r.text
        assert 1 <= int(r.headers["Retry-After"]) <= 600
        assert "acme-xuhui-1" in r.json()["detail"] and "commands.per_line" in r.json()["detail"]
        assert ask(line="acme-xuhui-2").status_code == 202  # another line is not affected
    assert [a for a, _c in published.commands] == ["acme-gw", "acme-gw", "acme-gw2"]


def test_api_refuses_over_the_user_limit(fleet: Fleet) -> None:
    published = Published()
    desk = CommandDesk(limited_cfg(per_user=2, per_user_window_s=3600), fleet.engine, published)
    with TestClient(create_app(fleet.engine, commands=desk)) as client:
        codes = [client.post(f"/api/v1/lines/{line}/commands", headers=auth(fleet, "a-admin"), json={}).status_code
                 for line in ("acme-xuhui-1", "acme-xuhui-2", "tel-jingan-1")]
        assert codes == [202, 202, 429]
        other = client.post("/api/v1/lines/tel-jingan-1/commands", headers=auth(fleet, "operator"), json={})
        assert other.status_code == 202  # the limit is per user
    assert len(published.commands) == 3


def test_console_check_now_is_rate_limited_per_user_too(fleet: Fleet) -> None:
    """The console's "check now" goes through the same desk and names its user: over the user's limit
    nothing more is published and the page says so."""
    from tests.test_console import csrf_of, login

    published = Published()
    desk = CommandDesk(limited_cfg(per_user=1), fleet.engine, published)
    with TestClient(create_app(fleet.engine, commands=desk)) as client:
        login(client, "a-admin")
        codes = []
        for line in ("acme-xuhui-1", "acme-xuhui-2"):
            csrf = csrf_of(client.get(f"/console/lines/{line}").text)
            r = client.post(f"/console/lines/{line}/check", data={"csrf": csrf, "action": "check_now"},
                            follow_redirects=False)
            codes.append(r.headers["location"].rsplit("msg=", 1)[1])
        assert codes == ["command_sent", "command_rate_limited"]
        assert "Too many remote checks" in client.get(f"/console/lines/acme-xuhui-2?msg={codes[1]}").text
    assert [a for a, _c in published.commands] == ["acme-gw"]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_limits_are_shared_by_every_collector_process(db_url: str) -> None:
    """Two desks on one database (two collector processes, or the CLI beside `serve`) share the count."""
    stores = [Store(db_url), Store(db_url)]
    try:
        cfg = limited_cfg(per_line=3, per_user=100)
        published = Published()
        desks = [CommandDesk(cfg, s.engine, published) for s in stores]
        outcomes = []
        for i in range(5):
            try:
                desks[i % 2]("shared-gw", "check_now", None, None, requested_by=f"u{i}")
                outcomes.append("sent")
            except RateLimited as exc:
                outcomes.append(f"limited {exc.retry_after_s}")
        assert outcomes[:3] == ["sent"] * 3 and all(o.startswith("limited") for o in outcomes[3:])
        with stores[0].engine.connect() as conn:  # refused commands are not logged, so they cost nothing
            assert conn.execute(select(func.count()).select_from(t.command_log)).scalar() == 3
    finally:
        for s in stores:
            s.close()


def test_cli_reports_the_rate_limit(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/c.db\nmqtt: {{host: 127.0.0.1, port: {free_port()}}}\n"
                   "commands: {per_line: 1}\n")
    store = Store(f"sqlite:///{tmp_path}/c.db")
    try:
        with store.engine.begin() as conn:  # one command in the window already (e.g. from the console)
            # A known agent: `command` refuses ids the collector never registered nor heard from.
            conn.execute(t.agents.insert().values(agent_id="cli-gw", line_id="cli-line", site_id="cli-site"))
            conn.execute(t.command_log.insert().values(command_id="c1", agent_id="cli-gw", action="check_now",
                                                       sent_at=utcnow()))
    finally:
        store.close()
    out = cli("command", "--config", str(cfg), "--agent", "cli-gw", "check_now")
    assert out.returncode == 1
    assert re.search(r"rate limit.*commands\.per_line\); try again in \d+ s", out.stderr), out.stderr


# --- 3. bounded payload ------------------------------------------------------------------------------
def test_commands_name_only_known_checks_and_a_bounded_reason(fleet: Fleet) -> None:
    cfg = RemoteCommandsConfig(max_checks=3)
    assert checked_command(cfg, "retest", ["link", "ping", "link"]).checks == ["link", "ping"]
    for bad, match in [(["link", "rm -rf /"], "unknown check kind"), (["no_such_check"], "unknown check kind"),
                       (["link", "ping", "dns", "http"], "at most 3"), ([], None)]:
        if match:
            with pytest.raises(CommandInvalid, match=match):
                checked_command(cfg, "check_now", bad)
    with pytest.raises(CommandInvalid, match="at most 500"):
        checked_command(cfg, "check_now", None, reason="x" * 501)
    with pytest.raises(CommandInvalid, match="ttl"):
        checked_command(cfg, "check_now", None, ttl_s=30 * 86400)
    published = Published()
    with TestClient(create_app(fleet.engine, commands=CommandDesk(CollectorConfig(), fleet.engine, published))) as c:
        r = c.post("/api/v1/lines/acme-xuhui-1/commands", headers=auth(fleet, "a-admin"),
                   json={"checks": ["x" * 64]})
        assert r.status_code == 422 and "unknown check kind" in r.json()["detail"]
    assert published.commands == []


# --- 3 and 4 at the agent: garbage, then a real command within the data budget -----------------------
def agent_yaml(tls: TLSFleet, agent_id: str, cert: tuple[Path, Path], data: Path) -> Path:
    path = tls.root / f"{agent_id}.yaml"
    path.write_text(
        f"agent_id: {agent_id}\nline_id: {agent_id}-line\nsite_id: s1\ndata_dir: {data}\n"
        f"mqtt: {{host: 127.0.0.1, port: {tls.port}, resend_after_s: 5, "
        f"tls: {{ca_file: {tls.ca.cert_path}, cert_file: {cert[0]}, key_file: {cert[1]}}}}}\n"
        "schedule: {interval_s: 3600, jitter_s: 0, first_delay_s: 3600, daily_data_budget_mb: 100}\n"
        "idle: {sample_s: 1}\n"
        "checks:\n  link: {window_s: 0.1}\n  throughput: {server: '127.0.0.1:9'}\n")
    return path


def spooled(data: Path) -> list[ResultEnvelope]:
    from agent.spool import Spool

    path = data / "spool.sqlite"
    if not path.exists():
        return []
    spool = Spool(path)
    try:
        return [ResultEnvelope.from_json(p.payload) for p in spool.due(1000, resend_after_s=-1e9)]
    finally:
        spool.close()


def hostile_payloads() -> list[tuple[str, bytes]]:
    valid = Command(command_id="x", action="check_now", expires_at=utcnow() + timedelta(minutes=5))

    def forged(**over: Any) -> bytes:
        data = json.loads(valid.model_dump_json(by_alias=True))
        data.update(over)
        return json.dumps(data).encode()

    return [
        ("garbage", b"\x00\xff\xfe not json at all"),
        ("truncated", b'{"schema": 1, "command_id": "t", "action": "check_'),
        ("huge", forged(command_id="huge", checks=["link"] * 20000)),  # ~160 kB, under the broker's limit
        ("many checks", forged(command_id="many", checks=["link"] * 500)),
        ("unknown action", forged(command_id="act", action="reboot")),
        ("expired", forged(command_id="old", expires_at=(utcnow() - timedelta(hours=1)).isoformat())),
        ("far future", forged(command_id="future", expires_at="9999-12-31T23:59:59-23:59")),
        ("before time", forged(command_id="past", expires_at="0001-01-01T00:00:00+23:59")),
        ("not an object", b"[1, 2, 3]"),
        ("deep nesting", b"[" * 3000 + b"]" * 3000),
    ]


def test_agent_survives_any_command_payload_and_remote_throughput_keeps_the_budget(tls: TLSFleet) -> None:
    """Garbage, huge, unknown action, expired, far-future and before-time expiries published as the
    collector to an agent's command topic: each is logged and ignored, the agent keeps working, and
    the real command that follows runs with its throughput test skipped for the spent data budget
    (on main the far-future expiry killed the agent's network thread, and a remote throughput test
    ignored the budget)."""
    cert = tls.enrol("hostile-gw", "hostile-gw-line", "s1")
    data = tls.root / "hostile-data"
    data.mkdir()
    # Today's budget is spent: 150 of 100 MB (the state the scheduler keeps across restarts).
    today = datetime.now().date().isoformat()
    (data / "schedule-state.json").write_text(json.dumps(
        {"day": today, "day_bytes": 150_000_000, "last_throughput_bytes": 40_000_000}))
    log = tls.root / "agent.log"
    agent = start("agent.cli", "run", "--config", str(agent_yaml(tls, "hostile-gw", cert, data)), log=log)
    sender = None
    try:
        wait_for(lambda: "connected to 127.0.0.1" in log.read_text(), 30, "the agent connected")
        sender = Probe(tls, tls.collector_cert, broker_config.COLLECTOR_IDENTITY)
        for name, payload in hostile_payloads():
            assert sender.publish(commands_topic("hostile-gw"), payload) == 0, name
        real = Command(command_id=new_result_id(), action="check_now", checks=["link", "throughput"],
                       expires_at=utcnow() + timedelta(minutes=5), reason="after the garbage")
        # retained, as the collector sends it: it reaches the agent even if its subscription came late
        assert sender.publish(commands_topic("hostile-gw"), real.model_dump_json(by_alias=True), retain=True) == 0
        (env,) = wait_for(lambda: [e for e in spooled(data) if e.trigger_info.get("command_id") == real.command_id],
                          60, "the real command's result")
        assert agent.poll() is None  # still running
        assert env.trigger is Trigger.REMOTE
        by_kind = {c.kind: c for c in env.checks}
        assert by_kind["link"].status is not Status.SKIPPED
        assert by_kind["throughput"].status is Status.SKIPPED
        assert "daily data budget" in (by_kind["throughput"].reason or "")
        assert not by_kind["throughput"].metrics  # never a zero rate
        text = log.read_text()
        assert text.count("ignoring malformed command") >= 5
        assert "ignoring oversized command" in text
        assert text.count("refused: expired") == 2 and "max_ttl_s" in text
        assert "500 checks named; at most 32" in text
        assert "Traceback" not in text
    finally:
        if sender is not None:
            sender.close()
        stop(agent)


def test_remote_and_retest_throughput_count_and_respect_the_budget(tmp_path: Path) -> None:
    now = [datetime(2026, 3, 2, 10, 0).timestamp()]
    s = Scheduler(ScheduleConfig(throughput_interval_s=0, daily_data_budget_mb=1000), tmp_path / "state.json",
                  clock=lambda: now[0])
    kinds = ["link", "throughput"]

    def tp_result(trigger: Trigger, moved: int) -> ResultEnvelope:
        return ResultEnvelope(result_id=new_result_id(), agent_id="gw", seq=1, line_id="l", site_id="s",
                              trigger=trigger, started_at=utcnow(), ended_at=utcnow(), agent_version="t",
                              checks=[CheckResult(kind="throughput", status=Status.OK, duration_s=10,
                                                  metrics={"bytes_total": moved})])

    assert s.plan(Trigger.REMOTE, kinds).skip == {}
    s.record(tp_result(Trigger.REMOTE, 450_000_000))  # remote tests are counted ...
    s.record(tp_result(Trigger.RETEST, 450_000_000))
    for trigger in (Trigger.REMOTE, Trigger.RETEST, Trigger.SCHEDULE):  # ... and held to the budget
        reason = s.plan(trigger, kinds).skip.get("throughput")
        assert reason and "daily data budget: 900 of 1000 MB" in english(reason), trigger
    assert s.plan(Trigger.REMOTE, ["link"]).skip == {}  # a check without throughput is not affected
    assert s.plan(Trigger.MANUAL, kinds).skip == {}  # someone at the gateway itself may go over it
