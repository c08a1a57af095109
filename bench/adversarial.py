"""Flood ingest with valid and hostile results from many agents and check the chain of custody held.

    python bench/adversarial.py [--messages 100000] [--agents 1000] [--pg] [--connections 8]

A private Mosquitto (bench/ingest_rig.py's broker), the real collector `Ingestor` and `Store` with the
rules at ingest as `linecheck-collector serve` runs them, on SQLite (default) or a fresh PostgreSQL
database (--pg, dropped afterwards). Every agent is enrolled through a registry import on its own line;
a few more are enrolled with certificates and then revoked. A publisher process (so that its memory is
not the collector's) sends the mix over several MQTT connections:

- valid results, each agent on its own line                    -> stored
- identical re-sends of a stored result                         -> duplicate
- forged lines: an agent naming another agent's line and site   -> quarantined (binding)
- poison values: a date that overflows, NaN, Infinity, a numeric string, a huge integer, garbage
                                                                 -> quarantined (schema)
- a stored result's id re-sent with other content               -> quarantined (reused id)
- results of revoked agents                                     -> quarantined (revoked)

It prints what was sent and what ingest made of it, the longest stall (the longest time messages
waited while no batch completed) and the collector's peak RSS, and exits 1 unless stored = valid sent,
quarantined = hostile sent, duplicates = re-sends and the longest stall < 1 s.
"""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest_rig import bench_broker  # noqa: E402
from collector.config import CollectorConfig  # noqa: E402
from collector.fleet import enrolment, registry  # noqa: E402
from collector.fleet.pki import FleetCA  # noqa: E402
from collector.ingest.worker import Ingestor  # noqa: E402
from collector.rules.engine import RuleEngine, RulesConfig  # noqa: E402
from collector.store.database import Store  # noqa: E402
from linecheck.identity import make_csr, new_key  # noqa: E402
from linecheck.wire import CheckResult, ResultEnvelope, Status, Verdict, new_result_id, results_topic  # noqa: E402

KINDS = ("valid", "resend", "forged", "poison", "reused", "revoked")
HOSTILE = ("forged", "poison", "reused", "revoked")
# Shares of the mix (the rest is valid). A re-send or reused id follows its original by at least
# REUSE_DISTANCE messages of the same connection: MQTT keeps a connection's order, so at least as many
# lie between them at the collector, more than a batch (500): the original is committed first.
SHARES = {"resend": 0.05, "forged": 0.08, "poison": 0.08, "reused": 0.05, "revoked": 0.04}
REUSE_DISTANCE = 600
REVOKED_AGENTS = 10
STALL_LIMIT_S = 1.0
POISON = ("overflowing date", "NaN", "Infinity", "numeric string", "huge integer", "garbage")


@dataclass
class Figures:
    sent: dict[str, int] = field(default_factory=dict)
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    db_stored: int = 0
    db_quarantined: int = 0
    elapsed_s: float = 0.0
    longest_stall_s: float = 0.0
    stalls_over_limit: int = 0  # gaps between batches over STALL_LIMIT_S while messages waited
    batch_max: int = 500
    batch_target_s: float = 0.1
    peak_rss_mb: float = 0.0
    backend: str = "sqlite"
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    @property
    def counts_correct(self) -> bool:
        """Every valid message stored, every hostile one quarantined, every identical re-send a duplicate."""
        hostile = sum(self.sent.get(k, 0) for k in HOSTILE)
        return (self.stored == self.db_stored == self.sent.get("valid", 0)
                and self.quarantined == self.db_quarantined == hostile
                and self.duplicates == self.sent.get("resend", 0))

    @property
    def correct(self) -> bool:
        return self.counts_correct and self.longest_stall_s < STALL_LIMIT_S

    def report(self) -> str:
        hostile = sum(self.sent.get(k, 0) for k in HOSTILE)
        sent = ", ".join(f"{k} {self.sent.get(k, 0)}" for k in KINDS)
        return "\n".join([
            f"adversarial ingest on {self.backend}: {self.total} messages ({sent})",
            f"  stored       {self.stored:>8} (database {self.db_stored}) = valid sent {self.sent.get('valid', 0)}",
            f"  quarantined  {self.quarantined:>8} (database {self.db_quarantined}) = hostile sent {hostile}",
            f"  duplicates   {self.duplicates:>8} = identical re-sends {self.sent.get('resend', 0)}",
            f"  drained in {self.elapsed_s:.1f} s ({self.total / max(self.elapsed_s, 1e-9):.0f} messages/s); "
            f"longest ingest stall {self.longest_stall_s:.2f} s (limit {STALL_LIMIT_S:.0f} s, "
            f"{self.stalls_over_limit} over it; batches of up to {self.batch_max}, "
            f"sized for {self.batch_target_s:g} s); "
            f"collector peak RSS {self.peak_rss_mb:.0f} MB",
            f"  load average {self.load[0]:.2f} {self.load[1]:.2f} {self.load[2]:.2f}; "
            + ("counts CORRECT" if self.counts_correct else "counts NOT CORRECT")
            + ("" if self.longest_stall_s < STALL_LIMIT_S else f"; stall limit {STALL_LIMIT_S:.0f} s MISSED"),
        ])


