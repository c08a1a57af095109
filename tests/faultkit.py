"""Fault-injection kit: synthetic sequence-numbered results, and the programs the fault suite kills.

`python -m tests.faultkit agent ...` is a real agent delivery stack (the agent's Spool and Publisher,
unchanged) fed with synthetic results at a chosen pace and on a simulated clock, so 14 days offline
take seconds. `python -m tests.faultkit collector ...` is the real collector (Store + Ingestor) with
an optional ingest hook that announces and stretches each commit, so a test can kill -9 it *inside*
the transaction. The counts of a run come from the two databases (see `tally`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from linecheck.wire import CheckResult, Finding, ResultEnvelope, Status, Trigger, Verdict, new_result_id

DAY_S = 86400.0


def make_envelope(agent_id: str, n: int = 0, *, problems: bool = False, pad: int = 0,
                  at: float | None = None) -> ResultEnvelope:
    """A plausible ping result (seq unset); `problems` adds a finding, `pad` bytes of reason text."""
    started = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    metrics: dict[str, float | int | None] = {"sent_count": 10, "received_count": 8 if problems else 10,
                                             "loss_pct": 20.0 if problems else 0.0, "rtt_avg_ms": 3.0 + n % 7,
                                             "rtt_min_ms": 2.5, "rtt_max_ms": 9.0, "rtt_mdev_ms": 0.4,
                                             "jitter_ms": 0.3}
    check = CheckResult(kind="ping", status=Status.FAILED if problems else Status.OK, duration_s=2.0,
                        metrics=metrics, target="198.18.0.1",
                        reason=("20% loss " + "x" * pad)[:2000] if problems or pad else None)
    findings = [Finding(code="packet_loss", severity="critical", check="ping", where="wan",
                        message="One in five packets to the gateway was lost.", detail={"loss_pct": 20.0})
                ] if problems else []
    return ResultEnvelope(result_id=new_result_id(int(started.timestamp() * 1000)), agent_id=agent_id, seq=1,
                          line_id=f"{agent_id}-line", site_id="fault-site", trigger=Trigger.SCHEDULE,
                          started_at=started, ended_at=started, agent_version="faultkit", checks=[check],
                          verdict=Verdict.PROBLEMS if problems else Verdict.HEALTHY, findings=findings)


# --- watching the broker ------------------------------------------------------------------------


class Watcher:
    """A plain MQTT subscriber that records what passes, for tests to assert on (and to answer with)."""

    def __init__(self, port: int, *topics: str, client_id: str = "watcher"):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("watcher could not subscribe")

    def _on_message(self, _c: object, _u: object, msg: object) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))  # type: ignore[attr-defined]

    def payloads(self, suffix: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- counting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    sent: int  # results the agent committed to its spool (seq allocated)
    receipted: int  # results the agent removed from its spool on a collector receipt
    stored: int  # distinct results of the agent in the collector's database
    lost: int  # committed, never stored and not deliberately evicted
    duplicates_stored: int  # rows beyond one per seq (must be 0)
    evicted: int  # dropped by the spool's bounds (deliberate, counted)

    def line(self, name: str) -> str:
        return (f"{name}: sent={self.sent} receipted={self.receipted} stored={self.stored} lost={self.lost} "
                f"duplicates_stored={self.duplicates_stored} evicted={self.evicted}")


@contextmanager
def _ro(path: Path) -> Iterator[sqlite3.Connection]:
    """Read-only, and closed after use (sqlite3's own context manager only commits, and polling
    loops would run out of file descriptors)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield db
    finally:
        db.close()


def spool_counts(spool: Path) -> tuple[int, int, set[int]]:
    """(sent, receipted, seqs dropped by eviction) read from an agent's spool file."""
    with _ro(spool) as db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        dropped = {s for (s,) in db.execute("SELECT seq FROM evictions WHERE action='dropped'")}
    return meta["next_seq"] - 1, meta.get("receipted", 0), dropped


