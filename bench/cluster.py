"""The carrier tier on a 3-node NATS JetStream cluster, in one run (docs/scaling.md):

    .venv/bin/python -m bench.cluster [--agents 1000] [--results 10000] [--collectors 2] [--idle 2000]

1. reference: a bare JetStream puller (acks, stores nothing) drains a burst of RESULTS results that the fleet
   simulator publishes over MQTT/TLS into the cluster; rate = results / (last pulled - first published);
2. COLLECTORS `linecheck-collector serve` (broker.kind nats, PostgreSQL, rules and tickets) ingest the same
   payloads as competing consumers; rate = results / (last receipt at the simulator - first published);
3. the same storm through a single Mosquitto and one collector (broker.kind mqtt, PostgreSQL);
4. failover gap: a paced stream through the cluster's collectors, the node leading the results stream
   killed with -9 in the middle; the longest time no receipt arrived, and whether every result was stored
   exactly once;
5. connections: IDLE idle MQTT/TLS connections (the agents' CONNECT, then also their two QoS 1 subscriptions)
   held by the cluster; resident memory of the nodes per connection.
Re-sends wait 10 minutes in phases 1-3 so no rate is inflated by copies. Needs nats-server, mosquitto and the
local PostgreSQL (databases created and dropped here).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet_sim import FleetSim  # noqa: E402
from bench.ingest_rig import bench_broker  # noqa: E402
from collector.config import NatsConfig  # noqa: E402
from collector.fleet.nats_config import COLLECTOR_MQTT_IDENTITY, SIMULATOR_IDENTITY  # noqa: E402
from tests.helpers import start, stop  # noqa: E402
from tests.nats_cluster import COLLECTOR_PASSWORD, NatsCluster  # noqa: E402

PG_ADMIN = os.environ.get("LINECHECK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PARTITIONS = 8


# --- helpers ----------------------------------------------------------------------------------------
class Databases:
    """Fresh PostgreSQL databases for this run, dropped at the end."""

    def __init__(self) -> None:
        from sqlalchemy import create_engine

        self.admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def new(self) -> str:
        from sqlalchemy import text

        name = f"linecheck_bench_cluster_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        return PG_ADMIN.rsplit("/", 1)[0] + "/" + name

    def outcome(self, url: str) -> tuple[int, int, int]:
        """(rows, distinct result ids, tickets)."""
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.connect() as conn:
            rows, distinct = conn.execute(text("SELECT count(*), count(DISTINCT result_id) FROM results")).one()
            tickets = conn.execute(text("SELECT count(*) FROM tickets")).scalar_one()
        engine.dispose()
        return int(rows), int(distinct), int(tickets)

    def drop(self) -> None:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            for name in self.names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


class Collector:
    """One `linecheck-collector serve` process; CPU seconds from psutil."""

    def __init__(self, workdir: Path, name: str, yaml: str):
        self.config = workdir / f"{name}.yaml"
        self.config.write_text(yaml)
        self.log = workdir / f"{name}.log"
        self.proc = start("collector.cli", "serve", "--config", str(self.config), log=self.log)

    def cpu_s(self) -> float:
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        stop(self.proc)


def nats_collector(workdir: Path, cluster: NatsCluster, name: str, database: str) -> Collector:
    ident = cluster.identity(COLLECTOR_MQTT_IDENTITY)
    brokers = ", ".join(f"127.0.0.1:{port}" for _, port in cluster.mqtt_addresses)
    return Collector(workdir, name, (
        f"database: {database}\n"
        f"mqtt: {{brokers: [{brokers}], client_id: {name}, ca_file: {ident.ca}, cert_file: {ident.cert}, "
        f"key_file: {ident.key}}}\n"
        f"broker: {{kind: nats, nats: {{servers: [{', '.join(cluster.nats_urls)}], "
        f"username: linecheck-collector, password_file: {cluster.password_file}, partitions: {PARTITIONS}}}}}\n"
        "http: {port: 0}\n"))


class BarePuller:
    """Pulls every partition's durable consumer and acks: the cluster's own delivery rate, no database."""

    def __init__(self, cluster: NatsCluster):
        self.cluster = cluster
        self.count = 0
        self.last_at: float | None = None
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        if not self.ready.wait(60):
            raise TimeoutError("the bare puller could not bind the partition consumers")

    async def _main(self) -> None:
        import nats

        from collector.ingest.jetstream import durable_name, ensure_stream

        cfg = NatsConfig(partitions=PARTITIONS)
        nc = await nats.connect(self.cluster.nats_urls, user="linecheck-collector", password=COLLECTOR_PASSWORD)
        js = nc.jetstream()
        await ensure_stream(js, cfg, 1000)
        subs = [await js.pull_subscribe_bind(durable=durable_name(cfg, p), stream=cfg.stream)
                for p in range(PARTITIONS)]
        self.ready.set()

        async def pull(sub) -> None:  # type: ignore[no-untyped-def]
            while not self._stop.is_set():
                try:
                    msgs = await sub.fetch(500, timeout=0.5)
                except Exception:  # noqa: BLE001 - nothing waiting
                    continue
                for m in msgs:
                    await m.ack()
                self.count += len(msgs)
                self.last_at = time.monotonic()
        await asyncio.gather(*(pull(s) for s in subs))
        for s in subs:
            await s.unsubscribe()
        await nc.drain()

    def wait_count(self, n: int, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while self.count < n:
            if time.monotonic() > end:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def wait_all_partitions(cluster: NatsCluster, names: list[str], timeout_s: float = 60) -> None:
    """Until every partition is leased, to these collectors only, each holding some."""
    end = time.monotonic() + timeout_s
    while True:
        owners = cluster.partition_owners()
        if len(owners) == cluster.partitions and set(owners.values()) == set(names):
            return
        if time.monotonic() > end:
            raise TimeoutError(f"partitions not spread over {names}: {owners}")
        time.sleep(0.2)


def drain(sim: FleetSim, timeout_s: float) -> float:
    sim.run()
    if not sim.wait_receipts(timeout_s):
        raise TimeoutError(f"receipted {sim.receipted} of {sim.total} in {timeout_s} s")
    assert sim.first_publish is not None and sim.last_receipt is not None
    return sim.last_receipt - sim.first_publish


# --- idle connections ------------------------------------------------------------------------------
def _mqtt_string(s: str) -> bytes:
    return struct.pack("!H", len(s)) + s.encode()


def _packet(kind: int, body: bytes) -> bytes:
    n, length = len(body), b""
    while True:
        byte, n = n % 128, n // 128
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            return bytes([kind]) + length + body


def idle_connections(cluster: NatsCluster, node: int, count: int, qos: int | None) -> list[ssl.SSLSocket]:
    """`count` MQTT 3.1.1 connections over TLS with the simulator's identity, each as an idle agent: CONNECT
    (clean session, no keep-alive) and, unless `qos` is None, its receipts and commands at that QoS."""
    ident = cluster.identity(SIMULATOR_IDENTITY)
    ctx = ssl.create_default_context(cafile=str(ident.ca))
    ctx.load_cert_chain(str(ident.cert), str(ident.key))
    port = cluster.nodes[node].mqtt_port
    socks = []
    for i in range(count):
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        client_id = f"idle-{qos}-{i}"
        s.sendall(_packet(0x10, _mqtt_string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0)
                          + _mqtt_string(client_id)))
        if s.recv(4) != b"\x20\x02\x00\x00":
            raise RuntimeError(f"connection {i} refused")
        if qos is not None:
            agent = f"idle-gw-{qos}-{i}"
            topics = b"".join(_mqtt_string(f"linecheck/v1/agents/{agent}/{t}") + bytes([qos])
                              for t in ("receipts", "commands"))
            s.sendall(_packet(0x82, struct.pack("!H", 1) + topics))
            suback = s.recv(6)
            if len(suback) < 6 or suback[4:6] != bytes([qos, qos]):
                raise RuntimeError(f"subscription {i} refused: {suback!r}")
        socks.append(s)
    return socks


def nodes_rss(cluster: NatsCluster) -> int:
    return sum(psutil.Process(p.pid).memory_info().rss for p in cluster.procs if p is not None and p.poll() is None)


def settle_rss(cluster: NatsCluster) -> int:
    """Resident memory of the live nodes once it stops moving (Go frees lazily)."""
    last = nodes_rss(cluster)
    for _ in range(20):
        time.sleep(0.5)
        now = nodes_rss(cluster)
        if abs(now - last) < 512 * 1024:
            return now
        last = now
    return last


# --- the run ----------------------------------------------------------------------------------------
def measure(work: Path, agents: int, results: int, collectors: int, idle: int, failover_results: int,
            idle_qos1: int) -> int:
    dbs = Databases()
    cluster = NatsCluster(work / "cluster", [], partitions=PARTITIONS)
    running: list[Collector] = []
    ok = True
    try:
        cluster.start()
        tls = cluster.identity(SIMULATOR_IDENTITY).tls()
        sim = FleetSim("127.0.0.1", 0, agents, brokers=cluster.mqtt_addresses, tls=tls, receipts_wildcard=True,
                       subscribe_qos=0,
                       max_inflight=None, resend_after_s=600.0)
        sim.connect()
        sim.preload(results)
        load = os.getloadavg()
        print(f"bench/cluster.py: {results} results of {agents} agents; 3 nats-server nodes "
              f"({shutil.which('nats-server')}), {collectors} collectors on PostgreSQL; load average "
              f"{load[0]:.2f} {load[1]:.2f} on {os.cpu_count()} cores")

        # 1. bare puller
        bare = BarePuller(cluster)
        sim.run()
        if not bare.wait_count(results, 600):
            raise TimeoutError(f"the bare puller got {bare.count} of {results}")
        assert sim.first_publish is not None and bare.last_at is not None
        bare_s = bare.last_at - sim.first_publish
        bare.close()
        print(f"1. bare JetStream puller (reference): {bare_s:.2f} s, {results / bare_s:.0f} results/s")

        # 2. collectors through the cluster, same payloads: one, then `collectors` competing (fresh databases)
        for n in sorted({1, collectors}):
            for c in running:
                c.stop()
            url = dbs.new()
            names = [f"c{n}-{i}" for i in range(1, n + 1)]
            running = [nats_collector(work, cluster, name, url) for name in names]
            wait_all_partitions(cluster, names)
            sim.replay()
            cpu0 = sum(c.cpu_s() for c in running)
            cluster_s = drain(sim, 900)
            cpu = sum(c.cpu_s() for c in running) - cpu0
            rows, distinct, tickets = dbs.outcome(url)
            ok &= rows == distinct == results
            print(f"2. {n} collector(s) through the cluster (end to end to the receipt): {cluster_s:.2f} s, "
                  f"{results / cluster_s:.0f} results/s, {1000 * cpu / results:.2f} ms collector CPU per result; "
                  f"ratio to the bare puller {bare_s / cluster_s:.2f}; stored {rows} rows, {distinct} distinct, "
                  f"{tickets} tickets (expected {sum(sim.expected_tickets().values())})")
            if n == 1:
                single_s = cluster_s

        # 4. failover gap (before 3: the cluster's collectors are running)
        leader_name = cluster.stream_state()[1]
        leader = next(i for i, n in enumerate(cluster.nodes) if n.name == leader_name)
        before = sim.receipted
        # Agents re-send what gets no receipt (10 s here, 60 s by default): a node's loss may drop results on
        # their way into the stream (an MQTT PUBACK is not a stream ack); the agents' spools cover that.
        sim.resend_after_s, sim.resend_max_s = 10.0, 20.0
        sim.preload(failover_results)
        rate = 200.0
        sim.run(rate)
        samples: list[tuple[float, int]] = []
        killed_at = None
        end = time.monotonic() + failover_results / rate + 120
        while sim.receipted < results + failover_results and time.monotonic() < end:
            now = time.monotonic()
            samples.append((now, sim.receipted))
            if killed_at is None and sim.receipted - before >= failover_results // 3:
                cluster.kill(leader)
                killed_at = now
            time.sleep(0.02)
        complete = sim.receipted >= results + failover_results
        gap, last_t, last_n = 0.0, killed_at or 0.0, -1
        for t, n in samples:
            if killed_at is not None and t >= killed_at and n != last_n:
                gap = max(gap, t - last_t)
                last_t, last_n = t, n
        rows, distinct, tickets = dbs.outcome(url)
        ok &= complete and rows == distinct == results + failover_results
        print(f"4. failover: {failover_results} results at {rate:.0f}/s, node {leader_name} (results stream "
              f"leader) killed -9 after a third: longest time without a receipt {gap:.2f} s; "
              f"{'all' if complete else 'NOT all'} receipted, stored {rows} rows, {distinct} distinct "
              f"(expected {results + failover_results}); re-sent by agents {sim.resent}")
        for c in running:
            c.stop()
        running = []
        sim.close()
        cluster.start_node(leader)
        cluster.wait_ready(60)

        # 3. the same storm on a single Mosquitto
        mosquitto_s, mosquitto_cpu = _mosquitto(work, dbs, agents, results)
        print(f"3. one collector on a single Mosquitto (broker.kind mqtt), same storm: {mosquitto_s:.2f} s, "
              f"{results / mosquitto_s:.0f} results/s, {1000 * mosquitto_cpu / results:.2f} ms collector CPU per "
              f"result; drain time through the cluster / Mosquitto: one collector {single_s / mosquitto_s:.2f}, "
              f"{collectors} collectors {cluster_s / mosquitto_s:.2f}")

        # 5. idle connections
        if idle:
            socks: list[ssl.SSLSocket] = []
            rss = settle_rss(cluster)
            # QoS 1: each subscription is a replicated consumer, created at a few per second: fewer of them.
            for node, qos, what, n in ((0, None, "connected only", idle),
                                       (1, 0, "+ receipts and commands at QoS 0", idle),
                                       (2, 1, "+ receipts and commands at QoS 1", idle_qos1)):
                if not n:
                    continue
                began = time.monotonic()
                socks += idle_connections(cluster, node, n, qos)
                took = time.monotonic() - began
                now = settle_rss(cluster)
                per = (now - rss) / n
                print(f"5. {n} idle MQTT/TLS agents, {what}: the 3 nodes' RSS +{(now - rss) / 2**20:.0f} MB = "
                      f"{per / 1024:.1f} KB per agent ({2**30 / per:.0f} agents per GB; 500k agents: "
                      f"{500_000 * per / 2**30:.1f} GB across the cluster); set up in {took:.1f} s "
                      f"({n / took:.0f} agents/s)")
                rss = now
            for sock in socks:
                sock.close()
    finally:
        for c in running:
            c.stop()
        cluster.stop()
        dbs.drop()
    return 0 if ok else 1


def _mosquitto(work: Path, dbs: Databases, agents: int, results: int) -> tuple[float, float]:
    """(drain time, collector CPU seconds) of the same storm through one Mosquitto and one collector."""
    broker = bench_broker(work / "mosquitto")
    url = dbs.new()
    sim = FleetSim("127.0.0.1", broker.port, agents, max_inflight=None, resend_after_s=600.0, prefix="mq")
    collector = Collector(work, "mosquitto-collector", f"database: {url}\nmqtt: {{host: 127.0.0.1, port: "
                                                      f"{broker.port}, client_id: mq-collector}}\nhttp: {{port: 0}}\n")
    try:
        end = time.monotonic() + 60
        while "collector subscribed" not in (collector.log.read_text() if collector.log.exists() else ""):
            if time.monotonic() > end:
                raise TimeoutError("the Mosquitto collector did not subscribe")
            time.sleep(0.05)
        sim.connect()
        sim.preload(results)
        cpu0 = collector.cpu_s()
        took = drain(sim, 900)
        return took, collector.cpu_s() - cpu0
    finally:
        sim.close()
        collector.stop()
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--results", type=int, default=10000)
    p.add_argument("--collectors", type=int, default=2)
    p.add_argument("--failover-results", type=int, default=3000)
    p.add_argument("--idle", type=int, default=2000, help="idle connections to measure (0: skip)")
    p.add_argument("--idle-qos1", type=int, default=200, help="of those, with QoS 1 subscriptions (slow to set up)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (node and collector logs)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    started = time.monotonic()
    try:
        return measure(work, args.agents, args.results, args.collectors, args.idle, args.failover_results,
                       args.idle_qos1)
    finally:
        print(f"(whole run {time.monotonic() - started:.0f} s; work directory {work}"
              f"{'' if args.keep else ', removed'})")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
