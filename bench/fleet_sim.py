"""Fleet simulator: N virtual agents in one process, publishing results and honouring receipts.

    .venv/bin/python -m bench.fleet_sim --port 1883 --agents 1000 --results 5000 [--rate 500] [--wait 60]

Each virtual agent has its own agent id, line, per-agent sequence counter, results topic
(`linecheck/v1/agents/<id>/results`) and receipts subscription; a few MQTT connections carry them
all (one paho client per agent would cost a thread and a socket each, and the broker sees the same
topics either way). Results are real `linecheck.wire.ResultEnvelope`s with varied checks: most
lines are healthy (link, ping, DNS; a throughput test on every fourth result; a weak-WiFi warning on
every tenth that never adds up to a ticket), every `down_every`-th line is down and every
`latency_every`-th has high latency on every result, so the collector's default rules open exactly
one ticket per faulty line once it has enough results (`expected_tickets`).

Like the real agent publisher (agent/publisher.py) a result stays in flight until its receipt
arrives, at most `max_inflight` per agent are out at once, and one not receipted within
`resend_after_s` is published again, waiting twice as long after each attempt. Other benches
import `FleetSim`; the CLI prints sent / receipted / re-sent counts and the rate.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import ssl
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.publisher import ONLINE  # noqa: E402
from linecheck.mqtt_client import Failover  # noqa: E402
from linecheck.wire import (  # noqa: E402
    CheckResult,
    ResultEnvelope,
    Status,
    Trigger,
    Verdict,
    new_result_id,
    receipts_topic,
    results_topic,
    status_topic,
)
from tests.factory import finding, link_check, ping_check, throughput_check  # noqa: E402

HEALTHY, LINE_DOWN, HIGH_LATENCY = "healthy", "line_down", "high_latency"
# Results needed before the default rules open a ticket (collector/rules/engine.py DEFAULT_RULES: M of N).
TICKET_AFTER = {LINE_DOWN: 2, HIGH_LATENCY: 3}
SUBSCRIBE_CHUNK = 500  # topics per SUBSCRIBE packet
REPORT_INTERVAL_S = 900  # spacing of one agent's results on its own clock (started_at)


def profile_of(index: int, down_every: int = 50, latency_every: int = 50) -> str:
    """Which kind of line the index-th agent has: every down_every-th is down, then latency_every-th slow."""
    if down_every and index % down_every == 1:
        return LINE_DOWN
    if latency_every and index % latency_every == 2:
        return HIGH_LATENCY
    return HEALTHY


def _dns_check(ok: bool = True) -> CheckResult:
    return CheckResult(kind="dns", status=Status.OK if ok else Status.FAILED, duration_s=0.05,
                       target="198.18.0.53", metrics={"query_ms": 4.0 if ok else None},
                       reason=None if ok else "no answer from 198.18.0.53")


def _wifi_check(rssi: int) -> CheckResult:
    weak = rssi < -75
    return CheckResult(kind="wifi", status=Status.DEGRADED if weak else Status.OK, duration_s=0.3,
                       target="wlan0", metrics={"rssi_dbm": rssi, "bitrate_mbps": 86.7 if weak else 573.5},
                       reason="weak signal on wlan0" if weak else None)


def build_result(agent_id: str, line_id: str, site_id: str, seq: int, at: datetime, profile: str,
                 rng: random.Random) -> ResultEnvelope:
    """One plausible scheduled result of this line's profile (see the module docstring)."""
    checks: list[CheckResult]
    findings = []
    if profile == LINE_DOWN:
        checks = [link_check(up=False), ping_check(100.0), _dns_check(ok=False)]
        findings = [finding("line_down")]
    elif profile == HIGH_LATENCY:
        rtt = rng.uniform(180, 400)
        checks = [link_check(), ping_check(0.0, rtt), _dns_check()]
        checks[1].status = Status.DEGRADED
        checks[1].reason = f"average round trip {rtt:.0f} ms"
        findings = [finding("high_latency", "warning")]
    else:
        checks = [link_check(), ping_check(0.0, round(rng.uniform(2, 12), 2)), _dns_check()]
        if seq % 4 == 0:
            checks.append(throughput_check(round(rng.uniform(440, 490), 1), round(rng.uniform(250, 290), 1)))
        if seq % 10 == 0:  # a weak-WiFi warning now and then: never M of N in a row, so no ticket
            checks.append(_wifi_check(-80))
            findings = [finding("wifi_weak", "warning")]
    return ResultEnvelope(
        result_id=new_result_id(int(at.timestamp() * 1000)), agent_id=agent_id, seq=seq, line_id=line_id,
        site_id=site_id, trigger=Trigger.SCHEDULE, started_at=at, ended_at=at + timedelta(seconds=12),
        agent_version="fleet-sim", checks=checks, findings=findings,
        verdict=Verdict.PROBLEMS if findings else Verdict.HEALTHY)