# --- the fleet --------------------------------------------------------------------------------------------


def fleet_registry(agents: int) -> registry.Registry:
    return registry.Registry.model_validate({
        "tenants": [{"tenant_id": f"ten-{t}", "name": f"Tenant {t}", "kind": "carrier"} for t in range(3)],
        "sites": [{"site_id": f"site-{i}", "tenant_id": f"ten-{i % 3}"} for i in range(agents)],
        "lines": [{"line_id": f"line-{i}", "tenant_id": f"ten-{i % 3}", "site_id": f"site-{i}",
                   "plan_down_mbps": 500, "plan_up_mbps": 300} for i in range(agents)],
        "agents": [{"agent_id": f"gw-{i}", "line_id": f"line-{i}", "report_interval_s": 600} for i in range(agents)],
    })


def enrol_fleet(store: Store, agents: int, ca_dir: Path) -> None:
    with store.engine.begin() as conn:
        registry.import_registry(conn, fleet_registry(agents))
    ca = FleetCA.open_or_create(ca_dir)
    for i in range(REVOKED_AGENTS):
        agent = f"rv-{i}"
        issued = enrolment.issue_token(store.engine, agent, f"rvline-{i}", f"rvsite-{i}")
        enrolment.redeem(store.engine, ca, issued.token, make_csr(agent, new_key()))
        enrolment.revoke(store.engine, ca, agent, "bench: gateway stolen")


def _envelope(agent: str, line: str, site: str, seq: int, at: datetime, rng: random.Random) -> ResultEnvelope:
    checks = [CheckResult(kind="link", status=Status.OK, duration_s=0.1, metrics={"link_up_flag": 1}),
              CheckResult(kind="ping", status=Status.OK, duration_s=2.0, target="198.18.0.1",
                          metrics={"loss_pct": 0.0, "rtt_avg_ms": round(rng.uniform(3, 40), 3)})]
    return ResultEnvelope(result_id=new_result_id(int(at.timestamp() * 1000)), agent_id=agent, seq=seq, line_id=line,
                          site_id=site, trigger="schedule", started_at=at, ended_at=at + timedelta(seconds=5),
                          agent_version="bench", checks=checks, verdict="healthy")


def _poison(env: ResultEnvelope, kind: str) -> bytes:
    text = env.to_json().decode()
    if kind == "overflowing date":
        return text.replace(f'"started_at":"{env.started_at.isoformat().replace("+00:00", "Z")}"',
                            '"started_at":"9999-12-31T23:59:59-23:59"').encode()
    if kind == "NaN":
        return text.replace('"loss_pct":0.0', '"loss_pct":NaN').encode()
    if kind == "Infinity":
        return text.replace('"duration_s":2.0', '"duration_s":Infinity').encode()
    if kind == "numeric string":
        return text.replace(f'"seq":{env.seq},', f'"seq":"{env.seq}",').encode()
    if kind == "huge integer":
        return text.replace('"link_up_flag":1', '"link_up_flag":1' + "0" * 400).encode()
    return os.urandom(200)


