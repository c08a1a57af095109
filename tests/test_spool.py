"""The spool: seq allocation, bounds by bytes/age/disk with value-ordered eviction, counted and reported."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from agent.spool import (
    AGENT_CHECK,
    PayloadTooLarge,
    Spool,
    SpoolFull,
    summarize,
)
from linecheck.catalogue import unlisted
from linecheck.wire import ResultEnvelope, Status
from tests.faultkit import DAY_S, make_envelope


def _agent_check(env: ResultEnvelope):  # type: ignore[no-untyped-def]
    (check,) = [c for c in env.checks if c.kind == AGENT_CHECK]
    return check


def test_seq_survives_reopen_and_every_result_reports_spool_health(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    first = spool.enqueue(make_envelope("gw"))
    second = spool.enqueue(make_envelope("gw"))
    spool.acknowledge([first.result_id, second.result_id])
    spool.close()
    spool = Spool(tmp_path / "s.sqlite")
    third = spool.enqueue(make_envelope("gw"))
    assert (first.seq, second.seq, third.seq) == (1, 2, 3)
    check = _agent_check(third)
    assert check.status is Status.OK
    assert check.metrics["spool_backlog_count"] == 0 and check.metrics["spool_evicted_count"] == 0
    assert check.metrics["spool_oldest_age_s"] is None
    assert unlisted(AGENT_CHECK, set(check.metrics)) == []
    assert spool.stats().receipted == 2
    # What was stored is exactly what is published: a valid envelope carrying its seq.
    (pending,) = spool.pending(10)
    assert ResultEnvelope.from_json(pending.payload) == third


def test_oversized_result_is_refused_counted_and_consumes_no_seq(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_payload_bytes=4096)
    with pytest.raises(PayloadTooLarge, match="above the 4096-byte limit"):
        spool.enqueue(make_envelope("gw", pad=1900, problems=True).model_copy(
            update={"checks": [make_envelope("gw", pad=1900, problems=True).checks[0]] * 3}))
    ok = spool.enqueue(make_envelope("gw"))
    assert ok.seq == 1 and spool.count() == 1
    assert _agent_check(ok).metrics["spool_refused_count"] == 1


def test_byte_bound_compacts_healthy_then_problems_then_drops_healthy_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_payload_bytes=8192, max_bytes=40_000, min_free_bytes=0)
    kinds = {}
    for n in range(1, 60):
        env = spool.enqueue(make_envelope("gw", n, problems=n % 4 == 0, pad=1500))
        kinds[env.seq] = "problems" if n % 4 == 0 else "healthy"
    stats = spool.stats()
    assert stats.payload_bytes <= 40_000
    assert stats.compacted > 0 and stats.evicted > 0
    log = spool.evictions()
    dropped = [seq for seq, _, action, _ in log if action == "dropped"]
    assert all(cause == "bytes" for *_, cause in log)
    # Healthy results go first: no result with problems is dropped while a healthy one remains.
    held = {p.seq for p in spool.pending(1000)}
    if any(kinds[s] == "problems" for s in dropped):
        assert all(kinds[s] == "problems" for s in held)
    assert {kinds[s] for s in dropped} == {"healthy"}
    assert 59 in held  # the newest result is never dropped
    # A compacted result keeps identity, verdict and findings, loses metrics, and says so.
    compacted = [ResultEnvelope.from_json(p.payload) for p in spool.pending(1000)
                 if b"spool_compacted_flag" in p.payload]
    assert compacted
    for env in compacted:
        assert all(c.metrics == {} for c in env.checks if c.kind != AGENT_CHECK)
        assert _agent_check(env).metrics["spool_compacted_flag"] == 1
        assert bool(env.findings) == (kinds[env.seq] == "problems")
    # The evictions reach the collector in the next result's agent check, once.
    before = spool.stats()
    check = _agent_check(spool.enqueue(make_envelope("gw", 99)))
    assert check.metrics["spool_evicted_count"] == before.evicted
    assert check.metrics["spool_compacted_count"] == before.compacted
    assert check.status is Status.DEGRADED and "dropped" in (check.reason or "")
    assert spool.stats().payload_bytes <= 40_000


def test_summary_is_a_valid_smaller_envelope() -> None:
    env = make_envelope("gw", problems=True, pad=500).model_copy(update={"seq": 7})
    summary = ResultEnvelope.from_json(summarize(env.to_json()))
    assert len(summary.to_json()) < len(env.to_json())
    assert (summary.result_id, summary.seq, summary.verdict) == (env.result_id, 7, env.verdict)
    assert [f.code for f in summary.findings] == ["packet_loss"] and summary.findings[0].detail == {}


def test_age_bound_drops_old_results_on_the_agent_clock(tmp_path: Path) -> None:
    now = [time.time() - 20 * DAY_S]
    spool = Spool(tmp_path / "s.sqlite", max_age_s=7 * DAY_S, clock=lambda: now[0])
    for n in range(20):  # one result per simulated day
        spool.enqueue(make_envelope("gw", n, at=now[0]))
        now[0] += DAY_S
    held = sorted(p.seq for p in spool.pending(100))
    assert held[0] >= 20 - 8 and held[-1] == 20
    assert spool.stats().evicted == 20 - len(held)
    assert {cause for *_, cause in spool.evictions()} == {"age"}


def test_unset_clock_never_ages_results_out(tmp_path: Path) -> None:
    # A gateway without an RTC boots in 1970; results stamped then must not all look 50 years old.
    now = [1000.0]
    spool = Spool(tmp_path / "s.sqlite", max_age_s=DAY_S, clock=lambda: now[0])
    for _ in range(3):
        spool.enqueue(make_envelope("gw"))
    now[0] = time.time()  # NTP arrives
    spool.enqueue(make_envelope("gw"))
    assert spool.count() == 4 and spool.stats().evicted == 0


def test_low_disk_lowers_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    spool = Spool(tmp_path / "s.sqlite", max_bytes=10 * 1024 * 1024, min_free_bytes=1024 * 1024)
    real = shutil.disk_usage

    def nearly_full(path: object):  # type: ignore[no-untyped-def]
        # A filesystem with 1.3 MB free before the spool started to grow.
        u = real(path)  # type: ignore[arg-type]
        used = sum(f.stat().st_size for f in tmp_path.glob("s.sqlite*"))
        free = 1024 * 1024 + 300 * 1024 - used
        return type(u)(u.total, u.total - free, free)

    monkeypatch.setattr("agent.spool.shutil.disk_usage", nearly_full)
    for n in range(60):
        spool.enqueue(make_envelope("gw", n, pad=1500))
    stats = spool.stats()
    assert stats.evicted + stats.compacted > 0
    assert {cause for *_, cause in spool.evictions()} == {"disk"}
    # What the spool holds stays within what the filesystem had to spare above the reserve.
    assert stats.payload_bytes <= 300 * 1024 - 256 * 1024


def test_foundation_spool_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    env = make_envelope("gw").model_copy(update={"seq": 1})
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            CREATE TABLE results (seq INTEGER PRIMARY KEY, result_id TEXT NOT NULL UNIQUE, payload BLOB NOT NULL,
                                  created_at REAL NOT NULL, sent_at REAL, attempts INTEGER NOT NULL DEFAULT 0);
            INSERT INTO meta VALUES ('next_seq', 2);""")
        db.execute("INSERT INTO results(seq, result_id, payload, created_at) VALUES (1, ?, ?, ?)",
                   (env.result_id, env.to_json(), time.time()))
    spool = Spool(path)
    assert [p.result_id for p in spool.pending(10)] == [env.result_id]
    assert spool.enqueue(make_envelope("gw")).seq == 2