def expected_tickets(results_per_agent: dict[str, int], profiles: dict[str, str]) -> Counter[str]:
    """Tickets the default rules open: one per faulty line that sent enough results."""
    made: Counter[str] = Counter()
    for agent_id, n in results_per_agent.items():
        profile = profiles[agent_id]
        if profile in TICKET_AFTER and n >= TICKET_AFTER[profile]:
            made[profile] += 1
    return made


@dataclass
class _Flight:
    sent_at: float
    attempts: int
    timeout_s: float


@dataclass(eq=False)  # hashed by identity: agents sit in sets
class VirtualAgent:
    agent_id: str
    line_id: str
    site_id: str
    profile: str
    conn: int  # which MQTT connection carries it
    seq: int = 0
    backlog: deque[tuple[str, bytes]] = field(default_factory=deque)  # held back by a full window
    payloads: dict[str, bytes] = field(default_factory=dict)  # in flight: result_id -> payload
    inflight: dict[str, _Flight] = field(default_factory=dict)
    results: int = 0  # results built for this agent (= its seq so far)


class FleetSim:
    """Virtual agents over `connections` MQTT clients. Thread-safe counters; see the module docstring."""

    def __init__(self, host: str, port: int, n_agents: int, *, connections: int = 4, prefix: str = "sim",
                 max_inflight: int | None = 20, resend_after_s: float = 60.0, resend_max_s: float = 3600.0,
                 down_every: int = 50, latency_every: int = 50, seed: int = 1, sites: int = 100,
                 brokers: list[tuple[str, int]] | None = None, tls: tuple[Path, Path, Path] | None = None,
                 receipts_wildcard: bool = False, subscribe_qos: int = 1):
        """`brokers`: nodes of a clustered broker; connection i starts on node i mod n and moves to the next
        when its node is lost (like an agent with `mqtt.brokers`). `tls`: (CA, certificate, key) of one
        identity allowed to speak for every virtual agent. `receipts_wildcard`: one subscription to every
        agent's receipts on the first connection instead of one per agent (a broker where each QoS 1
        subscription is a consumer of its own, such as NATS, then carries thousands fewer). `subscribe_qos`: 0 as
        agents subscribe on a NATS cluster (docs/scaling.md)."""
        if n_agents < 1 or connections < 1:
            raise ValueError("n_agents and connections must be at least 1")
        self.host, self.port = host, port
        self.brokers = brokers or [(host, port)]
        self.tls = tls
        self.receipts_wildcard = receipts_wildcard
        self.subscribe_qos = subscribe_qos
        self.failovers = [Failover(self.brokers[i % len(self.brokers):] + self.brokers[:i % len(self.brokers)])
                          for i in range(connections)]
        self.max_inflight = max_inflight
        self.resend_after_s, self.resend_max_s = resend_after_s, resend_max_s
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.agents = [VirtualAgent(f"{prefix}-gw-{i}", f"{prefix}-line-{i}", f"{prefix}-site-{i % sites}",
                                    profile_of(i, down_every, latency_every), i % connections)
                       for i in range(n_agents)]
        self.by_id = {a.agent_id: a for a in self.agents}
        self._lock = threading.Lock()
        self._ack_lock = threading.Lock()
        self.sent = 0  # distinct results published at least once
        self.published = 0  # publications, re-sends included
        self.resent = 0
        self.receipted = 0  # distinct results receipted (any status)
        self.receipt_status: Counter[str] = Counter()  # receipted ids by status (stored/duplicate/quarantined)
        self.acked = 0  # PUBACKs from the broker
        self.total = 0  # results built by preload
        self.first_publish: float | None = None
        self.last_receipt: float | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pump: threading.Thread | None = None
        self._rate: float | None = None
        self._queue: deque[tuple[VirtualAgent, str, bytes]] = deque()  # built, not yet published, in order
        self._freed: set[VirtualAgent] = set()  # agents whose window a receipt opened, with held-back results
        self._resend_check_at = 0.0
        self._built: list[tuple[VirtualAgent, str, bytes]] = []  # every result, for replay()
        self._paused = True  # nothing leaves before run()
        self.clients = [self._client(c) for c in range(connections)]

    # --- connections ----------------------------------------------------------------------------
    def _client(self, index: int) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{self.prefix}-conn-{index}",
                             clean_session=True)
        # Flow control is per virtual agent (max_inflight, as on a real gateway); paho's own window
        # per connection is opened wide so one connection can carry many agents.
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        if self.tls:
            ca, cert, key = self.tls
            client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.user_data_set({"subscribed": threading.Event(), "pending": 0, "index": index})
        client.on_subscribe = self._on_subscribe
        client.on_connect = self._on_connect
        # A lost node: reconnect to the next one (paho's own reconnect, 1-2 s apart).
        client.on_disconnect = lambda c, *_: self.failovers[index].advance(c)
        client.on_connect_fail = lambda c, *_: self.failovers[index].advance(c)
        client.reconnect_delay_set(1, 2)
        return client

    def _topics(self, index: int) -> list[tuple[str, int]]:
        if self.receipts_wildcard:
            return [(receipts_topic("+"), self.subscribe_qos)] if index == 0 else []
        return [(receipts_topic(a.agent_id), self.subscribe_qos) for a in self.agents if a.conn == index]

    def _on_connect(self, client: mqtt.Client, ud: dict, _flags: object, reason: object, _p: object) -> None:
        # A clean session: every (re)connection subscribes afresh (receipts sent meanwhile are lost; the
        # virtual agents re-send what was not receipted, like real ones).
        if getattr(reason, "is_failure", False):
            return
        topics = self._topics(ud["index"])
        chunks = [topics[i:i + SUBSCRIBE_CHUNK] for i in range(0, len(topics), SUBSCRIBE_CHUNK)]
        ud["pending"] = len(chunks)
        if not chunks:
            ud["subscribed"].set()
        for chunk in chunks:
            client.subscribe(chunk)

    def _on_subscribe(self, client: mqtt.Client, ud: dict, _mid: int, reasons: object, _p: object) -> None:
        if any(getattr(r, "is_failure", False) for r in reasons):  # type: ignore[attr-defined]
            # Refused for a moment (a cluster electing after a node's loss): ask again, as agents do.
            timer = threading.Timer(1.0, lambda: self._on_connect(client, ud, None, None, None))
            timer.daemon = True
            timer.start()
            return
        ud["pending"] -= 1
        if ud["pending"] == 0:
            ud["subscribed"].set()

    def connect(self, timeout_s: float = 30.0, status: bool = False) -> None:
        """Connect every client and subscribe each agent to its receipts; returns once the broker confirmed.
        With `status`, every agent also publishes its retained "online" status, as a real agent does
        on each connection (a reconnecting fleet sends the collector one per agent)."""
        for index, client in enumerate(self.clients):
            host, port = self.failovers[index].current
            client.connect(host, port, keepalive=60)  # on_connect subscribes
            client.loop_start()
        end = time.monotonic() + timeout_s
        for client in self.clients:
            if not client.user_data_get()["subscribed"].wait(max(0.0, end - time.monotonic())):
                raise TimeoutError(f"fleet simulator: receipts subscription not confirmed in {timeout_s} s")
        if status:
            infos = [self.clients[a.conn].publish(status_topic(a.agent_id), ONLINE, qos=1, retain=True)
                     for a in self.agents]
            for info in infos:
                info.wait_for_publish(max(0.1, end - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._pump is not None:
            self._pump.join(10)
        for client in self.clients:
            client.disconnect()
            client.loop_stop()

    # --- results --------------------------------------------------------------------------------
    def preload(self, n_results: int, start: datetime | None = None) -> int:
        """Build n_results envelopes round-robin over the agents (each agent's results 15 min apart on
        its clock, the newest just before `start`) and queue them for publishing. Returns the count."""
        start = start or datetime.now(UTC)
        per_agent = -(-n_results // len(self.agents))
        for k, agent in zip(range(n_results), itertools.cycle(self.agents), strict=False):
            agent.seq += 1
            agent.results += 1
            round_no = k // len(self.agents)
            at = start - timedelta(seconds=REPORT_INTERVAL_S * (per_agent - round_no))
            e = build_result(agent.agent_id, agent.line_id, agent.site_id, agent.seq, at, agent.profile, self.rng)
            item = (agent, e.result_id, e.to_json())
            with self._lock:
                self._queue.append(item)
                self._built.append(item)
                self.total += 1
        self._wake.set()
        return n_results

    def replay(self) -> None:
        """Forget what was sent and receipted and queue every built result again, same ids and
        payloads, in the same order (a second run of the same messages, e.g. against another
        subscriber). Publishing pauses until the next run()."""
        with self._lock:
            self._paused = True
            for agent in self.agents:
                agent.inflight.clear()
                agent.payloads.clear()
                agent.backlog.clear()
            self._freed.clear()
            self._queue = deque(self._built)
            self.sent = self.published = self.resent = self.receipted = 0
            self.receipt_status.clear()
            self.first_publish = self.last_receipt = None
        with self._ack_lock:
            self.acked = 0

    def payloads(self) -> list[tuple[str, bytes]]:
        """(topic, payload) of everything queued and not yet sent, in publishing order (for references)."""
        with self._lock:
            return [(results_topic(a.agent_id), p) for a, _, p in self._queue]

    def expected_tickets(self) -> Counter[str]:
        return expected_tickets({a.agent_id: a.results for a in self.agents},
                                {a.agent_id: a.profile for a in self.agents})

    # --- publishing -----------------------------------------------------------------------------
    def _timeout(self, attempts: int) -> float:
        base = min(self.resend_after_s * 2 ** min(attempts - 1, 32), self.resend_max_s)
        return base * self.rng.uniform(0.9, 1.1)

    def _room(self, agent: VirtualAgent) -> bool:
        return self.max_inflight is None or len(agent.inflight) < self.max_inflight

    def _publish(self, agent: VirtualAgent, result_id: str, payload: bytes, now: float) -> None:
        previous = agent.inflight.get(result_id)
        attempts = previous.attempts + 1 if previous else 1
        agent.inflight[result_id] = _Flight(now, attempts, self._timeout(attempts))
        agent.payloads[result_id] = payload
        self.clients[agent.conn].publish(results_topic(agent.agent_id), payload, qos=1)
        self.published += 1
        if previous:
            self.resent += 1
        else:
            self.sent += 1
        if self.first_publish is None:
            self.first_publish = now

    def pump_once(self, budget: int = 2000) -> int:
        """Re-send what timed out, then publish new results (in preload order) within each agent's
        window, at most `budget` publications. Returns how many."""
        done = 0
        now = time.monotonic()
        with self._lock:
            if self._paused:
                return 0
            if now >= self._resend_check_at:  # scanning every flight costs O(in flight): twice a second
                self._resend_check_at = now + 0.5
                for agent in self.agents:
                    for rid, flight in list(agent.inflight.items()):
                        if now - flight.sent_at >= flight.timeout_s:
                            self._publish(agent, rid, agent.payloads[rid], now)
                            done += 1
            while self._freed and done < budget:  # agents a receipt gave room to, with results held back
                agent = self._freed.pop()
                while agent.backlog and self._room(agent) and done < budget:
                    rid, payload = agent.backlog.popleft()
                    self._publish(agent, rid, payload, now)
                    done += 1
                if agent.backlog and self._room(agent):
                    self._freed.add(agent)
            while self._queue and done < budget:
                agent, rid, payload = self._queue.popleft()
                if agent.backlog or not self._room(agent):
                    agent.backlog.append((rid, payload))  # its window is full: it waits for a receipt
                    continue
                self._publish(agent, rid, payload, now)
                done += 1
        return done

    def _next_due(self) -> float:
        with self._lock:
            if (self._queue or self._freed) and not self._paused:
                return 0.0
            soonest = min((f.sent_at + f.timeout_s for a in self.agents for f in a.inflight.values()), default=None)
        return 1.0 if soonest is None else max(0.01, min(1.0, soonest - time.monotonic()))

    def _run_pump(self) -> None:
        while not self._stop.is_set():
            if self._rate is None:
                sent = self.pump_once()
            else:  # pacing: at most rate publications per second, in slices of about 10 ms
                sent = self.pump_once(budget=max(1, int(self._rate / 100)))
                if sent:
                    self._stop.wait(sent / self._rate)
                    continue
            if not sent:
                self._wake.wait(self._next_due())
                self._wake.clear()

    def run(self, rate: float | None = None) -> None:
        """Start publishing in a background thread: everything queued as a burst (rate None) or at
        `rate` results/s; re-sends continue until close()."""
        self._rate = rate
        with self._lock:
            self._paused = False
        if self._pump is None:
            self._pump = threading.Thread(target=self._run_pump, name="fleet-sim-pump", daemon=True)
            self._pump.start()
        self._wake.set()

    def _on_publish(self, _c: mqtt.Client, _ud: object, _mid: int, _rc: object, _p: object) -> None:
        # Its own lock: paho calls this holding its message lock, which publish() (called under
        # self._lock by the pump) takes too; sharing self._lock here would deadlock.
        with self._ack_lock:
            self.acked += 1

    def _on_message(self, _c: mqtt.Client, _ud: object, msg: mqtt.MQTTMessage) -> None:
        # The network thread only does dict work here; parsing a receipt is a few microseconds.
        agent_id = msg.topic.split("/")[3]
        agent = self.by_id.get(agent_id)
        if agent is None:
            return
        receipt = json.loads(msg.payload)
        with self._lock:
            freed = False
            for rid in receipt.get("result_ids", []):
                if agent.inflight.pop(rid, None) is not None:
                    agent.payloads.pop(rid, None)
                    self.receipted += 1
                    self.receipt_status[receipt.get("status", "stored")] += 1
                    freed = True
            if freed:
                self.last_receipt = time.monotonic()
                if agent.backlog:
                    self._freed.add(agent)
        if freed and agent.backlog:
            self._wake.set()

    # --- observing ------------------------------------------------------------------------------
    def outstanding(self) -> int:
        """Results built but not yet receipted (queued or in flight)."""
        with self._lock:
            return self.total - self.receipted

    def wait_receipts(self, timeout_s: float) -> bool:
        """Wait until every built result is receipted (True) or timeout_s passes (False)."""
        end = time.monotonic() + timeout_s
        while self.outstanding():
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)
        return True

    def wait_published(self, timeout_s: float) -> bool:
        """Wait until every built result was published and PUBACKed by the broker (e.g. before a
        broker-side backlog is drained). Re-sends count too, so call it before receipts can be due."""
        end = time.monotonic() + timeout_s
        while True:
            with self._lock:
                all_out = not self._queue and self.sent == self.total
                published = self.published
            with self._ack_lock:
                done = all_out and self.acked >= published
            if done:
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"results": self.total, "acked": self.acked, "sent": self.sent, "published": self.published,
                    "resent": self.resent, "receipted": self.receipted, **dict(self.receipt_status)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fleet_sim", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--results", type=int, default=5000, help="results in all (round-robin over the agents)")
    p.add_argument("--rate", type=float, default=None, help="results per second (default: one burst)")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--resend-after", type=float, default=60.0, help="seconds before an un-receipted result is re-sent")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for every receipt")
    p.add_argument("--prefix", default="sim", help="agent ids are <prefix>-gw-<n>")
    args = p.parse_args(argv)
    sim = FleetSim(args.host, args.port, args.agents, connections=args.connections, prefix=args.prefix,
                   resend_after_s=args.resend_after)
    try:
        sim.connect()
        sim.preload(args.results)
        started = time.monotonic()
        sim.run(args.rate)
        complete = sim.wait_receipts(args.wait)
        elapsed = time.monotonic() - started
    finally:
        sim.close()
    c = sim.counts()
    print(" ".join(f"{k}={v}" for k, v in c.items()))
    print(f"expected tickets: {dict(sim.expected_tickets())}")
    if complete:
        print(f"all {c['results']} receipted in {elapsed:.2f} s ({c['results'] / elapsed:.0f} results/s)")
        return 0
    print(f"NOT all receipted after {args.wait} s: {c['results'] - c['receipted']} outstanding")
    return 1


if __name__ == "__main__":
    sys.exit(main())
