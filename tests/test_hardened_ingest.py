"""Hostile input at the collector: nothing crashes it, every bad payload is quarantined with a reason.

Runs the real ingest batch path (validation, one transaction on a real SQLite store) with the MQTT
client's publish/ack replaced (the seam: no broker is needed to judge payloads). bench/fuzz_ingest.py
runs the same generator for 100k payloads.
"""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import CollectorConfig
from collector.ingest.worker import Inbound, Ingestor, validate
from collector.store.database import Store
from collector.store.timeflags import clock_flag
from linecheck.wire import results_topic
from tests import fuzz_payloads
from tests.helpers import acknowledged


def make_ingestor(tmp: Path) -> tuple[Ingestor, list[tuple[str, bytes]]]:
    url = f"sqlite:///{tmp}/fuzz.db"
    ingestor = Ingestor(CollectorConfig(database=url), Store(url))
    sent: list[tuple[str, bytes]] = []

    def publish(topic: str, payload: bytes, qos: int = 0) -> object:
        sent.append((topic, payload))
        return acknowledged()

    ingestor.client.publish = publish  # type: ignore[method-assign,assignment]
    ingestor.client.ack = lambda mid, qos: None  # type: ignore[method-assign,assignment]
    return ingestor, sent


def counts(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT count(*) FROM results").fetchone()[0]
        quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        empty = conn.execute("SELECT count(*) FROM quarantine WHERE reason IS NULL OR reason = ''").fetchone()[0]
    return stored, quarantined, empty


@given(topic=st.text(max_size=80), data=st.binary(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_validate_never_raises(topic: str, data: bytes) -> None:
    verdict = validate(topic, data, 262144)
    assert (verdict.envelope is None) == bool(verdict.reason)


def test_generated_payloads_are_stored_or_quarantined_never_crash(tmp_path: Path) -> None:
    ingestor, _ = make_ingestor(tmp_path)
    rng = random.Random(20261122)
    batch, expected_valid = [], 0
    for i in range(2000):
        data = fuzz_payloads.payload(rng, "fuzz-gw")
        expected_valid += fuzz_payloads.is_valid_for("fuzz-gw", data)
        batch.append(Inbound(results_topic("fuzz-gw"), data, i, 1))
        if len(batch) == 200:
            ingestor.process(batch)
            batch = []
    stored, quarantined, empty = counts(tmp_path / "fuzz.db")
    assert stored == expected_valid > 0
    assert quarantined == 2000 - expected_valid > 0
    assert empty == 0


def test_deep_nesting_is_refused_before_it_can_hurt(tmp_path: Path) -> None:
    ingestor, _ = make_ingestor(tmp_path)
    bomb = b"[" * 1_000_000 + b"]" * 1_000_000  # within no size limit we would ship, but absurd
    ingestor.cfg.ingest.max_payload_bytes = 4_000_000
    ingestor.process([Inbound(results_topic("deep-gw"), bomb, 1, 1)])
    with sqlite3.connect(tmp_path / "fuzz.db") as conn:
        (reason,) = conn.execute("SELECT reason FROM quarantine").fetchone()
    assert reason.startswith("schema:") and "recursion" in reason.lower()


def test_oversized_payload_is_quarantined_truncated(tmp_path: Path) -> None:
    ingestor, _ = make_ingestor(tmp_path)
    ingestor.process([Inbound(results_topic("big-gw"), b"x" * 300_000, 1, 1)])
    with sqlite3.connect(tmp_path / "fuzz.db") as conn:
        reason, kept, size = conn.execute("SELECT reason, length(payload), payload_bytes FROM quarantine").fetchone()
    assert "exceeds the 262144-byte limit" in reason
    assert kept == 262144 and size == 262144  # the evidence kept is bounded too


@pytest.mark.parametrize("started, flag", [
    (datetime.now(UTC) - timedelta(days=60), None),  # offline for two months: normal, not flagged
    (datetime.now(UTC) + timedelta(hours=3), "future"),
    (datetime(1970, 1, 1, 0, 5, tzinfo=UTC), "unset_clock"),
])
def test_implausible_timestamps_are_flagged_not_rejected(tmp_path: Path, started: datetime, flag: str | None) -> None:
    ingestor, sent = make_ingestor(tmp_path)
    env = fuzz_payloads.valid_envelope("clock-gw", random.Random(1))
    env["started_at"] = started.isoformat()
    env["ended_at"] = (started + timedelta(seconds=5)).isoformat()
    ingestor.process([Inbound(results_topic("clock-gw"), json.dumps(env).encode(), 1, 1)])
    with sqlite3.connect(tmp_path / "fuzz.db") as conn:
        assert conn.execute("SELECT clock_flag FROM results").fetchall() == [(flag,)]
    assert json.loads(sent[0][1])["status"] == "stored"


def test_clock_flag_rules() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    assert clock_flag(now - timedelta(days=400), now - timedelta(days=400), now) is None
    assert clock_flag(now + timedelta(minutes=4), now + timedelta(minutes=4), now) is None
    assert clock_flag(now, now - timedelta(seconds=1), now) == "ends_before_start"