_WRITER = """
import sys
from agent.spool import Spool
from tests.faultkit import make_envelope
spool = Spool(sys.argv[1])
while True:
    env = spool.enqueue(make_envelope("gw", pad=300))
    print(env.seq, env.result_id, flush=True)
"""


def test_kill_9_mid_write_loses_no_committed_result(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "s.sqlite"
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parent.parent)
        assert proc.stdout is not None
        committed = [proc.stdout.readline().split() for _ in range(40)]  # printed only after COMMIT
        proc.kill()
        proc.wait()
        spool = Spool(path)
        assert spool._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        held = {p.result_id: p.seq for p in spool.pending(100_000)}
        for seq, rid in committed:
            assert held.get(rid) == int(seq)
        assert spool.next_seq() > max(held.values())
        spool.close()


@pytest.mark.parametrize("reserve", [128 * 1024, 0], ids=["reserve", "no-reserve"])
def test_full_filesystem_evicts_and_keeps_accepting(tmp_path: Path, reserve: int) -> None:
    """A real full disk: the spool on a 2 MB tmpfs with a 64 MB byte bound. Without a reserve the
    spool meets SQLITE_FULL itself and must recover by evicting."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        spool = Spool(mnt / "s.sqlite", max_bytes=64 * 1024 * 1024, min_free_bytes=reserve)
        refused = 0
        for n in range(1500):  # ~3 MB of results: more than the filesystem holds
            try:
                spool.enqueue(make_envelope("gw", n, problems=n % 5 == 0, pad=1500))
            except SpoolFull:
                refused += 1
        stats = spool.stats()
        assert stats.evicted > 0 and stats.next_seq - 1 + refused == 1500
        print(f"reserve={reserve}: evicted={stats.evicted} compacted={stats.compacted} refused={refused}")
        assert refused <= 5, f"{refused} results refused: eviction should have made room"
        assert spool._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        last = spool.enqueue(make_envelope("gw"))
        assert _agent_check(last).metrics["spool_evicted_count"] == stats.evicted
        spool.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_receipts_and_agent_check_are_json_clean(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    env = spool.enqueue(make_envelope("gw"))
    body = json.loads(spool.pending(1)[0].payload)
    assert body["checks"][-1]["kind"] == AGENT_CHECK and body["seq"] == env.seq
    assert spool.acknowledge([env.result_id, "not-here"]) == 1
