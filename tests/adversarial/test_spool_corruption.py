"""A damaged spool loses only what cannot be read, says so, and never stops the agent (issue 16, item 5).

The matrix: a spool holding results (some receipted and deleted, some published without a receipt,
some never published) is damaged the ways a gateway's flash and its users damage files — random
garbage over part of the file, truncation at several offsets, zero length, a garbage header, the
write-ahead log gone — and opened again. Then: no exception; every unsent result whose bytes are
still intact on disk is pending again (and no receipted result comes back); the next seq is above
every seq used before; the loss is counted exactly in the `agent` pseudo-check. One case runs end to
end: the real publisher and the real collector on a real Mosquitto deliver the salvaged results,
their receipts empty the spool, and the collector sees the lost seqs as a gap of the same size.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.spool import Spool
from linecheck.wire import AGENT_CHECK, CheckResult, ResultEnvelope, Status
from tests.faultkit import make_envelope

PAGE = 4096
N_RESULTS = 40
RECEIPTED = 10  # the oldest ten were stored by the collector and deleted
PUBLISHED = 12  # the next twelve went out without a receipt yet (sent_at set)
LEDGER = "spool-ledger.json"


@dataclass
class Filled:
    path: Path
    ledger: Path
    envelopes: list[ResultEnvelope]
    receipted: set[str]
    original: bytes  # the main file as it was before the damage (WAL checkpointed into it)

    @property
    def held(self) -> list[ResultEnvelope]:
        return [e for e in self.envelopes if e.result_id not in self.receipted]

    @property
    def high_seq(self) -> int:
        return max(e.seq for e in self.envelopes)


def _fill(directory: Path, checkpoint: bool = True) -> tuple[Filled, Spool]:
    spool = Spool(directory / "spool.sqlite")
    rng = random.Random(5)
    envelopes = [spool.enqueue(make_envelope("gw", n, problems=n % 3 == 0, pad=rng.randrange(200, 2500)))
                 for n in range(N_RESULTS)]
    receipted = {e.result_id for e in envelopes[:RECEIPTED]}
    spool.mark_sent([e.result_id for e in envelopes[:RECEIPTED + PUBLISHED]])
    assert spool.acknowledge(sorted(receipted)) == RECEIPTED
    if checkpoint:
        spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filled = Filled(spool.path, directory / LEDGER, envelopes, receipted, spool.path.read_bytes())
    return filled, spool


def _filled(directory: Path) -> Filled:
    filled, spool = _fill(directory)
    spool.close()
    filled.original = filled.path.read_bytes()
    return filled


def _damaged_pages(original: bytes, damaged: bytes) -> set[int]:
    """Pages whose bytes differ (a page past the end of a truncated file is damaged too)."""
    pages = set()
    for n in range(0, len(original), PAGE):
        if original[n:n + PAGE] != damaged[n:n + PAGE]:
            pages.add(n // PAGE)
    return pages


def _intact(filled: Filled, damaged: bytes) -> set[str]:
    """Result ids whose stored bytes survive the damage on some page: what any salvage can read."""
    bad = _damaged_pages(filled.original, damaged)
    out = set()
    for env in filled.held:
        payload = env.to_json()
        at = filled.original.find(payload)
        while at >= 0:
            if not set(range(at // PAGE, (at + len(payload)) // PAGE + 1)) & bad:
                out.add(env.result_id)
                break
            at = filled.original.find(payload, at + 1)
    return out


def _agent_check(env: ResultEnvelope) -> CheckResult:
    (check,) = [c for c in env.checks if c.kind == AGENT_CHECK]
    return check


def _page_of(filled: Filled, env: ResultEnvelope) -> int:
    at = filled.original.find(env.to_json())
    assert at >= 0
    return at // PAGE


# --- the damage ------------------------------------------------------------------------------------
def _garbage_over_two_leaves(f: Filled) -> None:
    data = bytearray(f.original)
    rng = random.Random(11)
    for env in (f.held[5], f.held[20]):  # one published without receipt, one never published
        start = _page_of(f, env) * PAGE + 40
        data[start:start + 3000] = rng.randbytes(3000)
    f.path.write_bytes(bytes(data))


def _truncate_at(fraction: float, odd: int = 0) -> Callable[[Filled], None]:
    def damage(f: Filled) -> None:
        with f.path.open("r+b") as fh:
            fh.truncate(int(len(f.original) * fraction) + odd)

    damage.__name__ = f"truncate_{fraction}"
    return damage


def _zero_length(f: Filled) -> None:
    f.path.write_bytes(b"")


def _garbage_header(f: Filled) -> None:
    data = bytearray(f.original)
    data[:100] = random.Random(3).randbytes(100)
    f.path.write_bytes(bytes(data))


def _garbage_first_page(f: Filled) -> None:  # the header and the schema with it
    data = bytearray(f.original)
    data[:PAGE] = random.Random(4).randbytes(PAGE)
    f.path.write_bytes(bytes(data))


def _flipped_digit(f: Filled) -> None:
    """One digit of one metric changes (worn flash): the payload is still a valid envelope, a wrong one."""
    data = bytearray(f.original)
    payload = f.held[7].to_json()
    at = data.find(payload)
    while at >= 0:
        digit = at + payload.index(b'"rtt_avg_ms":') + len(b'"rtt_avg_ms":')
        data[digit] = ord("9") if data[digit] != ord("9") else ord("8")
        at = data.find(payload, at + 1)
    f.path.write_bytes(bytes(data))


def _deleted(f: Filled) -> None:
    f.path.unlink()


DAMAGE = {
    "garbage": _garbage_over_two_leaves,
    "truncated_30pct": _truncate_at(0.3),
    "truncated_60pct_mid_page": _truncate_at(0.6, 1234),
    "truncated_last_page": _truncate_at(1.0, -PAGE),
    "zero_length": _zero_length,
    "garbage_header": _garbage_header,
    "garbage_first_page": _garbage_first_page,
    "deleted": _deleted,
    "flipped_digit": _flipped_digit,
}


def _assert_recovered(f: Filled, spool: Spool, readable: set[str], kept_evidence: bool) -> None:
    held = {e.result_id for e in f.held}
    pending = spool.pending(10_000)
    pending_ids = {p.result_id for p in pending}
    assert readable <= pending_ids, f"{len(readable - pending_ids)} readable unsent results were not salvaged"
    assert not pending_ids & f.receipted, "a receipted result came back"
    for p in pending:  # only valid envelopes, each exactly as it was spooled
        env = ResultEnvelope.from_json(p.payload)
        assert env.seq == p.seq and env == next(e for e in f.envelopes if e.result_id == p.result_id)
    lost = len(held - pending_ids)
    nxt = spool.enqueue(make_envelope("gw", 99))
    assert nxt.seq > f.high_seq, f"seq restarted at {nxt.seq} below the old high mark {f.high_seq}"
    check = _agent_check(nxt)
    assert check.metrics["spool_lost_count"] == lost
    assert check.metrics["spool_recovered_count"] == 1
    assert check.metrics["spool_salvaged_count"] == (len(pending_ids) if kept_evidence else 0)
    assert check.status is Status.DEGRADED and "spool damaged" in (check.reason or "")
    assert f"{lost} lost" in (check.reason or "")
    lost_findings = [x for x in nxt.findings if x.code == "spool_results_lost"]
    assert [x.detail["lost_count"] for x in lost_findings] == ([lost] if lost else [])
    assert all(x.where == "agent" and x.severity == "warning" for x in lost_findings)
    evidence = list(f.path.parent.glob("spool.sqlite.corrupt-*"))
    assert bool([e for e in evidence if not e.name.endswith(("-wal", "-shm"))]) == kept_evidence
    # Reported once: the next result is healthy again, the counters stay.
    later = spool.enqueue(make_envelope("gw", 100))
    again = _agent_check(later)
    assert again.status is Status.OK and again.metrics["spool_lost_count"] == lost
    assert not [x for x in later.findings if x.code == "spool_results_lost"]


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_damaged_spool_is_salvaged_counted_and_seq_continues(tmp_path: Path, damage: Callable[[Filled], None]) -> None:
    f = _filled(tmp_path)
    damage(f)
    damaged = f.path.read_bytes() if f.path.exists() else b""
    readable = _intact(f, damaged)
    spool = Spool(f.path)  # must not raise
    try:
        file_damage = damage not in (_zero_length, _deleted)
        _assert_recovered(f, spool, readable, kept_evidence=file_damage)
        if damage is _garbage_over_two_leaves:
            assert 0 < len(readable) < len(f.held), "the garbage should have cost some results, not all"
        if damage in (_garbage_header, _garbage_first_page):
            assert readable == {e.result_id for e in f.held} - {e.result_id for e in f.held if _page_of(f, e) == 0}
    finally:
        spool.close()


def test_lost_write_ahead_log_is_counted_and_seq_continues(tmp_path: Path) -> None:
    """The WAL vanishes (deleted, or a flash that lost its last writes) and the agent dies: the spool
    file alone goes back to its last checkpoint. Simulated by copying the main file while the
    spool is open with results only in its WAL."""
    f, spool = _fill(tmp_path / "live")
    extra = [spool.enqueue(make_envelope("gw", 200 + n)) for n in range(8)]  # in the WAL only
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy(f.path, crashed / "spool.sqlite")
    if f.ledger.exists():  # the spool's ledger (seq high mark, seqs held) sits beside it
        shutil.copy(f.ledger, crashed / f.ledger.name)
    spool.close()
    reopened = Spool(crashed / "spool.sqlite")
    try:
        pending = {p.result_id for p in reopened.pending(1000)}
        assert {e.result_id for e in f.held} <= pending
        nxt = reopened.enqueue(make_envelope("gw", 300))
        assert nxt.seq > max(e.seq for e in extra)
        check = _agent_check(nxt)
        assert check.metrics["spool_lost_count"] == len(extra) and check.metrics["spool_recovered_count"] == 1
        assert check.status is Status.DEGRADED and "write-ahead log" in (check.reason or "")
    finally:
        reopened.close()


def test_damage_found_while_in_use_is_salvaged_not_looped_on(tmp_path: Path) -> None:
    """The reported case: garbage lands in the file while the agent runs; mark_sent then failed with
    'database disk image is malformed' on every pump, for ever, and nothing more was sent."""
    f = _filled(tmp_path)
    spool = Spool(f.path)  # healthy at open; its connection has not read the result_id index yet
    try:
        (root,) = spool._db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_results_1'").fetchone()
        with f.path.open("r+b") as fh:  # garbage over the result_id index that mark_sent uses
            fh.seek((root - 1) * PAGE)
            fh.write(random.Random(9).randbytes(PAGE))
        due = spool.pending(100)
        spool.mark_sent([p.result_id for p in due])  # raised "malformed" here for ever
        assert {p.result_id for p in spool.pending(100)} == {e.result_id for e in f.held}
        assert spool.acknowledge([f.held[0].result_id]) == 1
        check = _agent_check(spool.enqueue(make_envelope("gw", 1)))
        assert check.metrics["spool_lost_count"] == 0
        assert check.metrics["spool_salvaged_count"] == len(f.held)
        assert "found while in use" in (check.reason or "")
        assert list(tmp_path.glob("spool.sqlite.corrupt-*"))
    finally:
        spool.close()


def test_spool_and_ledger_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        data = tmp_path / "data"
        spool = Spool(data / "spool.sqlite")
        spool.enqueue(make_envelope("gw"))
        files = [p for p in data.iterdir() if p.is_file()]
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, f"{p.name} is {oct(p.stat().st_mode)}"
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert {p.name for p in files} >= {"spool.sqlite", "spool.sqlite-wal", "spool.sqlite-shm", LEDGER}
        spool.close()
        # An older agent's world-readable files are tightened on open.
        for p in data.iterdir():
            p.chmod(0o644)
        data.chmod(0o755)
        Spool(data / "spool.sqlite").close()
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in data.iterdir() if p.is_file())
    finally:
        os.umask(old)


# --- end to end: the real publisher and collector on a real Mosquitto -------------------------------
@pytest.fixture
def collector(tmp_path: Path, broker: object) -> Iterator[object]:
    from collector.config import CollectorConfig
    from collector.ingest.worker import Ingestor
    from collector.store.database import Store
    from tests.helpers import wait_for

    cfg = CollectorConfig.model_validate({"database": f"sqlite:///{tmp_path}/c.db",
                                          "mqtt": {"port": broker.port, "keepalive_s": 5}})  # type: ignore[attr-defined]
    store = Store(cfg.database)
    ingestor = Ingestor(cfg, store)
    thread = threading.Thread(target=ingestor.run, daemon=True)
    thread.start()
    wait_for(ingestor.subscribed.is_set, 10, "the collector's subscription")
    yield store
    ingestor.stop()
    thread.join(10)
    store.close()


@pytest.mark.broker
def test_salvaged_results_reach_the_collector_and_the_loss_is_its_gap(tmp_path: Path, broker: object,
                                                                       collector: object) -> None:
    from agent.config import AgentConfig
    from collector.store.delivery import agent_delivery
    from tests.helpers import wait_for
    from tests.test_publisher import Running

    cfg = AgentConfig.model_validate({
        "agent_id": "gw", "line_id": "gw-line", "site_id": "fault-site", "data_dir": str(tmp_path / "gw"),
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 5,  # type: ignore[attr-defined]
                 "reconnect_min_s": 0.05, "reconnect_max_s": 0.4, "resend_after_s": 2}})
    spool_path = cfg.data_dir / "spool.sqlite"
    with Running(cfg) as run:  # a first batch delivered for real
        first = [run.spool.enqueue(make_envelope("gw", n)) for n in range(RECEIPTED)]
        run.publisher.wake.set()
        wait_for(lambda: run.spool.count() == 0, 20, "the first batch receipted")
    # The agent is stopped; results pile up unsent (the broker is unreachable, say), then the damage.
    spool = Spool(spool_path)
    rng = random.Random(8)
    unsent = [spool.enqueue(make_envelope("gw", n, pad=rng.randrange(200, 2500))) for n in range(30)]
    spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    spool.close()
    f = Filled(spool_path, spool_path.with_name(LEDGER), first + unsent, {e.result_id for e in first},
               spool_path.read_bytes())
    _garbage_over_two_leaves(f)
    readable = _intact(f, spool_path.read_bytes())
    assert 0 < len(readable) < len(unsent)
    with Running(cfg) as run:  # opens the damaged spool: salvage, then deliver
        run.publisher.wake.set()
        wait_for(lambda: run.spool.count() == 0, 30, "every salvaged result receipted")
        lost = len(unsent) - run.publisher.receipts
        after = run.spool.enqueue(make_envelope("gw", 500))
        run.publisher.wake.set()
        wait_for(lambda: run.spool.count() == 0, 20, "the result after the recovery receipted")
    assert run.publisher.receipts >= len(readable)
    assert after.seq > max(e.seq for e in unsent)
    assert _agent_check(after).metrics["spool_lost_count"] == lost > 0
    delivery = agent_delivery(collector.engine, "gw")  # type: ignore[attr-defined]
    assert delivery is not None and delivery.max_seq == after.seq
    assert delivery.result_count == len(first) + len(unsent) - lost + 1
    assert delivery.missing_count == lost, "the collector must see every lost seq as missing"


def test_repeated_damage_keeps_bounded_evidence_and_seq_keeps_rising(tmp_path: Path) -> None:
    """A failing flash that damages the spool again and again: each time the readable results are
    salvaged and seq keeps rising, and only the newest damaged files are kept (no disk filled with copies)."""
    path = tmp_path / "spool.sqlite"
    spool = Spool(path)
    last_seq = 0
    for round_ in range(5):
        envs = [spool.enqueue(make_envelope("gw", n)) for n in range(5)]
        assert envs[0].seq > last_seq
        last_seq = envs[-1].seq
        spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        spool.close()
        with path.open("r+b") as fh:
            fh.write(random.Random(round_).randbytes(100))  # the header, each time
        spool = Spool(path)
        assert {e.result_id for e in envs} <= {p.result_id for p in spool.pending(1000)}
    assert spool.ledger.recoveries == 5 and spool.ledger.lost == 0
    evidence = [p for p in tmp_path.glob("spool.sqlite.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(evidence) == 3
    spool.close()
