"""N real collectors in one MQTT shared-subscription group on a fresh PostgreSQL database.

The pieces bench/scale_pg.py and tests/test_scale_pg.py run: a private Mosquitto on a free port, a
uniquely named database (dropped afterwards), and `linecheck-collector serve` processes (the real
program, `python -m collector.cli`) joined by `mqtt.shared_group`. Everything a run concludes is read
back from the database (stored rows, duplicates, tickets) and from /proc (CPU seconds per process),
never from the collectors' own counters.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine

from collector.store import schema as t
from tests.helpers import wait_for
from tests.mosquitto import Broker

PG_ADMIN_URL = os.environ.get("LINECHECK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
GROUP = "collectors"
ROOT = Path(__file__).resolve().parent.parent
_TICK = os.sysconf("SC_CLK_TCK")

# The broker settings of config/mosquitto.conf that matter under load, so the bench measures the
# documented deployment: queues deep enough that nothing is dropped while collectors catch up.
BROKER_LIMITS = "max_queued_messages 100000\nmax_queued_bytes 536870912\nautosave_interval 60\n"


@contextmanager
def fresh_database(admin_url: str = PG_ADMIN_URL, prefix: str = "linecheck_scale") -> Iterator[str]:
    """Create a uniquely named database; yield its URL; drop it (sessions and all) afterwards."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process so far, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15 of stat)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (all cores)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return (total - idle) / _TICK, total / _TICK


@dataclass(frozen=True)
class Counts:
    rows: int  # result rows in the database
    distinct: int  # distinct (agent_id, seq): rows - distinct = duplicates stored
    tickets: dict[tuple[str, str], int]  # (line, fault class) -> tickets ever opened

    @property
    def duplicates(self) -> int:
        return self.rows - self.distinct


class CollectorGroup:
    """A broker and `n` collector processes sharing one subscription, on one PostgreSQL database."""

    def __init__(self, work: Path, db_url: str, *, batch_max: int = 500, batch_wait_s: float = 0.05,
                 session_expiry_s: int | None = None, broker_extra: str = ""):
        self.work = work
        self.db_url = db_url
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.session_expiry_s = session_expiry_s
        (work / "broker").mkdir(parents=True, exist_ok=True)
        self.broker = Broker(work / "broker", extra_config=BROKER_LIMITS + broker_extra)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._log_from: dict[str, int] = {}  # where each collector's current run starts in its log
        self._engine: Engine | None = None

    # --- processes ------------------------------------------------------------------------------
    def start_broker(self) -> None:
        self.broker.start()

    def config(self, name: str) -> Path:
        path = self.work / f"{name}.yaml"
        path.write_text(
            f"database: {self.db_url}\n"
            f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, client_id: {name}, keepalive_s: 5, "
            f"shared_group: {GROUP}"
            + (f", session_expiry_s: {self.session_expiry_s}" if self.session_expiry_s else "") + "}\n"
            f"ingest: {{batch_max: {self.batch_max}, batch_wait_s: {self.batch_wait_s}}}\n"
            "http: {enabled: false}\n")
        return path

    def log(self, name: str) -> Path:
        return self.work / f"{name}.log"

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start one collector; returns once its shared subscription is in place at the broker."""
        cmd = [sys.executable, "-m", "collector.cli", "serve", "--config", str(self.config(name))]
        self._log_from[name] = self.log(name).stat().st_size if self.log(name).exists() else 0
        with self.log(name).open("ab") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.procs[name] = proc
        wait_for(lambda: self.subscribed(name), 60, f"collector {name} to subscribe")
        return proc

    def subscribed(self, name: str) -> bool:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise RuntimeError(f"collector {name} exited with {proc.returncode}; see {self.log(name)}")
        with self.log(name).open("rb") as log:
            log.seek(self._log_from[name])  # a restarted collector: only what this run wrote
            return b"collector subscribed" in log.read()

    def start_all(self, n: int) -> list[str]:
        names = [f"c{i + 1}" for i in range(n)]
        for name in names:
            self.start(name)
        return names

    def kill(self, name: str) -> None:
        """SIGKILL: no clean disconnect, whatever was received and not committed is un-acked."""
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(10)

    def session_expired(self, name: str) -> bool:
        """The broker dropped this collector's session (and so its place in the group)."""
        log = self.broker.workdir / "mosquitto.log"
        return log.exists() and f"Expiring client {name} due to timeout".encode() in log.read_bytes()

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.broker.stop()
        if self._engine is not None:
            self._engine.dispose()

    # --- what the database says -----------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.db_url, pool_size=1, max_overflow=0)
        return self._engine

    def stored(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.results)).scalar_one())

    def counts(self) -> Counts:
        with self.engine.connect() as conn:
            rows, distinct = conn.execute(text(
                "SELECT count(*), count(DISTINCT (agent_id, seq)) FROM results")).one()
            tickets = conn.execute(select(t.tickets.c.line_id, t.tickets.c.fault_class, func.count())
                                   .group_by(t.tickets.c.line_id, t.tickets.c.fault_class)).all()
        return Counts(int(rows), int(distinct), {(r[0], r[1]): int(r[2]) for r in tickets})

    # --- CPU ------------------------------------------------------------------------------------
    def pids(self) -> dict[str, list[int]]:
        """Processes doing the work, by role: collectors, their PostgreSQL backends, the broker."""
        with self.engine.connect() as conn:
            backends = [int(p) for (p,) in conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"))]
        return {"collectors": [p.pid for p in self.procs.values() if p.poll() is None],
                "postgres": backends,
                "broker": [self.broker.proc.pid] if self.broker.proc else []}


# Backends of this database blocked on a lock right now: the per-agent and per-line advisory locks
# that serialise collectors whose batches hold results of the same agents or lines.
_LOCK_WAITERS = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                     "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")


class LockSampler:
    """Counts lock waiters every `every_s` in a thread of its own (own connection): the mean is how
    many collectors, on average, were waiting for another one's transaction to commit."""

    def __init__(self, group: CollectorGroup, every_s: float = 0.05):
        self.group = group
        self.every_s = every_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lock-sampler", daemon=True)

    def _run(self) -> None:
        engine = create_engine(self.group.db_url, pool_size=1, max_overflow=0)
        try:
            while not self._stop.wait(self.every_s):
                with engine.connect() as conn:
                    self.samples.append(int(conn.execute(_LOCK_WAITERS).scalar_one()))
        finally:
            engine.dispose()

    def __enter__(self) -> LockSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


class CpuMeter:
    """CPU seconds spent per role between `start()` and the last `sample()` (processes that exit in
    between keep what they had at their last sample)."""

    def __init__(self) -> None:
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._role: dict[int, str] = {}
        self._machine0 = machine_busy()
        self._machine1 = self._machine0

    def sample(self, pids: dict[str, list[int]]) -> None:
        for role, ids in pids.items():
            for pid in ids:
                used = cpu_seconds(pid)
                if used is None:
                    continue
                self._role[pid] = role
                self._first.setdefault(pid, used)
                self._last[pid] = used
        self._machine1 = machine_busy()

    def by_role(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, role in self._role.items():
            out[role] = out.get(role, 0.0) + self._last[pid] - self._first[pid]
        return out

    def machine(self) -> tuple[float, float]:
        """(busy CPU seconds of all processes on the machine, wall seconds x cores) in the window."""
        return self._machine1[0] - self._machine0[0], self._machine1[1] - self._machine0[1]
