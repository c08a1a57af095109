"""A PostgreSQL primary and its streaming replica of our own, for the read-replica tests.

Two clusters on free ports in a temporary directory (never the machine's server on :5432): the primary
made by initdb with wal_level=replica and a replication entry in pg_hba, the replica by
`pg_basebackup -R` from it (standby.signal and primary_conninfo written for us), streaming. initdb
refuses root: as root the clusters belong to the `postgres` user. Both postmasters die with the test
process (PR_SET_PDEATHSIG), so a killed run leaves nothing listening. A few seconds in all.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


def pg_bin() -> Path | None:
    """The directory holding initdb, pg_basebackup and postgres, or None."""
    for d in PG_BIN_DIRS:
        if all((Path(d) / tool).exists() for tool in ("initdb", "pg_basebackup", "postgres")):
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGQUIT))  # PR_SET_PDEATHSIG: fast shutdown


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


@dataclass
class Cluster:
    data: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def ready(self) -> bool:
        """Whether it answers a query (a listening socket is not enough: 'the database system is starting up')."""
        import psycopg

        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                                 connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def scalar(self, sql: str, db: str = "postgres") -> object:
        engine = create_engine(self.url(db), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                result = conn.execute(text(sql))
                return result.scalar() if result.returns_rows else None
        finally:
            engine.dispose()


class ReplicaPair:
    """`primary` and `replica` (Cluster), started by `start()`, both stopped and removed by `stop()`."""

    def __init__(self, bindir: Path):
        self.bin = bindir
        self.root = Path(tempfile.mkdtemp(prefix="linecheck-pgrepl-"))
        self.primary = Cluster(self.root / "primary", _free_port(), self.root / "primary.log")
        self.replica = Cluster(self.root / "replica", _free_port(), self.root / "replica.log")
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    def _run(self, *argv: str) -> None:
        done = subprocess.run([str(self.bin / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60,
                              user=self.user)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def _start(self, cluster: Cluster) -> None:
        log = cluster.log.open("ab")
        # postgres itself, not pg_ctl: its own child, so PR_SET_PDEATHSIG reaches it
        cluster.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(cluster.data), "-p", str(cluster.port)],
            stdout=log, stderr=log, user=self.user, preexec_fn=_die_with_parent)
        wait_for(lambda: cluster.proc.poll() is not None or cluster.ready(), 30, f"postgres on {cluster.port}")
        if cluster.proc.poll() is not None:
            raise RuntimeError(f"postgres on {cluster.port} exited: {cluster.log.read_text()[-2000:]}")

    def start(self) -> None:
        p = self.primary
        self._run("initdb", "-D", str(p.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with (p.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# linecheck read-replica tests\n"
                       "listen_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\n"
                       "wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                       # a paused replica must not cancel its readers' queries
                       "max_standby_streaming_delay = -1\n")
        with (p.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
        self._start(p)
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(p.port), "-U", "postgres", "-D",
                  str(self.replica.data), "-R", "-X", "stream", "--no-sync", "-c", "fast")
        self._start(self.replica)
        wait_for(lambda: p.scalar("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == 1,
                 30, "replica streaming")

    def restart_replica(self) -> None:
        """Start the replica again after a test stopped it, and wait until it streams."""
        if self.replica.proc is not None and self.replica.proc.poll() is None:
            return
        self._start(self.replica)
        wait_for(lambda: self.primary.scalar("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                 == 1, 30, "replica streaming again")

    def stop(self) -> None:
        for cluster in (self.replica, self.primary):
            if cluster.proc is not None and cluster.proc.poll() is None:
                cluster.proc.send_signal(signal.SIGQUIT)  # immediate shutdown: nothing here is kept
                with contextlib.suppress(subprocess.TimeoutExpired):
                    cluster.proc.wait(15)
                if cluster.proc.poll() is None:
                    cluster.proc.kill()
                    cluster.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)

    # --- replay ----------------------------------------------------------------------------
    def replayed(self) -> str:
        return str(self.replica.scalar("SELECT pg_last_wal_replay_lsn()::text"))

    def pause_replay(self) -> None:
        self.replica.scalar("SELECT pg_wal_replay_pause()")
        wait_for(lambda: self.replica.scalar("SELECT pg_get_wal_replay_pause_state()") == "paused", 10,
                 "replay paused")

    def resume_replay(self) -> None:
        self.replica.scalar("SELECT pg_wal_replay_resume()")

    def catch_up(self, timeout: float = 30) -> None:
        """Wait until the replica has replayed everything the primary has written so far."""
        # the insert position, not pg_current_wal_lsn(): with synchronous_commit off (set above, for speed)
        # a commit returns before its record is written out, and the write position may not cover it yet
        target = str(self.primary.scalar("SELECT pg_current_wal_insert_lsn()::text"))
        wait_for(lambda: bool(self.replica.scalar(
            f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")), timeout, f"replay to {target}")


@contextlib.contextmanager
def replica_pair() -> Iterator[ReplicaPair]:
    bindir = pg_bin()
    if bindir is None:
        raise FileNotFoundError(f"initdb, pg_basebackup and postgres not found in {', '.join(PG_BIN_DIRS)}")
    pair = ReplicaPair(bindir)
    try:
        pair.start()
        yield pair
    finally:
        pair.stop()
