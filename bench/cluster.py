"""The carrier tier on a 3-node NATS JetStream cluster, in one run (docs/scaling.md "Carrier tier"):

    .venv/bin/python -m bench.cluster [--agents 1000] [--results 10000] [--phases bare,collectors,workers,...]

Phases (each prints its figures against a reference measured in the same run):
- bare: the reference, a bare JetStream puller (acks, stores nothing) drains a burst of RESULTS results that
  the fleet simulator publishes over MQTT/TLS into the cluster; rate = results / (last pulled - first published);
- collectors: 1, 2, 3 single-process `linecheck-collector serve` (broker.kind nats, PostgreSQL, rules and
  tickets) as competing consumers of the same payloads, end to end to the receipt; results per collector
  CPU-second (flat = no contention) and the mean number of collector backends waiting on a lock;
- workers: one `serve --workers W` through the cluster: its rate against the bare puller's (target >= 0.8);
- mqtt: the same burst through one Mosquitto: a bare paho subscriber, then `serve --workers 1` and `--workers W`;
- failover: a paced stream through the cluster's collectors, the node leading the results stream killed -9 in
  the middle; the longest time no receipt arrived, and whether every result was stored exactly once;
- storm: STORM results queued while no collector runs (a reopening), drained by `serve --workers W` through
  the cluster with the results stream's leader killed -9 half-way, then the same storm through one Mosquitto:
  drain times, lost, duplicates, tickets;
- idle: idle MQTT/TLS agents (CONNECT, then their receipts and commands at QoS 0 as agents subscribe on NATS)
  in steps up to IDLE; resident memory of the nodes per agent, agents per GB, the 500k extrapolation.
Re-sends wait 10 minutes in the rate phases so no rate is inflated by copies. Needs nats-server, mosquitto and
the local PostgreSQL (databases created and dropped here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from types import SimpleNamespace

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

    def distinct_or_zero(self, url: str) -> int:
        """Distinct results stored, 0 before the collector has created the tables."""
        from sqlalchemy.exc import ProgrammingError

        try:
            return self.outcome(url)[1]
        except ProgrammingError:
            return 0

    def drop(self) -> None:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            for name in self.names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


class Collector:
    """One `linecheck-collector serve` process (with `--workers N`: its workers too); CPU seconds from psutil."""

    def __init__(self, workdir: Path, name: str, yaml: str, workers: int = 1):
        self.name = name
        self.workers = workers
        self.config = workdir / f"{name}.yaml"
        self.config.write_text(yaml)
        self.log = workdir / f"{name}.log"
        self.proc = start("collector.cli", "serve", "--config", str(self.config), "--workers", str(workers),
                          log=self.log)
        self._seen: dict[int, float] = {}  # pid -> CPU seconds at its last sample (workers that died keep it)

    def members(self) -> list[str]:
        """Names in the partition leases: the process's client id, or its workers' ones."""
        return [self.name] if self.workers == 1 else [f"{self.name}-w{i}" for i in range(self.workers)]

    def cpu_s(self) -> float:
        try:
            parent = psutil.Process(self.proc.pid)
            procs = [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for proc in procs:
            try:
                t = proc.cpu_times()
                self._seen[proc.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                continue
        return sum(self._seen.values())

    def wait_subscribed(self, timeout_s: float = 90) -> None:
        end = time.monotonic() + timeout_s
        while (self.log.read_text() if self.log.exists() else "").count("collector subscribed") < self.workers:
            if self.proc.poll() is not None or time.monotonic() > end:
                raise TimeoutError(f"{self.name} did not subscribe; see {self.log}")
            time.sleep(0.05)

    def stop(self) -> None:
        stop(self.proc)


def nats_collector(workdir: Path, cluster: NatsCluster, name: str, database: str, workers: int = 1) -> Collector:
    ident = cluster.identity(COLLECTOR_MQTT_IDENTITY)
    brokers = ", ".join(f"127.0.0.1:{port}" for _, port in cluster.mqtt_addresses)
    return Collector(workdir, name, (
        f"database: {database}\n"
        f"mqtt: {{brokers: [{brokers}], client_id: {name}, ca_file: {ident.ca}, cert_file: {ident.cert}, "
        f"key_file: {ident.key}}}\n"
        f"broker: {{kind: nats, nats: {{servers: [{', '.join(cluster.nats_urls)}], "
        f"username: linecheck-collector, password_file: {cluster.password_file}, partitions: {PARTITIONS}}}}}\n"
        "http: {port: 0}\n"), workers)


def mosquitto_collector(workdir: Path, port: int, name: str, database: str, workers: int = 1) -> Collector:
    return Collector(workdir, name, f"database: {database}\n"
                                    f"mqtt: {{host: 127.0.0.1, port: {port}, client_id: {name}}}\nhttp: {{port: 0}}\n",
                     workers)


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


def ensure_results_stream(cluster: NatsCluster) -> None:
    """The results stream and its partition consumers, as a collector creates them: what agents publish
    before any collector ever ran would otherwise have no stream to land in."""
    async def main() -> None:
        import nats

        from collector.ingest.jetstream import ensure_stream

        nc = await nats.connect(cluster.nats_urls, user="linecheck-collector", password=COLLECTOR_PASSWORD)
        try:
            await ensure_stream(nc.jetstream(), NatsConfig(partitions=PARTITIONS), 1000)
        finally:
            await nc.drain()
    asyncio.run(main())


def wait_all_partitions(cluster: NatsCluster, names: list[str], timeout_s: float = 180) -> None:
    """Until every partition is leased, to these collectors only, each holding some."""
    end = time.monotonic() + timeout_s
    while True:
        try:
            owners = cluster.partition_owners()
        except Exception:  # noqa: BLE001 - the lease bucket does not exist until a collector has set it up
            owners = {}
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


def outcome_line(dbs: Databases, url: str, sim: FleetSim, expected_rows: int) -> tuple[bool, str]:
    rows, distinct, tickets = dbs.outcome(url)
    expected_tickets = sum(sim.expected_tickets().values())
    ok = rows == distinct == expected_rows and tickets == expected_tickets
    return ok, (f"stored {rows} rows, {distinct} distinct (sent {expected_rows}: lost {expected_rows - distinct}, "
                f"duplicates {rows - distinct}); tickets {tickets} (expected {expected_tickets})")


def load_now() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


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


def _idle_agent(ctx: ssl.SSLContext, port: int, name: str, qos: int | None) -> ssl.SSLSocket:
    """One idle agent: MQTT 3.1.1 CONNECT over TLS (clean session, no keep-alive) and, unless `qos` is None,
    its receipts and commands subscribed at that QoS. Blocking: a lightweight client, no paho thread."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=60)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    s.sendall(_packet(0x10, _mqtt_string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0) + _mqtt_string(name)))
    if s.recv(4) != b"\x20\x02\x00\x00":
        raise RuntimeError(f"connection {name} refused")
    if qos is not None:
        topics = b"".join(_mqtt_string(f"linecheck/v1/agents/{name}/{t}") + bytes([qos])
                          for t in ("receipts", "commands"))
        s.sendall(_packet(0x82, struct.pack("!H", 1) + topics))
        suback = s.recv(6)
        if len(suback) < 6 or suback[4:6] != bytes([qos, qos]):
            raise RuntimeError(f"subscription of {name} refused: {suback!r}")
    return s


