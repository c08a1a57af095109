"""`linecheck-collector serve --workers N` (collector/ingest/pool.py): N supervised ingest processes.

End to end on a real Mosquitto and PostgreSQL: results of many agents land once each through two workers;
a worker frozen with results in hand and SIGKILLed is restarted under the same broker session and the broker
hands it again what it had not acked (the agents never re-send here, so nothing else could bring them);
SIGTERM stops the supervisor and every worker cleanly; /healthz is served once, by the supervisor.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bench.fleet_sim import FleetSim
from bench.pg_collectors import BROKER_LIMITS
from collector.config import CollectorConfig
from collector.ingest.pool import WorkerPool, worker_config, workers_problem
from collector.ingest.worker import IngestHealth
from tests.helpers import wait_for
from tests.mosquitto import Broker, free_port

ROOT = Path(__file__).resolve().parent.parent


# --- without a broker ----------------------------------------------------------------------------
def test_each_worker_has_its_own_session_in_one_group_and_no_http() -> None:
    cfg = CollectorConfig(mqtt={"client_id": "col.a"})  # type: ignore[arg-type]
    w0, w1 = worker_config(cfg, 0), worker_config(cfg, 1)
    assert (w0.mqtt.client_id, w1.mqtt.client_id) == ("col.a-w0", "col.a-w1")
    assert w0.mqtt.shared_group == w1.mqtt.shared_group == "col-a"  # a valid group name from the client id
    assert not w0.http.enabled and cfg.http.enabled
    named = CollectorConfig(mqtt={"client_id": "c", "shared_group": "fleet"})  # type: ignore[arg-type]
    assert worker_config(named, 3).mqtt.shared_group == "fleet"


def test_sqlite_with_several_workers_is_refused_with_the_reason(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/x.db\nhttp: {{enabled: false}}\n")
    assert workers_problem(CollectorConfig(), 1) is None
    out = subprocess.run([sys.executable, "-m", "collector.cli", "serve", "--config", str(cfg), "--workers", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--workers 2 needs a PostgreSQL database" in out.stderr and str(cfg) in out.stderr
    bad = subprocess.run([sys.executable, "-m", "collector.cli", "serve", "--config", str(cfg), "--workers", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--workers" in bad.stderr


STUCK_WORKER = """
import signal, sys, time
from collector.ingest.child import stop_then_exit_within
asked = []
signal.signal(signal.SIGTERM, stop_then_exit_within(lambda: asked.append(1), 1))
print("ready", flush=True)
time.sleep(60)  # a worker stuck in one call: the stop it was asked for never gets a turn
"""


def test_a_worker_stuck_after_sigterm_is_ended_by_its_alarm() -> None:
    # With the supervisor gone (PR_SET_PDEATHSIG sends the SIGTERM) nobody would SIGKILL a stuck worker.
    proc = subprocess.Popen([sys.executable, "-c", STUCK_WORKER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == -signal.SIGALRM
    finally:
        proc.kill()
        proc.wait()


def test_health_sums_the_workers_and_names_a_dead_one() -> None:
    pool = WorkerPool(CollectorConfig(), 2)
    up = IngestHealth(True, True, 3, 1.5, False, 1, None, partitions_owned=2, redelivered=5)
    pool.slots[0].health, pool.slots[0].reported, pool.slots[0].process = up, 1e18, object()  # type: ignore[assignment]
    pool.slots[1].health, pool.slots[1].reported, pool.slots[1].process = up, 1e18, object()  # type: ignore[assignment]
    h = pool.health()
    assert (h.connected, h.pending, h.partitions_owned, h.redelivered, h.db_retries) == (True, 6, 4, 10, 2)
    assert h.problems() == []
    pool.slots[1].process, pool.slots[1].restart_at = None, 1.0
    h = pool.health()
    assert h.pending == 3 and h.problems() == ["ingest worker 1 not running (restarting)"]


# --- end to end --------------------------------------------------------------------------------
class Serve:
    """`linecheck-collector serve --workers 2` on its own Mosquitto and a fresh PostgreSQL database."""

    def __init__(self, work: Path, db_url: str):
        self.work, self.db_url = work, db_url
        (work / "broker").mkdir()
        self.broker = Broker(work / "broker", extra_config=BROKER_LIMITS)
        self.broker.start()
        self.http_port = free_port()
        self.config = work / "collector.yaml"
        self.config.write_text(
            f"database: {db_url}\n"
            f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, client_id: wk, keepalive_s: 5}}\n"
            "ingest: {batch_max: 50}\n"
            f"http: {{port: {self.http_port}}}\n")
        self.log = work / "serve.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "collector.cli", "serve", "--config", str(self.config), "--workers", "2"],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.engine = create_engine(db_url, pool_size=1, max_overflow=0)

    def text(self) -> str:
        if self.proc.poll() is not None and self.proc.returncode != 0:
            raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        return self.log.read_text()

    def worker_pids(self, index: int) -> list[int]:
        return [int(p) for p in re.findall(rf"ingest worker {index} started \(pid (\d+)", self.text())]

    def subscribed(self, index: int, times: int = 1) -> bool:
        return self.text().count(f"worker {index} collector.ingest.worker: collector subscribed") >= times

    def healthz(self) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def counts(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            rows, distinct = conn.execute(text("SELECT count(*), count(DISTINCT (agent_id, result_id)) "
                                               "FROM results")).one()
        return int(rows), int(distinct)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for index in (0, 1):
            for pid in self.worker_pids(index) if self.log.exists() else []:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
        self.engine.dispose()
        self.broker.stop()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def serve(pg_url: str, tmp_path: Path) -> Iterator[Serve]:
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (scripts/setup.sh --test installs it when run as root)")
    s = Serve(tmp_path, pg_url)
    yield s
    s.close()


@pytest.mark.broker
@pytest.mark.postgres
def test_two_workers_store_once_survive_a_killed_worker_and_stop_on_sigterm(serve: Serve) -> None:
    wait_for(lambda: serve.subscribed(0) and serve.subscribed(1), 90, "both workers to subscribe")
    wait_for(lambda: serve.healthz()[0] == 200, 30, "/healthz ok from the supervisor")
    # Agents never re-send within the test: what is stored came from the broker, not from a spool.
    sim = FleetSim("127.0.0.1", serve.broker.port, 60, resend_after_s=600, down_every=10, latency_every=10,
                   prefix="wk")
    try:
        sim.connect()
        sim.preload(600)
        sim.run()
        assert sim.wait_receipts(90), sim.counts()
        assert serve.counts() == (600, 600)

        # Worker 1 frozen: the broker goes on giving it its share, which it holds un-acked; then killed.
        victim = serve.worker_pids(1)[-1]
        os.kill(victim, signal.SIGSTOP)
        sim.preload(400)
        sim.run()
        assert sim.wait_published(60)
        wait_for(lambda: serve.counts()[0] >= 600 + 100, 60, "worker 0 to store its share")
        held = 1000 - serve.counts()[0]
        assert held > 0, "worker 1 held nothing when it was killed: the scenario was not exercised"
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: f"ingest worker 1 (pid {victim}) died" in serve.text(), 30, "the supervisor to notice")
        assert "killed by SIGKILL" in serve.text()
        wait_for(lambda: len(serve.worker_pids(1)) == 2 and serve.subscribed(1, times=2), 90,
                 "worker 1 to be restarted and subscribe again")
        assert sim.wait_receipts(90), sim.counts()
    finally:
        sim.close()
    counts = sim.counts()
    assert counts["resent"] == 0 and counts["receipted"] == 1000, counts
    assert serve.counts() == (1000, 1000)  # every result once: the killed worker's share came again
    wait_for(lambda: serve.healthz() == (200, "ok\n"), 30, "/healthz ok again after the restart")
    print(f"worker 1 held {held} un-acked results when killed; all 1000 stored once")

    # SIGTERM: the supervisor stops both workers and exits 0.
    workers = [serve.worker_pids(0)[-1], serve.worker_pids(1)[-1]]
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.proc.wait(60) == 0
    assert not any(_alive(p) for p in workers), "a worker outlived the supervisor"
    log = serve.log.read_text()
    assert "ingest worker 0 (pid" in log and log.count(") stopped") >= 2
    assert "Traceback" not in log, log[-3000:]
