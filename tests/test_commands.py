"""Remote-triggered checks: the agent's command checks, and end to end over a real Mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from agent.commands import CommandInbox
from agent.config import CommandsConfig
from agent.spool import Spool
from collector.commands.publish import make_command
from collector.fleet.broker_config import acl_text
from linecheck.wire import Command, ResultEnvelope, Trigger, commands_topic, status_topic, utcnow
from tests.helpers import collector_config, start, stop, wait_for
from tests.mosquitto import Broker, running_broker

AGENT = "gw-cmd"


def inbox(tmp_path: Path, runs: list[tuple[Trigger, list[str] | None, dict[str, Any]]],
          **cfg: float) -> CommandInbox:
    return CommandInbox(CommandsConfig(**cfg), AGENT, ["link", "ping"], tmp_path / "commands-seen.json",
                        lambda t, c, i: runs.append((t, c, i)))


def command(action: str = "check_now", ttl_s: float = 600, **over: Any) -> Command:
    base = make_command(action, ttl_s=ttl_s)
    return base.model_copy(update=over)


def run_queue(box: CommandInbox) -> None:
    box.start()
    box.stop()
    assert box._worker is not None
    box._worker.join(10)


# --- the agent's own checks ------------------------------------------------------------------------
def test_accepted_command_runs_once_with_trigger_and_id(tmp_path: Path) -> None:
    runs: list = []
    box = inbox(tmp_path, runs)
    now_cmd = command("check_now", reason="ticket T-17")
    retest = command("retest", checks=["link"])
    assert box.submit(commands_topic(AGENT), now_cmd).accepted
    assert box.submit(commands_topic(AGENT), retest).accepted
    assert not box.submit(commands_topic(AGENT), now_cmd).accepted  # redelivered: same id
    run_queue(box)
    assert runs == [
        (Trigger.REMOTE, None, {"command_id": now_cmd.command_id, "command_action": "check_now",
                                "command_reason": "ticket T-17"}),
        (Trigger.RETEST, ["link"], {"command_id": retest.command_id, "command_action": "retest"}),
    ]


def test_ids_are_remembered_across_restarts(tmp_path: Path) -> None:
    cmd = command()
    assert inbox(tmp_path, []).submit(commands_topic(AGENT), cmd).accepted
    decision = inbox(tmp_path, []).submit(commands_topic(AGENT), cmd)  # a retained copy after restart
    assert not decision.accepted and "duplicate" in decision.reason


@pytest.mark.parametrize("make, topic, expected", [
    (lambda: command(expires_at=utcnow() - timedelta(seconds=1)), commands_topic(AGENT), "expired"),
    (lambda: command(ttl_s=30 * 86400), commands_topic(AGENT), "max_ttl_s"),
    (lambda: command(checks=["throughput"]), commands_topic(AGENT), "not configured on this agent: throughput"),
    (lambda: command(), commands_topic("gw-other"), "not this agent's command topic"),
])
def test_refused_commands_do_not_run(tmp_path: Path, make: Any, topic: str, expected: str) -> None:
    runs: list = []
    box = inbox(tmp_path, runs)
    decision = box.submit(topic, make())
    assert not decision.accepted and expected in decision.reason
    run_queue(box)
    assert runs == []


def test_malformed_command_is_ignored(tmp_path: Path) -> None:
    runs: list = []
    box = inbox(tmp_path, runs)
    msg = mqtt.MQTTMessage(topic=commands_topic(AGENT).encode())
    msg.payload = b'{"action": "rm -rf", "command_id": "x"}'
    box.on_message(None, None, msg)
    run_queue(box)
    assert runs == [] and box.decisions == []


# --- end to end over Mosquitto -----------------------------------------------------------------------
def agent_yaml(tmp_path: Path, port: int, mqtt_extra: str = "") -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        f"agent_id: {AGENT}\nline_id: {AGENT}-line\nsite_id: s1\ndata_dir: {tmp_path}/data\n"
        f"mqtt: {{host: 127.0.0.1, port: {port}, resend_after_s: 5{mqtt_extra}}}\n"
        "schedule: {interval_s: 3600, jitter_s: 0, first_delay_s: 3600}\n"
        "idle: {sample_s: 1}\n"
        "checks:\n  link: {window_s: 0.1}\n  ping: {targets: [127.0.0.1], count: 2, interval_s: 0.05}\n")
    return path


def spooled(tmp_path: Path) -> list[ResultEnvelope]:
    path = tmp_path / "data" / "spool.sqlite"
    if not path.exists():
        return []
    spool = Spool(path)
    try:
        return [ResultEnvelope.from_json(p.payload) for p in spool.due(1000, resend_after_s=-1e9)]
    finally:
        spool.close()


def by_command(tmp_path: Path, command_id: str) -> list[ResultEnvelope]:
    return [e for e in spooled(tmp_path) if e.trigger_info.get("command_id") == command_id]


def wait_online(port: int, agent: str, **auth: str) -> None:
    """Subscribe to the agent's retained status and wait for 'online' (it is then subscribed too)."""
    seen = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    if auth:
        client.username_pw_set(auth["user"], auth["password"])
    client.on_connect = lambda c, *_: c.subscribe(status_topic(agent), 1)
    client.on_message = lambda _c, _u, m: seen.set() if b"online" in m.payload else None
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert seen.wait(20), f"{agent} never came online"
    finally:
        client.disconnect()
        client.loop_stop()