def connection_plan(conn_no: int, connections: int, messages: int, agents: int, seed: int):  # type: ignore[no-untyped-def]
    """This connection's messages in order, as (kind, topic, payload). Agents are split between connections."""
    rng = random.Random(seed * 1000 + conn_no)
    mine = [i for i in range(agents) if i % connections == conn_no] or [conn_no % agents]
    revoked = [i for i in range(REVOKED_AGENTS) if i % connections == conn_no]
    seqs: dict[str, int] = {}
    stored: list[ResultEnvelope] = []  # valid results sent, for re-sends and reused ids
    count = messages // connections + (1 if conn_no < messages % connections else 0)
    at = datetime.now(UTC) - timedelta(days=2)

    def next_seq(agent: str) -> int:
        seqs[agent] = seqs.get(agent, 0) + 1
        return seqs[agent]

    for n in range(count):
        at += timedelta(seconds=1)
        roll, kind = rng.random(), "valid"
        for k, share in SHARES.items():
            if roll < share:
                kind = k
                break
            roll -= share
        if kind in ("resend", "reused") and len(stored) <= REUSE_DISTANCE:
            kind = "valid"  # nothing old enough to re-send yet
        if kind == "revoked" and not revoked:
            kind = "forged"
        if kind == "valid":
            i = rng.choice(mine)
            agent = f"gw-{i}"
            env = _envelope(agent, f"line-{i}", f"site-{i}", next_seq(agent), at, rng)
            stored.append(env)
            yield kind, results_topic(agent), env.to_json()
        elif kind == "resend":
            env = rng.choice(stored[: len(stored) - REUSE_DISTANCE])
            yield kind, results_topic(env.agent_id), env.to_json()
        elif kind == "reused":
            env = rng.choice(stored[: len(stored) - REUSE_DISTANCE])
            altered = env.model_copy(update={"verdict": Verdict.PROBLEMS})
            yield kind, results_topic(env.agent_id), altered.to_json()
        elif kind == "forged":
            i, j = rng.choice(mine), rng.randrange(agents)
            j = j if j != i else (j + 1) % max(agents, 2)
            agent = f"gw-{i}"
            env = _envelope(agent, f"line-{j}", f"site-{j}", next_seq(agent), at, rng)
            yield kind, results_topic(agent), env.to_json()
        elif kind == "poison":
            i = rng.choice(mine)
            agent = f"gw-{i}"
            env = _envelope(agent, f"line-{i}", f"site-{i}", next_seq(agent), at, rng)
            yield kind, results_topic(agent), _poison(env, POISON[n % len(POISON)])
        else:
            r = rng.choice(revoked)
            agent = f"rv-{r}"
            env = _envelope(agent, f"rvline-{r}", f"rvsite-{r}", next_seq(agent), at, rng)
            yield kind, results_topic(agent), env.to_json()