def _open_idle(tls: tuple[str, str, str], ports: list[int], first: int, count: int, qos: int | None,
               threads: int) -> list[ssl.SSLSocket]:
    """`count` idle agents spread over the nodes' MQTT listeners, set up by `threads` threads (the TLS
    handshakes release the GIL)."""
    ctx = ssl.create_default_context(cafile=tls[0])
    ctx.load_cert_chain(tls[1], tls[2])
    out: list[ssl.SSLSocket] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    retried, last = [0], [""]

    def run(k: int) -> None:
        mine = []
        try:
            for i in range(first + k, first + count, threads):
                for attempt in range(5):
                    try:
                        mine.append(_idle_agent(ctx, ports[i % len(ports)], f"idle-{qos}-{i}", qos))
                        break
                    except (ssl.SSLError, ConnectionError) as exc:
                        # On a loaded machine a handshake can outlast the node's TLS timeout (2 s): it hangs
                        # up. The agent would reconnect: so does the simulated one (counted, reported).
                        if attempt == 4:
                            raise
                        retried[0] += 1
                        last[0] = repr(exc)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
        with lock:
            out.extend(mine)

    pool = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        for sock in out:
            sock.close()
        raise RuntimeError(f"{len(errors)} of {threads} connecting threads failed, first: {errors[0]!r}")
    if retried[0]:
        print(f"idle: {retried[0]} connection attempts hung up by a node and made again (last: {last[0]})",
              flush=True)
    return out