def publish_raw(port: int, topic: str, payload: bytes, **auth: str) -> Any:
    """Publish as some client (MQTT 5, so a refusal comes back as a PUBACK reason code)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if auth:
        client.username_pw_set(auth["user"], auth["password"])
    codes: list[Any] = []
    client.on_publish = lambda _c, _u, _mid, reason, _p: codes.append(reason)
    client.connect("127.0.0.1", port, properties=Properties(1))  # PacketTypes.CONNECT
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
        wait_for(lambda: codes, 10, "the PUBACK")
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0]


def register_agent(ccfg: Path) -> None:
    """Put the test's gateway in the collector's registry: `command` refuses agents it does not know."""
    from collector.cli.program import main

    registry = ccfg.with_name("registry.yaml")
    registry.write_text(f"tenants: [{{tenant_id: t1, name: T1, kind: carrier}}]\n"
                        f"sites: [{{site_id: s1, tenant_id: t1, name: S1}}]\n"
                        f"lines: [{{line_id: {AGENT}-line, tenant_id: t1, site_id: s1}}]\n"
                        f"agents: [{{agent_id: {AGENT}, line_id: {AGENT}-line}}]\n")
    assert main(["registry", "import", "--config", str(ccfg), str(registry)]) == 0


def send_cli(ccfg: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "collector.cli", "command", "--config", str(ccfg), *args],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[2]  # "sent ACTION ID to AGENT, ..."


@pytest.mark.broker
def test_remote_check_end_to_end_runs_once_and_ignores_expired(broker: Broker, tmp_path: Path) -> None:
    agent = start("agent.cli", "run", "--config", str(agent_yaml(tmp_path, broker.port)), log=tmp_path / "agent.log")
    try:
        wait_online(broker.port, AGENT)
        ccfg = collector_config(tmp_path, broker.port)
        register_agent(ccfg)
        first = send_cli(ccfg, "--agent", AGENT, "check_now", "--reason", "ticket T-1")
        (env,) = wait_for(lambda: by_command(tmp_path, first), 30, "the remote check's result")
        assert env.trigger is Trigger.REMOTE and env.trigger_info["command_reason"] == "ticket T-1"
        # (plus the spool's `agent` pseudo-check, which every spooled result carries)
        assert {c.kind for c in env.checks} == {"link", "ping", "agent"}

        # The same command again (a redelivery), then an expired one, then a fresh retest.
        original = next(iter(by_command(tmp_path, first)))
        dup = make_command("check_now").model_copy(update={"command_id": first})
        expired = make_command("check_now").model_copy(update={"expires_at": utcnow() - timedelta(minutes=1)})
        publish_raw(broker.port, commands_topic(AGENT), dup.model_dump_json(by_alias=True).encode())
        publish_raw(broker.port, commands_topic(AGENT), expired.model_dump_json(by_alias=True).encode())
        retest = send_cli(ccfg, "--agent", AGENT, "retest", "--check", "link", "--ttl", "120")
        (again,) = wait_for(lambda: by_command(tmp_path, retest), 30, "the retest's result")
        assert again.trigger is Trigger.RETEST and [c.kind for c in again.checks] == ["link", "agent"]
        assert by_command(tmp_path, first) == [original]  # ran once
        assert by_command(tmp_path, expired.command_id) == []
        log = (tmp_path / "agent.log").read_text()
        assert "refused: already received" in log and "refused: expired" in log
    finally:
        stop(agent)


@pytest.mark.broker
def test_broker_acl_stops_a_forged_command_from_another_identity(tmp_path: Path) -> None:
    import shutil

    if not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto_passwd is not installed")
    workdir = tmp_path / "broker"
    workdir.mkdir()
    passwords = {"linecheck-collector": "c-secret", "linecheck.commands": "k-secret", AGENT: "a-secret",
                 "gw-intruder": "i-secret"}
    pwfile = workdir / "passwd"
    for i, (user, pw) in enumerate(passwords.items()):
        subprocess.run(["mosquitto_passwd", "-b", *([] if i else ["-c"]), str(pwfile), user, pw], check=True)
    for user, pw in passwords.items():
        (tmp_path / f"{user}.pw").write_text(pw)
    acl = workdir / "acl"
    # The fleet's generated ACL: each agent only its own subtree; only the collector and the command
    # identity write commands.
    acl.write_text(acl_text(["linecheck-collector"], []))
    extra = f"allow_anonymous false\npassword_file {pwfile}\nacl_file {acl}\n"
    with running_broker(workdir, extra) as b:
        cfg = agent_yaml(tmp_path, b.port, f", username: {AGENT}, password_file: {tmp_path}/{AGENT}.pw")
        agent = start("agent.cli", "run", "--config", str(cfg), log=tmp_path / "agent.log")
        try:
            wait_online(b.port, AGENT, user="linecheck-collector", password="c-secret")
            forged = make_command("check_now", reason="forged")
            reason = publish_raw(b.port, commands_topic(AGENT), forged.model_dump_json(by_alias=True).encode(),
                                 user="gw-intruder", password="i-secret")
            assert reason.value == 0x87, reason  # "Not authorized": the broker dropped it
            ccfg = collector_config(tmp_path, b.port, username="linecheck-collector",
                                    password_file=str(tmp_path / "linecheck-collector.pw"))
            with ccfg.open("a") as f:  # commands never connect as ingest: they have an identity of their own
                f.write("commands: {username: linecheck.commands, "
                        f"password_file: {tmp_path}/linecheck.commands.pw}}\n")
            register_agent(ccfg)
            legit = send_cli(ccfg, "--agent", AGENT, "check_now")
            wait_for(lambda: by_command(tmp_path, legit), 30, "the collector's command to run")
            assert by_command(tmp_path, forged.command_id) == []
            assert "forged" not in json.dumps([e.trigger_info for e in spooled(tmp_path)])
        finally:
            stop(agent)


def test_a_persons_command_and_a_rules_retest_leave_through_one_path(broker: Broker, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The desk (API, console, CLI) and the rules' outbox publish with one function and log one line:
    both commands arrive retained on the agent's topic, and one logger names who asked for each."""
    from collector import config as collector_config_module
    from collector.commands import queue
    from collector.commands.desk import CommandDesk, own_connection
    from collector.store.database import Store
    from linecheck.mqtt_client import build_client

    cfg = collector_config_module.load(str(collector_config(tmp_path, broker.port)))
    store = Store(cfg.database)
    ingest_like = build_client("test-outbox")  # the outbox publishes on ingest's connection in serve
    ingest_like.connect("127.0.0.1", broker.port)
    ingest_like.loop_start()
    try:
        with caplog.at_level("INFO", logger="collector.commands"):
            person = CommandDesk(cfg, store.engine, own_connection(cfg))("gw-one", "check_now", ["ping"], "ticket 1",
                                                                          requested_by="cli:alice")
            with store.engine.begin() as conn:
                rule = queue.queue(conn, agent_id="gw-two", action="retest", ttl_s=600, reason="re-test of ping")
            assert queue.Outbox(store.engine, ingest_like).publish_due() == 1
        got: dict[str, Command] = {}
        reader = build_client("test-reader")
        reader.on_connect = lambda c, *_: c.subscribe([(commands_topic("gw-one"), 1), (commands_topic("gw-two"), 1)])
        reader.on_message = lambda _c, _u, m: got.__setitem__(m.topic, Command.model_validate_json(m.payload))
        reader.connect("127.0.0.1", broker.port)
        reader.loop_start()
        try:
            wait_for(lambda: len(got) == 2 or None, 10, "both retained commands")
        finally:
            reader.disconnect()
            reader.loop_stop()
        assert got[commands_topic("gw-one")].command_id == person
        assert got[commands_topic("gw-two")].command_id == rule and got[commands_topic("gw-two")].action == "retest"
        sent = [r.getMessage() for r in caplog.records if r.name == "collector.commands"]
        assert any(person in m and "requested by cli:alice" in m for m in sent), sent
        assert any(str(rule) in m and "requested by rules" in m for m in sent), sent
    finally:
        ingest_like.disconnect()
        ingest_like.loop_stop()
        store.close()