def publish(port: int, connections: int, messages: int, agents: int, seed: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """The hostile fleet, in its own process: one thread and MQTT connection per plan."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    counts: dict[str, int] = {}
    lock = threading.Lock()

    def run(conn_no: int) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"adv-pub-{conn_no}")
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(2000)
        client.connect("127.0.0.1", port)
        client.loop_start()
        mine: dict[str, int] = {}
        pending = []
        for kind, topic, payload in connection_plan(conn_no, connections, messages, agents, seed):
            info = client.publish(topic, payload, qos=1)
            while info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # paho's own queue is full: let it drain
                time.sleep(0.005)
                info = client.publish(topic, payload, qos=1)
            pending.append(info)
            if len(pending) >= 1000:
                for p in pending:
                    p.wait_for_publish(60)
                pending = []
            mine[kind] = mine.get(kind, 0) + 1
        for p in pending:
            p.wait_for_publish(60)
        client.disconnect()
        client.loop_stop()
        with lock:
            for k, v in mine.items():
                counts[k] = counts.get(k, 0) + v

    threads = [threading.Thread(target=run, args=(c,)) for c in range(connections)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out.put(counts)


# --- the collector side -----------------------------------------------------------------------------------


class Progress:
    """Samples ingest: the longest time messages waited while no batch completed, and peak RSS."""

    def __init__(self, ingestor: Ingestor):
        self.ingestor = ingestor
        self.last_progress = time.monotonic()
        self.longest_stall = 0.0
        self.over_limit = 0
        self.peak_rss = 0
        self._stop = threading.Event()
        ingestor.on_batch = self._on_batch
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _on_batch(self, *_args: object) -> None:
        now = time.monotonic()
        self.longest_stall = max(self.longest_stall, now - self.last_progress)
        self.over_limit += now - self.last_progress >= STALL_LIMIT_S
        self.last_progress = now

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.05):
            self.peak_rss = max(self.peak_rss, me.memory_info().rss)
            if self.ingestor.health().pending == 0:
                self.last_progress = time.monotonic()  # idle is not a stall
            else:
                self.longest_stall = max(self.longest_stall, time.monotonic() - self.last_progress)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _database(pg: bool, workdir: Path) -> tuple[str, object]:
    if not pg:
        return f"sqlite:///{workdir}/collector.db", None
    from sqlalchemy import create_engine, text

    admin_url = os.environ.get("LINECHECK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"linecheck_adversarial_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return admin_url.rsplit("/", 1)[0] + "/" + name, (admin, name)


def _drop(handle: object) -> None:
    if handle is None:
        return
    from sqlalchemy import text

    admin, name = handle  # type: ignore[misc]
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _db_counts(store: Store) -> tuple[int, int]:
    from sqlalchemy import func, select

    from collector.store import schema as t

    with store.engine.connect() as conn:
        return (int(conn.execute(select(func.count()).select_from(t.results)).scalar_one()),
                int(conn.execute(select(func.count()).select_from(t.quarantine)).scalar_one()))


def measure(workdir: Path, messages: int = 100_000, agents: int = 1000, connections: int = 8, pg: bool = False,
            seed: int = 16, timeout_s: float = 3600.0, batch_max: int = 500,
            batch_target_s: float = 0.1) -> Figures:
    workdir.mkdir(parents=True, exist_ok=True)
    gc.set_threshold(50_000, 20, 100)  # as `linecheck-collector serve` sets it (collector/cli/serve.py)
    url, handle = _database(pg, workdir)
    broker = bench_broker(workdir / "broker")
    store = Store(url, hooks=[RuleEngine(RulesConfig()).on_ingest])
    figures = Figures(backend="postgresql" if pg else "sqlite", batch_max=batch_max,
                      batch_target_s=batch_target_s)
    try:
        enrol_fleet(store, agents, workdir / "ca")
        cfg = CollectorConfig.model_validate({"database": url, "ingest": {"batch_max": batch_max,
                                                                              "batch_target_s": batch_target_s},
                                              "mqtt": {"port": broker.port, "client_id": "adversarial-collector"}})
        ingestor = Ingestor(cfg, store)
        progress = Progress(ingestor)
        worker = threading.Thread(target=ingestor.run, daemon=True)
        worker.start()
        if not ingestor.subscribed.wait(30):
            raise RuntimeError("the collector did not subscribe")
        progress.start()
        started = time.monotonic()
        counts: mp.Queue = mp.get_context("fork").Queue()  # type: ignore[type-arg]
        fleet = mp.get_context("fork").Process(target=publish, args=(broker.port, connections, messages, agents,
                                                                     seed, counts))
        fleet.start()
        figures.sent = counts.get(timeout=timeout_s)
        fleet.join(60)
        end = started + timeout_s
        while ingestor.stored + ingestor.duplicates + ingestor.quarantined < figures.total:
            if time.monotonic() > end:
                break
            time.sleep(0.05)
        figures.elapsed_s = time.monotonic() - started
        progress.stop()
        ingestor.stop()
        worker.join(30)
        figures.stored, figures.duplicates, figures.quarantined = (ingestor.stored, ingestor.duplicates,
                                                                   ingestor.quarantined)
        figures.db_stored, figures.db_quarantined = _db_counts(store)
        figures.longest_stall_s, figures.stalls_over_limit = progress.longest_stall, progress.over_limit
        figures.peak_rss_mb = progress.peak_rss / 2**20
        figures.load = os.getloadavg()
    finally:
        store.close()
        broker.stop()
        _drop(handle)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.adversarial", description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--connections", type=int, default=8, help="MQTT connections of the hostile fleet")
    p.add_argument("--pg", action="store_true", help="a fresh PostgreSQL database ($LINECHECK_TEST_PG's server)")
    p.add_argument("--batch-max", type=int, default=500, help="ingest.batch_max (the collector's default: 500)")
    p.add_argument("--batch-target", type=float, default=0.1,
                   help="ingest.batch_target_s (the collector's default: 0.1)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (broker log, SQLite file)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # every hostile message is logged as quarantined otherwise
    work = Path(tempfile.mkdtemp(prefix="bench-adversarial-"))
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    figures = measure(work, args.messages, args.agents, args.connections, args.pg, batch_max=args.batch_max,
                      batch_target_s=args.batch_target)
    print(figures.report())
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if figures.correct else 1


if __name__ == "__main__":
    raise SystemExit(main())