def _hold_idle(conn, *args) -> None:  # type: ignore[no-untyped-def]
    """In a process of its own (a process may hold at most RLIMIT_NOFILE sockets, 20,000 here): open the
    agents, say how many, hold them until told to close."""
    try:
        socks = _open_idle(*args)
    except Exception as exc:  # noqa: BLE001 - reported to the bench
        conn.send(("error", repr(exc)))
        return
    conn.send(("ok", len(socks)))
    conn.recv()
    for sock in socks:
        sock.close()


class IdleAgents:
    """Idle agents held by helper processes of at most PER_PROCESS connections each."""

    PER_PROCESS = 12_500

    def __init__(self, cluster: NatsCluster, qos: int | None = 0, threads: int = 4):
        import multiprocessing

        ident = cluster.identity(SIMULATOR_IDENTITY)
        self.tls = (str(ident.ca), str(ident.cert), str(ident.key))
        self.ports = [n.mqtt_port for n in cluster.nodes]
        self.qos, self.threads = qos, threads
        self.count = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._held: list[tuple[object, object]] = []

    def grow_to(self, target: int) -> None:
        while self.count < target:
            n = min(self.PER_PROCESS, target - self.count)
            mine, theirs = self._ctx.Pipe()
            proc = self._ctx.Process(target=_hold_idle, args=(theirs, self.tls, self.ports, self.count, n, self.qos,
                                                              self.threads), daemon=True)
            proc.start()
            status, value = mine.recv()
            if status != "ok":
                raise RuntimeError(f"idle agents {self.count}..{self.count + n}: {value}")
            self._held.append((proc, mine))
            self.count += n

    def helpers_rss(self) -> int:
        return sum(psutil.Process(p.pid).memory_info().rss for p, _ in self._held)  # type: ignore[attr-defined]

    def close(self) -> None:
        for _proc, conn in self._held:
            with contextlib.suppress(OSError):
                conn.send("close")  # type: ignore[attr-defined]
        for proc, _ in self._held:
            proc.join(30)  # type: ignore[attr-defined]


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


