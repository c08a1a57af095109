"""The rig bench/agent_footprint.py measures the agent in: an emulated office line with the carrier's
services, a private broker and collector, and an MQTT observer that sees what the agent publishes.

    [gw ns] linecheck-agent run ──wan0 (tbf down/up)── [carrier ns] linecheck-testserver (HTTP + STAMP),
                                                                    DNS, HTTP/HTTPS, 2 routers beyond
            └──────────────mgmt0 (management link)───────────────── mosquitto, linecheck-collector

Everything is real (tests/lab.py's namespaces, the real test server, Mosquitto and collector) and
stays inside the lab's namespaces (198.18.0.0/15); the observer's socket is opened in the carrier
namespace. Ports are picked free (tests/mosquitto.free_port) even though the namespaces are new.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import wait_for
from tests.lab import SERVER6_ADDR, SERVER_ADDR, LineLab
from tests.labdns import LabDNS
from tests.labhttp import LabHTTP, self_signed
from tests.mosquitto import free_port

ROOT = Path(__file__).resolve().parent.parent
DNS_ADDR = "198.18.1.53"
AGENT_ID = "footprint-gw"
REF_TOPIC = "footprint/reference/status"


class Observer:
    """An MQTT client in the carrier namespace: records when each message on the agent's topics (and
    the reference client's) arrives, and sends commands as the collector would."""

    def __init__(self, lab: LineLab, host: str, port: int):
        self.messages: queue.SimpleQueue[tuple[float, str, bytes]] = queue.SimpleQueue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"footprint-observer-{uuid.uuid4().hex[:6]}")
        self.client.on_message = lambda _c, _u, msg: self.messages.put((time.monotonic(), msg.topic, msg.payload))
        subscribed = []
        self.client.on_subscribe = lambda *_a: subscribed.append(True)
        with lab.inside(lab.carrier):  # the socket lives in the carrier namespace
            self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe([(f"linecheck/v1/agents/{AGENT_ID}/#", 1), (REF_TOPIC, 1)])
        wait_for(lambda: subscribed, 10, "the observer's subscription")

    def next(self, topic_suffix: str, deadline_s: float, payload_has: bytes = b"") -> tuple[float, bytes]:
        """The next message on a topic ending in `topic_suffix` (and containing `payload_has`)."""
        end = time.monotonic() + deadline_s
        while True:
            try:
                at, topic, payload = self.messages.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no message on …{topic_suffix} within {deadline_s:g} s") from None
            if topic.endswith(topic_suffix) and payload_has in payload:
                return at, payload

    def check_now(self) -> float:
        """Publish a check_now command for the agent, as `linecheck-collector command` does; returns when."""
        body = {"schema": 1, "command_id": uuid.uuid4().hex, "action": "check_now",
                "expires_at": (datetime.now(UTC) + timedelta(minutes=10)).isoformat(), "reason": "footprint bench"}
        sent = time.monotonic()
        self.client.publish(f"linecheck/v1/agents/{AGENT_ID}/commands", json.dumps(body), qos=1).wait_for_publish(10)
        return sent

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Rig:
    """The lab, its services and the agent's config. Use as a context manager; tears everything down."""

    def __init__(self, workdir: Path, down_mbit: float, up_mbit: float):
        self.workdir = workdir
        self.down_mbit, self.up_mbit = down_mbit, up_mbit
        self.lab = LineLab()
        self._servers: list[Any] = []
        self._logs: list[Any] = []
        self.observer: Observer | None = None

    def __enter__(self) -> Rig:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(self, name: str) -> Any:
        fh = (self.workdir / f"{name}.log").open("ab")
        self._logs.append(fh)
        return fh

    def _build(self) -> None:
        lab = self.lab.__enter__()
        lab.shape(self.down_mbit, self.up_mbit)
        far = lab.add_router_chain(2)
        lab.enable_ipv6()
        self.broker_host = lab.add_management_link()
        lab.add_address(lab.carrier, DNS_ADDR)
        lab.sh(lab.gw, "ip link add lan0 type veth peer name lan0p; ip link set lan0 up; ip link set lan0p up")
        lab.set_resolv_conf(lab.gw, f"nameserver {DNS_ADDR}\n")
        cert, key = self_signed(self.workdir, SERVER_ADDR)
        with lab.inside(lab.carrier):
            self._servers += [LabDNS(DNS_ADDR, 53, {"www.lab.test": [SERVER_ADDR]}).start(),
                              LabHTTP(SERVER_ADDR, 80).start(), LabHTTP(SERVER_ADDR, 443, cert=(cert, key)).start()]
        self.broker_port, http_port, stamp_port = free_port(), free_port(), free_port()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.broker_port} {self.broker_host}\nallow_anonymous true\nuser root\n"
                        f"log_dest file {self.workdir}/mosquitto.log\n")
        lab.popen(lab.carrier, [shutil.which("mosquitto") or "mosquitto", "-c", str(conf)],
                  stdout=self.log("mosquitto-out"), stderr=subprocess.STDOUT)
        server = lab.popen(lab.carrier, [str(Path(sys.executable).parent / "linecheck-testserver"),
                                         "--listen", f"{SERVER_ADDR}:{http_port}",
                                         "--stamp-listen", f"{SERVER_ADDR}:{stamp_port}"],
                           stdout=subprocess.PIPE, stderr=self.log("testserver"))
        assert server.stdout is not None
        line = server.stdout.readline()
        if b"listening" not in line:
            raise RuntimeError(f"linecheck-testserver did not start: {line!r} (see {self.workdir}/testserver.log)")
        ccfg = self.workdir / "collector.yaml"
        ccfg.write_text(f"database: sqlite:///{self.workdir}/collector.db\n"
                        f"mqtt: {{host: {self.broker_host}, port: {self.broker_port}}}\nhttp: {{enabled: false}}\n")
        clog = self.workdir / "collector.log"
        lab.popen(lab.carrier, [str(Path(sys.executable).parent / "linecheck-collector"), "serve", "--config",
                                str(ccfg)], stdout=self.log("collector"), stderr=subprocess.STDOUT)
        wait_for(lambda: "collector connected" in clog.read_text(errors="replace"), 60, "the collector")
        self.observer = Observer(lab, self.broker_host, self.broker_port)
        self.agent_config = self.workdir / "agent.yaml"
        self.agent_config.write_text(
            f"agent_id: {AGENT_ID}\nline_id: footprint-line\nsite_id: footprint-site\n"
            f"data_dir: {self.workdir}/agent-data\n"
            f"line: {{wan_interface: wan0, lan_interfaces: [lan0], test_server: '{SERVER_ADDR}:{http_port}',"
            f" plan_down_mbps: {self.down_mbit:g}, plan_up_mbps: {self.up_mbit:g}}}\n"
            f"mqtt: {{host: {self.broker_host}, port: {self.broker_port}}}\n"
            # No scheduled check inside the measured window: the bench asks for the one full check itself.
            "schedule: {first_delay_s: 86400}\n"
            "checks:\n"
            "  link: {}\n"
            "  ping: {targets: [gateway, test_server]}\n"
            f"  udp_latency: {{port: {stamp_port}}}\n"
            "  dns: {resolvers: [system], names: [www.lab.test]}\n"
            "  gateway: {}\n"
            "  pmtu: {}\n"
            f"  traceroute: {{target: {far}, max_hops: 6}}\n"
            f"  ipv6: {{target: '{SERVER6_ADDR}'}}\n"
            f"  http: {{urls: ['http://www.lab.test/', 'https://{SERVER_ADDR}/'], ca_file: {cert}}}\n"
            "  service_state: {probe_url: 'http://www.lab.test/generate_204', dns_name: www.lab.test,"
            f" dns_expect: ['{SERVER_ADDR}']}}\n"
            "  wifi: {}\n"
            "  throughput: {}\n")

    def start_agent(self) -> subprocess.Popen[bytes]:
        """`linecheck-agent run` in the gateway namespace (`ip netns exec` execs: same pid)."""
        argv = [str(Path(sys.executable).parent / "linecheck-agent"), "run", "--config", str(self.agent_config)]
        return self.lab.popen(self.lab.gw, argv, stdout=self.log("agent"), stderr=subprocess.STDOUT)

    def start_reference(self) -> subprocess.Popen[bytes]:
        """The reference: a bare interpreter that imports paho, connects to the same broker from the
        same namespace and publishes a retained status, then waits (for stdin to close)."""
        code = ("import sys, paho.mqtt.client as m\nfrom paho.mqtt.enums import CallbackAPIVersion\n"
                "c = m.Client(CallbackAPIVersion.VERSION2, client_id='footprint-reference')\n"
                f"c.connect({self.broker_host!r}, {self.broker_port})\nc.loop_start()\n"
                f"c.publish({REF_TOPIC!r}, b'{{\"state\":\"online\"}}', qos=1, retain=True).wait_for_publish(10)\n"
                "sys.stdin.read()\n")
        return self.lab.popen(self.lab.gw, [sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=self.log("reference"), stderr=subprocess.STDOUT)

    def close(self) -> None:
        if self.observer is not None:
            with contextlib.suppress(Exception):
                self.observer.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                server.stop()
        for proc in self.lab._procs:  # agent and services first, gently, so they can say goodbye
            if proc.poll() is None:
                proc.terminate()
        for proc in self.lab._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.lab.close()
        for fh in self._logs:
            fh.close()
