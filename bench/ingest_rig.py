"""What the ingest benches share: a private broker sized for a backlog, the real collector process,
and the reference they are compared with — a bare paho subscriber that only counts.

The broker is Mosquitto on a free port with the limits of config/mosquitto.conf except the queue:
Mosquitto keeps at most 1000 messages per offline client by default (DESIGN.md) and the reference
config 100 000; a backlog of 100 000 results queued for two sessions (collector and reference)
needs more, so the bench broker holds up to QUEUE_MAX messages per client and no byte limit.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from linecheck.wire import ALL_RESULTS  # noqa: E402
from tests.helpers import start, stop  # noqa: E402
from tests.mosquitto import Broker  # noqa: E402

F = TypeVar("F")  # a bench's figures

QUEUE_MAX = 1_000_000
# As config/mosquitto.conf, with the queue raised (see the module docstring).
BROKER_CONFIG = (f"max_queued_messages {QUEUE_MAX}\nmax_queued_bytes 0\nmax_packet_size 263168\n"
                 "max_inflight_messages 20\nautosave_interval 60\n")


def bench_broker(workdir: Path, extra: str = "") -> Broker:
    if not shutil.which("mosquitto"):
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    workdir.mkdir(parents=True, exist_ok=True)
    broker = Broker(workdir, BROKER_CONFIG + extra)
    broker.start()
    return broker


class BareSubscriber:
    """The reference: subscribes to every agent's results at QoS 1 and counts them, nothing else."""

    def __init__(self, port: int, client_id: str = "bare-reference", persistent: bool = False):
        self.port = port
        self.count = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent)
        self.client.on_connect = lambda c, *_: c.subscribe(ALL_RESULTS, 1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, _c: object, _u: object, _msg: object) -> None:
        now = time.monotonic()
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        self.count += 1

    def connect(self, timeout_s: float = 10.0) -> float:
        """Connect and subscribe; returns the monotonic time the connection was started."""
        started = time.monotonic()
        self.client.connect("127.0.0.1", self.port, keepalive=60)
        self.client.loop_start()
        if not self._subscribed.wait(timeout_s):
            raise TimeoutError("the reference subscriber could not subscribe")
        return started

    def wait_count(self, n: int, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while self.count < n:
            if time.monotonic() >= end:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class CollectorProcess:
    """`linecheck-collector serve` (python -m collector.cli) on its own SQLite file or DSN, with its
    peak RSS sampled by psutil while it runs."""

    def __init__(self, workdir: Path, port: int, database: str | None = None, extra_yaml: str = "",
                 client_id: str = "linecheck-collector"):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.db_path = workdir / "collector.db"
        self.database = database or f"sqlite:///{self.db_path}"
        self.config = workdir / "collector.yaml"
        self.config.write_text(f"database: {self.database}\nmqtt: {{host: 127.0.0.1, port: {port}, "
                               f"client_id: {client_id}}}\nhttp: {{port: 0}}\n{extra_yaml}")
        self.log = workdir / "collector.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        self.started_at = 0.0
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    def _subscriptions(self) -> int:
        if not self.log.exists():
            return 0
        return self.log.read_text(errors="replace").count("collector subscribed to results")

    def start(self, timeout_s: float = 60.0) -> float:
        """Start it and wait until it has subscribed; returns the monotonic time it was started."""
        before = self._subscriptions()
        self.started_at = time.monotonic()
        self.proc = start("collector.cli", "serve", "--config", str(self.config), "--log-level", "INFO", log=self.log)
        self._sampling.set()
        self._sampler = threading.Thread(target=self._sample, args=(self.proc.pid,), daemon=True)
        self._sampler.start()
        end = time.monotonic() + timeout_s
        while self._subscriptions() <= before:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the collector exited with {self.proc.returncode}; see {self.log}")
            if time.monotonic() >= end:
                raise TimeoutError(f"the collector did not subscribe within {timeout_s} s; see {self.log}")
            time.sleep(0.05)
        return self.started_at

    def _sample(self, pid: int) -> None:
        try:
            proc = psutil.Process(pid)
            while self._sampling.is_set():
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
                time.sleep(0.1)
        except psutil.NoSuchProcess:
            return

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) the running collector has used so far."""
        assert self.proc is not None
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self._sampling.clear()
        if self.proc is not None:
            stop(self.proc)
        if self._sampler is not None:
            self._sampler.join(5)


def stored_outcome(db_path: Path) -> tuple[int, int, dict[str, int], int]:
    """What the collector's SQLite holds after a run: results, distinct result ids, tickets per
    fault class, agents with an `online` status."""
    db = sqlite3.connect(db_path)
    try:
        stored, distinct = db.execute("SELECT count(*), count(DISTINCT result_id) FROM results").fetchone()
        tickets = dict(db.execute("SELECT fault_class, count(*) FROM tickets GROUP BY fault_class").fetchall())
        online = db.execute("SELECT count(*) FROM agents WHERE status = 'online'").fetchone()[0]
    finally:
        db.close()
    return int(stored), int(distinct), tickets, int(online)


def bench_main(argv: list[str] | None, prog: str, description: str, agents: int, results: int,
               measure: Callable[[Path, int, int, int], F], correct: Callable[[F], bool]) -> int:
    """The command line both ingest benches share: run `measure`, print its report, exit 1 if not `correct`."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--agents", type=int, default=agents)
    p.add_argument("--results", type=int, default=results)
    p.add_argument("--connections", type=int, default=4, help="MQTT connections of the fleet simulator")
    p.add_argument("--keep", action="store_true", help="keep the work directory (broker and collector logs)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix=f"bench-{prog.rsplit('.', 1)[-1]}-"))
    started = time.monotonic()
    figures = measure(work, args.agents, args.results, args.connections)
    print(figures.report())  # type: ignore[attr-defined]
    print(f"(whole run {time.monotonic() - started:.0f} s; work directory {work}{'' if args.keep else ', removed'})")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if correct(figures) else 1