def stored_seqs(db_path: Path, agent_id: str) -> list[int]:
    if not db_path.exists():
        return []
    with _ro(db_path) as db:
        try:
            return [s for (s,) in db.execute("SELECT seq FROM results WHERE agent_id=?", (agent_id,))]
        except sqlite3.OperationalError:  # not migrated yet
            return []


def stored_envelopes(db_path: Path, agent_id: str) -> list[bytes]:
    """The envelopes the collector stored for an agent, as JSON again (one row + document per result)."""
    from sqlalchemy import create_engine, select

    from collector.store import schema
    from collector.store.documents import payload_json

    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(schema.results).where(schema.results.c.agent_id == agent_id)).mappings()
            return [payload_json(row).encode() for row in rows]
    finally:
        engine.dispose()


def tally(spool: Path, db_path: Path, agent_id: str) -> Tally:
    sent, receipted, dropped = spool_counts(spool)
    seqs = stored_seqs(db_path, agent_id)
    distinct = set(seqs)
    lost = set(range(1, sent + 1)) - distinct - dropped
    return Tally(sent, receipted, len(distinct), len(lost), len(seqs) - len(distinct), len(dropped))


# --- the synthetic agent ------------------------------------------------------------------------


class SimClock:
    """The agent's wall clock, advanced by `step_s` per result: weeks pass in seconds."""

    def __init__(self, start: float, step_s: float):
        self.now = start
        self.step_s = step_s
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def tick(self) -> float:
        with self._lock:
            self.now += self.step_s
            return self.now


def run_agent(args: argparse.Namespace) -> int:
    from agent import config as agent_config
    from agent.publisher import Publisher
    from agent.spool import SpoolRefused, open_spool

    cfg = agent_config.load(args.config)
    clock = SimClock(time.time() - args.count * args.step_s if args.step_s else time.time(), args.step_s)
    spool = open_spool(cfg, clock=clock if args.step_s else time.time)
    publisher = Publisher(cfg, spool)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    publisher.start()
    pump = threading.Thread(target=publisher.run, args=(stop, 0.5), daemon=True)
    pump.start()
    made = 0
    while made < args.count and not stop.is_set():
        made += 1
        at = clock.tick() if args.step_s else time.time()
        problems = bool(args.problem_every) and made % args.problem_every == 0
        env = make_envelope(cfg.agent_id, made, problems=problems, pad=args.pad, at=at)
        try:
            stored = spool.enqueue(env)
        except SpoolRefused as exc:
            print(f"refused {exc}", flush=True)
        else:
            print(f"spooled {stored.seq}", flush=True)
            if args.duplicate:  # the same message twice on the wire: the collector must store it once
                publisher.client.publish(f"linecheck/v1/agents/{cfg.agent_id}/results", stored.to_json(), qos=1)
        publisher.wake.set()
        if args.interval_s:
            stop.wait(args.interval_s)
    print("all spooled", flush=True)
    while not stop.is_set() and not (args.exit_when_empty and spool.count() == 0):
        stop.wait(0.1)
    stop.set()
    pump.join(5)
    publisher.stop()
    spool.close()
    print("agent done", flush=True)
    return 0


# --- the collector, with a commit that can be caught in the act ---------------------------------