def raise_fd_limit(want: int) -> int:
    """Open files allowed to this process and the nodes it starts (one descriptor per idle agent each)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if os.geteuid() == 0 and hard != resource.RLIM_INFINITY and hard < want:
        target = want
        hard = want
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), max(hard, target)))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- the phases --------------------------------------------------------------------------------------
class Run:
    def __init__(self, work: Path, args: argparse.Namespace):
        self.work, self.args = work, args
        self.dbs = Databases()
        self.cluster = NatsCluster(work / "cluster", [], partitions=PARTITIONS)
        self.running: list[Collector] = []
        self.ok = True
        self.bare_s: float | None = None
        self.sim: FleetSim | None = None

    def stop_collectors(self) -> None:
        for c in self.running:
            c.stop()
        self.running = []

    def cluster_sim(self, results: int, prefix: str = "sim", resend_after_s: float = 600.0,
                    agents: int | None = None) -> FleetSim:
        tls = self.cluster.identity(SIMULATOR_IDENTITY).tls()
        sim = FleetSim("127.0.0.1", 0, agents or self.args.agents, brokers=self.cluster.mqtt_addresses, tls=tls,
                       receipts_wildcard=True, subscribe_qos=0, max_inflight=None, resend_after_s=resend_after_s,
                       prefix=prefix)
        sim.connect()
        sim.preload(results)
        return sim

    def burst_sim(self) -> FleetSim:
        if self.sim is None:
            self.sim = self.cluster_sim(self.args.results)
        return self.sim

    def phase_bare(self) -> None:
        sim = self.burst_sim()
        bare = BarePuller(self.cluster)
        sim.replay()
        sim.run()
        n = self.args.results
        if not bare.wait_count(n, 900):
            raise TimeoutError(f"the bare puller got {bare.count} of {n}")
        assert sim.first_publish is not None and bare.last_at is not None
        self.bare_s = bare.last_at - sim.first_publish
        bare.close()
        print(f"bare JetStream puller (reference): {n} in {self.bare_s:.2f} s, {n / self.bare_s:.0f} results/s "
              f"({load_now()})", flush=True)

    def _drain_with(self, collectors: list[Collector], url: str) -> tuple[float, float, float | None]:
        """(drain seconds, collector CPU seconds, mean lock waiters) of the burst through `collectors`."""
        from bench.pg_collectors import LockSampler

        sim = self.burst_sim()
        wait_all_partitions(self.cluster, [m for c in collectors for m in c.members()])
        sim.replay()
        cpu0 = sum(c.cpu_s() for c in collectors)
        with LockSampler(SimpleNamespace(db_url=url)) as locks:  # type: ignore[arg-type]
            took = drain(sim, 1800)
        return took, sum(c.cpu_s() for c in collectors) - cpu0, locks.mean()

    def phase_collectors(self) -> None:
        n_results = self.args.results
        base: float | None = None
        for n in self.args.collectors:
            self.stop_collectors()
            url = self.dbs.new()
            self.running = [nats_collector(self.work, self.cluster, f"c{n}-{i}", url) for i in range(1, n + 1)]
            took, cpu, waiters = self._drain_with(self.running, url)
            per_cpu_s = n_results / cpu
            base = base or per_cpu_s
            ok, line = outcome_line(self.dbs, url, self.burst_sim(), n_results)
            self.ok &= ok
            ratio = f"; ratio to the bare puller {self.bare_s / took:.2f}" if self.bare_s else ""
            waiting = "n/a" if waiters is None else f"{waiters:.2f}"
            print(f"{n} collector(s) through the cluster: {took:.2f} s, {n_results / took:.0f} results/s{ratio}; "
                  f"{1000 * cpu / n_results:.2f} ms collector CPU per result = {per_cpu_s:.0f} results per collector "
                  f"CPU-second ({per_cpu_s / base:.2f}x one collector's); lock waiters {waiting}; {line} "
                  f"({load_now()})", flush=True)
        self.stop_collectors()

    def phase_workers(self) -> None:
        w = self.args.workers
        n_results = self.args.results
        self.stop_collectors()
        url = self.dbs.new()
        self.running = [nats_collector(self.work, self.cluster, "wk", url, workers=w)]
        took, cpu, waiters = self._drain_with(self.running, url)
        ok, line = outcome_line(self.dbs, url, self.burst_sim(), n_results)
        self.ok &= ok
        ratio = f"{self.bare_s / took:.2f}" if self.bare_s else "n/a (run the bare phase)"
        print(f"serve --workers {w} through the cluster: {took:.2f} s, {n_results / took:.0f} results/s, "
              f"{1000 * cpu / n_results:.2f} ms CPU per result (supervisor and workers, {cpu / took:.2f} cores); "
              f"ratio to the bare puller {ratio} (target >= 0.8); lock waiters "
              f"{'n/a' if waiters is None else f'{waiters:.2f}'}; {line} ({load_now()})", flush=True)
        self.stop_collectors()

    def phase_mqtt(self) -> None:
        """The same burst through one Mosquitto: a bare paho subscriber, then serve --workers 1 and W."""
        from bench.ingest_rig import BareSubscriber

        n_results = self.args.results
        broker = bench_broker(self.work / "mosquitto-rate")
        sim = FleetSim("127.0.0.1", broker.port, self.args.agents, max_inflight=None, resend_after_s=600.0,
                       prefix="mqr")
        try:
            sim.connect()
            sim.preload(n_results)
            bare = BareSubscriber(broker.port)
            bare.connect()
            sim.run()
            if not bare.wait_count(n_results, 900):
                raise TimeoutError(f"the bare subscriber got {bare.count} of {n_results}")
            assert sim.first_publish is not None and bare.last_at is not None
            bare_s = bare.last_at - sim.first_publish
            bare.close()
            print(f"Mosquitto: bare paho subscriber (reference): {bare_s:.2f} s, {n_results / bare_s:.0f} results/s",
                  flush=True)
            from bench.pg_collectors import LockSampler

            for w in sorted({1, self.args.workers}):
                url = self.dbs.new()
                c = mosquitto_collector(self.work, broker.port, f"mqr{w}", url, workers=w)
                try:
                    c.wait_subscribed()
                    sim.replay()
                    cpu0 = c.cpu_s()
                    with LockSampler(SimpleNamespace(db_url=url)) as locks:  # type: ignore[arg-type]
                        took = drain(sim, 1800)
                    cpu = c.cpu_s() - cpu0
                finally:
                    c.stop()
                ok, line = outcome_line(self.dbs, url, sim, n_results)
                self.ok &= ok
                print(f"Mosquitto: serve --workers {w}: {took:.2f} s, {n_results / took:.0f} results/s, "
                      f"{1000 * cpu / n_results:.2f} ms CPU per result ({cpu / took:.2f} cores); ratio to the bare "
                      f"subscriber {bare_s / took:.2f}; lock waiters {locks.mean() or 0:.2f}; {line} ({load_now()})",
                      flush=True)
        finally:
            sim.close()
            broker.stop()

    def phase_failover(self) -> None:
        sim = self.burst_sim()
        url = self.dbs.new()
        self.stop_collectors()
        self.running = [nats_collector(self.work, self.cluster, f"f-{i}", url) for i in (1, 2)]
        wait_all_partitions(self.cluster, [m for c in self.running for m in c.members()])
        leader_name = self.cluster.stream_state()[1]
        leader = next(i for i, n in enumerate(self.cluster.nodes) if n.name == leader_name)
        total = self.args.failover_results
        # Agents re-send what gets no receipt (10 s here, 60 s by default): a node's loss may drop results on
        # their way into the stream (an MQTT PUBACK is not a stream ack); the agents' spools cover that.
        sim.replay()
        sim.resend_after_s, sim.resend_max_s = 10.0, 20.0
        sim.preload(total)
        before = 0
        rate = 200.0
        sim.run(rate)
        expected = self.args.results + total
        samples: list[tuple[float, int]] = []
        killed_at = None
        end = time.monotonic() + expected / rate + 180
        while sim.receipted < expected and time.monotonic() < end:
            now = time.monotonic()
            samples.append((now, sim.receipted))
            if killed_at is None and sim.receipted - before >= expected // 3:
                self.cluster.kill(leader)
                killed_at = now
            time.sleep(0.02)
        complete = sim.receipted >= expected
        gap, last_t, last_n = 0.0, killed_at or 0.0, -1
        for t, n in samples:
            if killed_at is not None and t >= killed_at and n != last_n:
                gap = max(gap, t - last_t)
                last_t, last_n = t, n
        rows, distinct, _ = self.dbs.outcome(url)
        self.ok &= complete and rows == distinct == expected
        print(f"failover: {expected} results at {rate:.0f}/s, node {leader_name} (results stream leader) killed -9 "
              f"after a third: longest time without a receipt {gap:.2f} s; {'all' if complete else 'NOT all'} "
              f"receipted, stored {rows} rows, {distinct} distinct; re-sent by agents {sim.resent}", flush=True)
        self.stop_collectors()
        sim.resend_after_s, sim.resend_max_s = 600.0, 3600.0
        self.cluster.start_node(leader)
        self.cluster.wait_ready(60)

    def phase_storm(self) -> None:
        n = self.args.storm
        w = self.args.workers
        agents = max(1, n // 10)
        self.stop_collectors()
        if self.sim is not None:
            self.sim.close()
            self.sim = None
        # Through the cluster: the stream holds the reopening's results; no collector runs.
        ensure_results_stream(self.cluster)
        url = self.dbs.new()
        sim = self.cluster_sim(n, prefix="storm", agents=agents)
        try:
            sim.run()
            if not sim.wait_published(1800):
                raise TimeoutError(f"the storm's results were not all accepted by the cluster ({sim.counts()})")
            queued = _until(lambda: self.cluster.stream_state()[0] >= n, 120)
            print(f"storm: {n} results of {agents} agents queued in the results stream ({queued} there; "
                  f"{load_now()})", flush=True)
            began = time.monotonic()
            c = nats_collector(self.work, self.cluster, "storm", url, workers=w)
            self.running = [c]
            leader_name = self.cluster.stream_state()[1]
            leader = next(i for i, node in enumerate(self.cluster.nodes) if node.name == leader_name)
            killed_at: float | None = None
            stored = 0
            while time.monotonic() - began < 3600:
                stored = self.dbs.distinct_or_zero(url)
                if killed_at is None and stored >= n // 2:
                    self.cluster.kill(leader)
                    killed_at = time.monotonic() - began
                    print(f"storm: node {leader_name} (results stream leader) killed -9 at {stored} stored, "
                          f"{killed_at:.1f} s after the collector started", flush=True)
                if stored >= n:
                    break
                time.sleep(0.2)
            drained = time.monotonic() - began
            cpu = c.cpu_s()
            sim.wait_receipts(30)  # receipts still on their way (QoS 0: some were lost with the node)
            left = self.cluster.stream_state()[0]
            ok, line = outcome_line(self.dbs, url, sim, n)
            self.ok &= ok and left == 0
            log = c.log.read_text()
            restarts = log.count(") died after")
            print(f"storm through the cluster, serve --workers {w}: drained in {drained:.1f} s (collector start -> "
                  f"all stored; {n / drained:.0f} results/s), {1000 * cpu / n:.2f} ms CPU per result; {line}; "
                  f"stream left {left}; receipts {sim.receipted} of {n} (the rest were QoS 0 receipts lost with the "
                  f"node: the agents re-send them and are answered 'duplicate'); worker restarts {restarts} "
                  f"({load_now()})", flush=True)
        finally:
            self.stop_collectors()
            sim.close()
        self.cluster.start_node(leader)
        self.cluster.wait_ready(60)
        self.storm_drained = drained
        self.phase_storm_mqtt()

    def phase_storm_mqtt(self) -> None:
        """The same storm on a single Mosquitto: the collector's sessions exist (started once), then it is down."""
        n = self.args.storm
        w = self.args.workers
        agents = max(1, n // 10)
        drained = getattr(self, "storm_drained", None)
        broker = bench_broker(self.work / "mosquitto-storm")
        url = self.dbs.new()
        sim = FleetSim("127.0.0.1", broker.port, agents, max_inflight=None, resend_after_s=3600.0, prefix="mqs")
        try:
            c = mosquitto_collector(self.work, broker.port, "mqstorm", url, workers=w)
            c.wait_subscribed()
            c.stop()
            sim.connect()
            sim.preload(n)
            sim.run()
            if not sim.wait_published(1800):
                raise TimeoutError(f"Mosquitto did not accept the storm ({sim.counts()})")
            began = time.monotonic()
            c = mosquitto_collector(self.work, broker.port, "mqstorm", url, workers=w)
            self.running = [c]
            while self.dbs.distinct_or_zero(url) < n and time.monotonic() - began < 3600:
                time.sleep(0.2)
            took = time.monotonic() - began
            cpu = c.cpu_s()
            sim.wait_receipts(60)
            receipt_s = (sim.last_receipt or began) - began
            ok, line = outcome_line(self.dbs, url, sim, n)
            self.ok &= ok
            print(f"storm through one Mosquitto, serve --workers {w}: drained in {took:.1f} s (collector start -> "
                  f"all stored; {n / took:.0f} results/s; last receipt at {receipt_s:.1f} s, {sim.receipted} of {n}), "
                  f"{1000 * cpu / n:.2f} ms CPU per result; {line}; drain time cluster with a node killed / "
                  f"Mosquitto {'n/a (storm phase not run)' if drained is None else f'{drained / took:.2f}'} "
                  f"({load_now()})", flush=True)
        finally:
            self.stop_collectors()
            sim.close()
            broker.stop()

    def phase_idle(self) -> None:
        steps = [k for k in self.args.idle_steps if k <= self.args.idle] or [self.args.idle]
        agents = IdleAgents(self.cluster, qos=0)
        base = settle_rss(self.cluster)
        print(f"idle: the 3 nodes' RSS before {base / 2**20:.0f} MB; open files allowed per process "
              f"{raise_fd_limit(self.args.idle + 10_000)}", flush=True)
        try:
            for target in steps:
                began, before = time.monotonic(), agents.count
                agents.grow_to(target)
                took = time.monotonic() - began
                rss = settle_rss(self.cluster)
                per = (rss - base) / agents.count
                print(f"idle: {agents.count} MQTT/TLS agents with QoS 0 subscriptions: nodes' RSS {rss / 2**20:.0f} MB "
                      f"(+{(rss - base) / 2**20:.0f} MB) = {per / 1024:.1f} KB per agent, {2**30 / per:.0f} agents "
                      f"per GB; 500k agents: {500_000 * per / 2**30:.1f} GB across the cluster; "
                      f"{(agents.count - before) / took:.0f} agents/s set up; the simulating processes' RSS "
                      f"{agents.helpers_rss() / 2**20:.0f} MB ({load_now()})", flush=True)
        finally:
            agents.close()


def _until(cond, timeout_s: float) -> object:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.2)


