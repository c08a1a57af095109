"""config/mosquitto.conf as shipped (paths and port rewritten): per-agent passwords and ACL, a packet
limit consistent with the agents' size cap, and persistence that keeps the collectors' queue."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import AgentConfig
from collector.config import CollectorConfig
from collector.ingest.worker import Ingestor
from collector.store.database import Store
from linecheck.wire import results_topic
from tests.faultkit import make_envelope, stored_seqs
from tests.helpers import wait_for
from tests.mosquitto import free_port, wait_port
from tests.test_publisher import Running

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "config" / "mosquitto.conf"
USERS = {"gw-1": "pw-one", "gw-2": "pw-two", "linecheck-collector": "pw-collector"}


class PasswordBroker:
    def __init__(self, work: Path):
        if not shutil.which("mosquitto") or not shutil.which("mosquitto_passwd"):
            pytest.skip("mosquitto (and mosquitto_passwd) are not installed")
        self.work = work
        self.port = free_port()
        passwd = work / "passwd"
        passwd.touch()
        for user, password in USERS.items():
            subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True,
                           capture_output=True)
            (work / f"{user}.pw").write_text(password)
        text = CONF.read_text()
        rewrites = {  # the shipped file, with this machine's paths (each must still be in the file)
            "user mosquitto": "user root",
            "persistence_location /var/lib/mosquitto/": f"persistence_location {work}/",
            "password_file /etc/mosquitto/linecheck.passwd": f"password_file {passwd}",
            "acl_file /etc/mosquitto/linecheck.acl": f"acl_file {ROOT / 'config' / 'mosquitto.acl'}",
            "listener 1883 127.0.0.1": f"listener {self.port} 127.0.0.1",
            "log_dest syslog": f"log_dest file {work}/mosquitto.log",
        }
        for old, new in rewrites.items():
            assert re.search(f"^{re.escape(old)}$", text, re.M), f"config/mosquitto.conf no longer has {old!r}"
            text = re.sub(f"^{re.escape(old)}$", new, text, flags=re.M)
        self.conf = work / "mosquitto.conf"
        self.conf.write_text(text)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # a clean stop writes the persistence file
            self.proc.wait(10)


@pytest.fixture
def pw_broker(tmp_path: Path) -> Iterator[PasswordBroker]:
    b = PasswordBroker(tmp_path)
    b.start()
    yield b
    b.stop()


def _agent(tmp: Path, b: PasswordBroker, agent_id: str) -> AgentConfig:
    return AgentConfig.model_validate({
        "agent_id": agent_id, "line_id": "l", "site_id": "s", "data_dir": str(tmp / agent_id),
        "mqtt": {"port": b.port, "username": agent_id, "password_file": str(b.work / f"{agent_id}.pw"),
                 "keepalive_s": 5, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5, "resend_after_s": 1}})


class Collector:
    def __init__(self, tmp: Path, b: PasswordBroker):
        self.cfg = CollectorConfig.model_validate({
            "database": f"sqlite:///{tmp}/c.db",
            "mqtt": {"port": b.port, "username": "linecheck-collector", "keepalive_s": 5,
                     "password_file": str(b.work / "linecheck-collector.pw")}})
        self.db = tmp / "c.db"
        self.store = Store(self.cfg.database)
        self.ingestor = Ingestor(self.cfg, self.store)
        self.thread = threading.Thread(target=self.ingestor.run, daemon=True)

    def __enter__(self) -> Collector:
        self.thread.start()
        wait_for(self.ingestor.subscribed.is_set, 10, "the collector's subscription")
        return self

    def __exit__(self, *_: object) -> None:
        self.ingestor.stop()
        self.thread.join(10)
        self.store.close()


def _connect(port: int, user: str | None, password: str | None) -> tuple[mqtt.Client, list[object]]:
    outcome: list[object] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{user}")
    if user:
        c.username_pw_set(user, password)
    c.on_connect = lambda _c, _u, _f, reason, _p: outcome.append(reason)
    c.on_disconnect = lambda _c, _u, _f, reason, _p: outcome.append(("disconnected", reason))
    c.connect("127.0.0.1", port, keepalive=5)
    c.loop_start()
    wait_for(lambda: outcome, 10, "CONNACK")
    return c, outcome


def test_per_agent_passwords_and_acl_end_to_end(tmp_path: Path, pw_broker: PasswordBroker) -> None:
    anon, outcome = _connect(pw_broker.port, None, None)
    assert getattr(outcome[0], "is_failure", False), "anonymous clients must be refused"
    anon.loop_stop()
    wrong, outcome = _connect(pw_broker.port, "gw-1", "not-the-password")
    assert getattr(outcome[0], "is_failure", False)
    wrong.loop_stop()
    with Collector(tmp_path, pw_broker) as col, Running(_agent(tmp_path, pw_broker, "gw-1")) as gw1:
        env = gw1.spool.enqueue(make_envelope("gw-1"))
        gw1.publisher.wake.set()
        wait_for(lambda: gw1.spool.count() == 0, 20, "the receipt through the password broker")
        assert stored_seqs(col.db, "gw-1") == [env.seq]
        # gw-2 writing into gw-1's subtree: the broker drops it (ACL), the collector never sees it.
        intruder, outcome = _connect(pw_broker.port, "gw-2", "pw-two")
        forged = make_envelope("gw-1").model_copy(update={"seq": 99})
        intruder.publish(results_topic("gw-1"), forged.to_json(), qos=1).wait_for_publish(5)
        own = make_envelope("gw-2").model_copy(update={"seq": 1})
        intruder.publish(results_topic("gw-2"), own.to_json(), qos=1).wait_for_publish(5)
        wait_for(lambda: stored_seqs(col.db, "gw-2") == [1], 10, "gw-2's own result")
        assert stored_seqs(col.db, "gw-1") == [env.seq]
        intruder.loop_stop()


def test_packet_limit_admits_every_result_an_agent_accepts(tmp_path: Path, pw_broker: PasswordBroker) -> None:
    limit = int(re.search(r"^max_packet_size (\d+)$", CONF.read_text(), re.M).group(1))  # type: ignore[union-attr]
    agent_cap = AgentConfig.model_fields["mqtt"].default_factory().max_payload_bytes  # type: ignore[misc]
    ingest_cap = CollectorConfig().ingest.max_payload_bytes
    topic = results_topic("x" * 64)  # the longest agent topic
    assert ingest_cap == agent_cap and limit >= agent_cap + len(topic) + 2 + 2 + 5  # topic len, mid, fixed header
    client, outcome = _connect(pw_broker.port, "gw-1", "pw-one")
    info = client.publish(results_topic("gw-1"), b"x" * agent_cap, qos=1)
    info.wait_for_publish(5)
    assert info.is_published() and not [o for o in outcome[1:] if isinstance(o, tuple)]
    client.publish(results_topic("gw-1"), b"x" * limit, qos=1)  # larger than any agent sends
    wait_for(lambda: [o for o in outcome[1:] if isinstance(o, tuple)], 10, "the broker to drop the connection")
    client.loop_stop()


def test_persistence_keeps_the_collectors_queue_across_a_restart(tmp_path: Path, pw_broker: PasswordBroker) -> None:
    with Collector(tmp_path, pw_broker):
        pass  # the collector's persistent session now exists; it is away from here on
    client, _ = _connect(pw_broker.port, "gw-1", "pw-one")
    env = make_envelope("gw-1").model_copy(update={"seq": 1})
    client.publish(results_topic("gw-1"), env.to_json(), qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
    pw_broker.stop()
    pw_broker.start()
    with Collector(tmp_path, pw_broker) as col:
        wait_for(lambda: stored_seqs(col.db, "gw-1") == [1], 15, "the queued result after the restart")