def run_collector(args: argparse.Namespace) -> int:
    from collector import config as collector_config
    from collector.ingest.worker import Ingestor
    from collector.store.database import Store

    cfg = collector_config.load(args.config)
    store = Store(cfg.database)
    if args.commit_pause_s:
        def announce_and_stall(_conn: object, fresh: object, *_: object) -> None:
            # Inside the ingest transaction: results written, not committed. The test waits for
            # this line and kills us here.
            print(f"in-commit {len(fresh)}", flush=True)  # type: ignore[arg-type]
            time.sleep(args.commit_pause_s)

        store.hooks.append(announce_and_stall)  # type: ignore[arg-type]
    ingestor = Ingestor(cfg, store)
    signal.signal(signal.SIGTERM, lambda *_: ingestor.stop())

    def announce() -> None:
        if ingestor.subscribed.wait(60):
            print("subscribed", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    ingestor.run()
    store.close()
    return 0


# --- the rig: broker, collector and agent processes, and the scenarios -----------------------------

ROOT = Path(__file__).resolve().parent.parent


def reserved_port() -> int:
    """A free port below the kernel's ephemeral range: a broker started minutes after its port was
    chosen must not find it taken by some process's outgoing connection meanwhile."""
    import random
    import socket

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(20000, max(20001, low))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port below the ephemeral range")


class Rig:
    """One agent, one collector (SQLite), one Mosquitto: real processes in a work directory."""

    def __init__(self, work: Path, agent_id: str = "fault-gw", *, spool: str = "", mqtt: str = "",
                 data_dir: Path | None = None):
        from tests.mosquitto import Broker

        self.work = work
        self.agent_id = agent_id
        (work / "broker").mkdir(parents=True, exist_ok=True)
        # The broker's port is fixed now, so an agent can be pointed at a broker not yet started.
        self.broker = Broker(work / "broker", extra_config="autosave_interval 1\n")
        self.broker.port = reserved_port()
        self.db = work / "collector.db"
        self.data_dir = data_dir or work / "agent-data"
        self.spool = self.data_dir / "spool.sqlite"
        self.agent_cfg = work / "agent.yaml"
        self.agent_cfg.write_text(
            f"agent_id: {agent_id}\nline_id: {agent_id}-line\nsite_id: fault-site\ndata_dir: {self.data_dir}\n"
            f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, keepalive_s: 5, resend_after_s: 2, "
            f"resend_max_s: 4, reconnect_min_s: 0.1, reconnect_max_s: 1.0{mqtt}}}\n"
            + (f"spool: {{{spool}}}\n" if spool else ""))
        self.collector_cfg = work / "collector.yaml"
        self.collector_cfg.write_text(
            f"database: sqlite:///{self.db}\nmqtt: {{host: 127.0.0.1, port: {self.broker.port}, keepalive_s: 5}}\n"
            "ingest: {batch_max: 50}\n")
        self.procs: list[subprocess.Popen[str]] = []
        self.agent: subprocess.Popen[str] | None = None
        self.collector: subprocess.Popen[str] | None = None

    # processes
    def _spawn(self, *args: str) -> subprocess.Popen[str]:
        log = (self.work / f"{args[0]}.log").open("a")
        proc = subprocess.Popen([sys.executable, "-m", "tests.faultkit", *args], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=log, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.procs.append(proc)
        proc.lines = []  # type: ignore[attr-defined]
        threading.Thread(target=_collect, args=(proc,), daemon=True).start()
        return proc

    def start_agent(self, count: int, *extra: str) -> subprocess.Popen[str]:
        self.agent = self._spawn("agent", "--config", str(self.agent_cfg), "--count", str(count), *extra)
        return self.agent

    def start_collector(self, *extra: str) -> subprocess.Popen[str]:
        self.collector = self._spawn("collector", "--config", str(self.collector_cfg), *extra)
        return self.collector

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.broker.stop()

    # observation
    def stored(self) -> int:
        return len(set(stored_seqs(self.db, self.agent_id)))

    def backlog(self) -> int:
        if not self.spool.exists():
            return -1
        with _ro(self.spool) as db:
            return int(db.execute("SELECT count(*) FROM results").fetchone()[0])

    def delivered(self) -> bool:
        """The agent has produced all it was asked to, every committed result is stored or was
        deliberately dropped, and every receipt is back at the agent."""
        if self.agent is None or not printed(self.agent, "all spooled") or not self.spool.exists():
            return False
        sent, _, dropped = spool_counts(self.spool)
        return self.backlog() == 0 and set(range(1, sent + 1)) <= set(stored_seqs(self.db, self.agent_id)) | dropped

    def tally(self) -> Tally:
        return tally(self.spool, self.db, self.agent_id)


def _collect(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        proc.lines.append(line.strip())  # type: ignore[attr-defined]


def printed(proc: subprocess.Popen[str], prefix: str) -> list[str]:
    return [line for line in proc.lines if line.startswith(prefix)]  # type: ignore[attr-defined]


def _wait(condition: object, timeout: float, what: str) -> None:
    from tests.helpers import wait_for

    wait_for(condition, timeout, what)  # type: ignore[arg-type]


def _kill(proc: subprocess.Popen[str] | None) -> None:
    assert proc is not None
    proc.kill()  # SIGKILL: no handler, no flush, no goodbye
    proc.wait()


def _spool_intact(rig: Rig) -> None:
    with _ro(rig.spool) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def scenario_reference(rig: Rig, n: int = 120) -> Tally:
    """No fault: the reference the bench compares the time of every scenario with."""
    rig.broker.start()
    rig.start_collector()
    rig.start_agent(n, "--interval-s", "0.01")
    _wait(rig.delivered, 60, "delivery")
    return rig.tally()


def scenario_agent_kill(rig: Rig, n: int = 120, at: float = 0.25) -> Tally:
    """kill -9 the agent while it publishes; a restarted agent delivers the rest."""
    rig.broker.start()
    rig.start_collector()
    agent = rig.start_agent(n, "--interval-s", "0.01")
    _wait(lambda: rig.stored() >= max(1, int(n * at)), 60, "part of the results stored")
    _kill(agent)
    _spool_intact(rig)
    rig.start_agent(0, "--exit-when-empty")
    _wait(rig.delivered, 60, "the restarted agent to deliver the rest")
    return rig.tally()


def scenario_collector_kill(rig: Rig, n: int = 120, at: float = 0.25) -> Tally:
    """kill -9 the collector inside an ingest transaction; a restarted collector stores the rest."""
    rig.broker.start()
    collector = rig.start_collector("--commit-pause-s", "0.3")
    _wait(lambda: printed(collector, "subscribed"), 30, "the collector's subscription")
    rig.start_agent(n, "--interval-s", "0.005")
    # Let some commits through (0 to 3, by `at`), then kill during the next: the hook prints
    # "in-commit" with the rows written and stalls inside the open transaction.
    before = int(at * 4)
    _wait(lambda: len(printed(collector, "in-commit")) > before, 60, "a commit in progress")
    _kill(collector)
    committed = sum(int(line.split()[1]) for line in printed(collector, "in-commit")[:before])
    assert rig.stored() == committed, "the killed transaction left rows behind"
    rig.start_collector()
    _wait(rig.delivered, 90, "the restarted collector to store everything")
    return rig.tally()


def scenario_broker_kill(rig: Rig, n: int = 120, at: float = 0.25) -> Tally:
    """kill -9 the broker mid-flow (it loses what it held since its last save) and restart it."""
    rig.broker.start()
    rig.start_collector()
    rig.start_agent(n, "--interval-s", "0.01")
    _wait(lambda: rig.stored() >= max(1, int(n * at)), 60, "part of the results stored")
    rig.broker.stop(kill=True)
    rig.broker.start()
    _wait(rig.delivered, 90, "delivery after the broker restart")
    return rig.tally()


def scenario_offline_days(rig: Rig, days: int = 14, per_day: int = 24) -> Tally:
    """The broker is unreachable for `days` simulated days; the spool holds every result."""
    agent = rig.start_agent(days * per_day, "--step-s", str(DAY_S / per_day))
    _wait(lambda: printed(agent, "all spooled"), 60, "the simulated days to pass")
    assert agent.poll() is None, "the agent died while offline"
    rig.broker.start()
    rig.start_collector()
    _wait(rig.delivered, 120, "the backlog to drain once the broker is back")
    return rig.tally()


def scenario_disk_full(rig: Rig, n: int = 300) -> Tally:
    """The spool's disk fills while the broker is away: evictions are counted, the agent goes on."""
    agent = rig.start_agent(n, "--pad", "1500", "--problem-every", "5")
    _wait(lambda: printed(agent, "all spooled"), 60, "the results to be produced")
    assert agent.poll() is None, "the agent died on a full disk"
    rig.broker.start()
    rig.start_collector()
    _wait(rig.delivered, 90, "what the spool kept to be delivered")
    return rig.tally()


def scenario_duplicates(rig: Rig, n: int = 100) -> Tally:
    """Every result published twice by the agent, then everything replayed once more: stored once."""
    rig.broker.start()
    rig.start_collector()
    rig.start_agent(n, "--interval-s", "0.005", "--duplicate")
    _wait(rig.delivered, 60, "delivery")
    payloads = stored_envelopes(rig.db, rig.agent_id)
    replay = Watcher(rig.broker.port, "linecheck/v1/agents/+/receipts", client_id="replayer")
    try:
        for p in payloads:
            replay.publish(f"linecheck/v1/agents/{rig.agent_id}/results", p)
        _wait(lambda: len(replay.payloads("/receipts")) >= 1 and sum(
            len(json.loads(r)["result_ids"]) for r in replay.payloads("/receipts")) >= n, 30, "receipts of the replay")
        assert {json.loads(r)["status"] for r in replay.payloads("/receipts")} == {"duplicate"}
    finally:
        replay.close()
    return rig.tally()


def scenario_collector_backlog(rig: Rig, n: int = 300) -> Tally:
    """The collector is down while the agent publishes a backlog; on restart it drains it."""
    rig.broker.start()
    collector = rig.start_collector()
    # Its persistent session exists at the broker once it has subscribed: from then on the broker
    # queues results for it while it is down.
    _wait(lambda: printed(collector, "subscribed"), 30, "the collector's session")
    collector.terminate()
    collector.wait(10)
    agent = rig.start_agent(n, "--interval-s", "0.002")
    _wait(lambda: printed(agent, "all spooled"), 60, "the backlog to be produced")
    assert rig.stored() == 0
    rig.start_collector()
    _wait(rig.delivered, 90, "the backlog to be stored")
    return rig.tally()


SCENARIOS = {
    "agent_kill_9_mid_publish": scenario_agent_kill,
    "collector_kill_9_mid_commit": scenario_collector_kill,
    "broker_kill_9_and_restart": scenario_broker_kill,
    "broker_unreachable_14_days": scenario_offline_days,
    "disk_full_on_agent_spool": scenario_disk_full,
    "duplicate_delivery": scenario_duplicates,
    "collector_restart_with_backlog": scenario_collector_backlog,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.faultkit")
    sub = p.add_subparsers(dest="role", required=True)
    a = sub.add_parser("agent")
    a.add_argument("--config", required=True)
    a.add_argument("--count", type=int, default=100, help="results to produce")
    a.add_argument("--interval-s", type=float, default=0.0, help="real seconds between results")
    a.add_argument("--step-s", type=float, default=0.0, help="simulated agent-clock seconds per result")
    a.add_argument("--pad", type=int, default=0, help="bytes of padding per result")
    a.add_argument("--problem-every", type=int, default=0, help="every n-th result has a finding")
    a.add_argument("--duplicate", action="store_true", help="publish every result a second time")
    a.add_argument("--exit-when-empty", action="store_true", help="exit once every result is receipted")
    c = sub.add_parser("collector")
    c.add_argument("--config", required=True)
    c.add_argument("--commit-pause-s", type=float, default=0.0, help="stall inside each ingest transaction")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_agent(args) if args.role == "agent" else run_collector(args)


if __name__ == "__main__":
    sys.exit(main())