PHASES = ("bare", "collectors", "workers", "mqtt", "failover", "storm", "storm_mqtt", "idle")


def measure(work: Path, args: argparse.Namespace) -> int:
    run = Run(work, args)
    raise_fd_limit(args.idle + 10_000)  # before the nodes start: they inherit it
    try:
        run.cluster.start()
        print(f"bench/cluster.py {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: 3 nats-server nodes "
              f"({shutil.which('nats-server')}), {PARTITIONS} partitions, PostgreSQL; {args.results} results of "
              f"{args.agents} agents per burst; {load_now()} on {os.cpu_count()} cores; phases {','.join(args.phases)}",
              flush=True)
        for phase in PHASES:
            if phase in args.phases:
                getattr(run, f"phase_{phase}")()
    finally:
        run.stop_collectors()
        if run.sim is not None:
            run.sim.close()
        run.cluster.stop()
        run.dbs.drop()
    print(f"all checks {'passed' if run.ok else 'FAILED'} ({load_now()})")
    return 0 if run.ok else 1


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.splitlines()[0])
    p.add_argument("--phases", type=lambda v: v.split(","), default=list(PHASES), help=",".join(PHASES))
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--results", type=int, default=10000, help="results per burst (rate phases)")
    p.add_argument("--collectors", type=_ints, default=[1, 2, 3], help="collector counts to compare (1,2,3)")
    p.add_argument("--workers", type=int, default=2, help="serve --workers for the workers and storm phases")
    p.add_argument("--failover-results", type=int, default=3000)
    p.add_argument("--storm", type=int, default=100_000, help="results in the reopening storm (10 per agent)")
    p.add_argument("--idle", type=int, default=50_000, help="idle agents at the last step")
    p.add_argument("--idle-steps", type=_ints, default=[10_000, 20_000, 30_000, 40_000, 50_000])
    p.add_argument("--keep", action="store_true", help="keep the work directory (node and collector logs)")
    args = p.parse_args(argv)
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phases {sorted(unknown)}: expected some of {','.join(PHASES)}")
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    started = time.monotonic()
    try:
        return measure(work, args)
    finally:
        print(f"(whole run {time.monotonic() - started:.0f} s; work directory {work}"
              f"{'' if args.keep else ', removed'})")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
