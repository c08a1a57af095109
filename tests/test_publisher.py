"""The publisher on a real Mosquitto: jittered reconnects, an end-to-end in-flight window, re-sends
that back off, receipts that empty the spool, and the retained online/offline status with a Will."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.publisher import Backoff, Publisher
from agent.spool import Spool
from linecheck.wire import Receipt, ResultEnvelope, receipts_topic, status_topic
from tests.faultkit import Watcher, make_envelope
from tests.helpers import wait_for
from tests.mosquitto import Broker, free_port

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parent.parent


def _cfg(tmp: Path, port: int, agent_id: str = "pub-gw", **mqtt: object) -> AgentConfig:
    settings = {"host": "127.0.0.1", "port": port, "keepalive_s": 5, "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.4, "resend_after_s": 30, **mqtt}
    return AgentConfig.model_validate({"agent_id": agent_id, "line_id": "l1", "site_id": "s1",
                                       "data_dir": str(tmp / agent_id), "mqtt": settings})


class Running:
    """A Publisher with its pump thread, as the daemon runs it."""

    def __init__(self, cfg: AgentConfig, seed: int = 1):
        self.spool = Spool(cfg.data_dir / "spool.sqlite")
        self.publisher = Publisher(cfg, self.spool, rng=random.Random(seed))
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.publisher.run, args=(self.stop_event, 0.1), daemon=True)

    def __enter__(self) -> Running:
        self.publisher.start()
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_event.set()
        self.publisher.wake.set()
        self.thread.join(5)
        self.publisher.stop()
        self.spool.close()


@pytest.fixture
def watcher(broker: Broker) -> Iterator[Watcher]:
    w = Watcher(broker.port, "linecheck/v1/agents/+/results", "linecheck/v1/agents/+/status")
    yield w
    w.close()


def test_backoff_is_exponential_capped_and_jittered() -> None:
    b = Backoff(1.0, 60.0, random.Random(7))
    delays = [b.next_delay() for _ in range(40)]
    assert all(0.01 <= d <= 60.0 for d in delays)
    assert all(d <= 2 ** i for i, d in enumerate(delays[:6]))  # ceiling doubles: 1, 2, 4, ...
    assert max(delays[10:]) > 30 and len({round(d, 3) for d in delays}) == len(delays)  # spread, no lockstep
    other = Backoff(1.0, 60.0, random.Random(8))
    assert [other.next_delay() for _ in range(5)] != delays[:5]
    b.reset()
    assert b.next_delay() <= 1.0


def test_reconnects_with_jittered_backoff_until_the_broker_appears(tmp_path: Path) -> None:
    port = free_port()
    cfg = _cfg(tmp_path, port)
    workdir = tmp_path / "late-broker"
    workdir.mkdir()
    broker = Broker(workdir)
    broker.port = port  # the address the agent has been trying all along
    try:
        with Running(cfg, seed=3) as run:
            delays = wait_for(lambda: run.publisher.reconnect_delays[:8]
                              if len(run.publisher.reconnect_delays) >= 8 else None, 20, "eight failed attempts")
            assert all(d <= 0.4 for d in delays) and len(set(delays)) == len(delays)
            assert not run.publisher.connected.is_set()
            broker.start()
            wait_for(run.publisher.connected.is_set, 10, "the agent to connect once the broker is up")
    finally:
        broker.stop()


def test_inflight_window_resend_backoff_and_receipts(tmp_path: Path, broker: Broker, watcher: Watcher) -> None:
    cfg = _cfg(tmp_path, broker.port, max_inflight=5, resend_after_s=0.6, resend_max_s=5)
    with Running(cfg) as run:
        ids = [run.spool.enqueue(make_envelope("pub-gw", n)).result_id for n in range(12)]
        run.publisher.wake.set()
        wait_for(lambda: len(watcher.payloads("/results")) >= 5, 10, "the first window")
        # No collector: after the window nothing new goes out, only re-sends of the same five.
        wait_for(lambda: len(watcher.payloads("/results")) >= 10, 10, "a re-send of the window")
        seen = [ResultEnvelope.from_json(p).result_id for p in watcher.payloads("/results")]
        assert set(seen) == set(ids[:5]), "more than max_inflight results were out without a receipt"
        assert run.publisher.inflight() == 5 and run.spool.count() == 12
        # Re-sends wait twice as long each time (0.6 s, 1.2 s, ...): far fewer than at a fixed rate.
        assert max(f.attempts for f in run.publisher._inflight.values()) <= 3
        # Receipts (as the collector sends them after its commit) empty the spool window by window.
        for _ in range(3):
            waiting = [rid for rid in ids if rid in run.publisher._inflight]
            watcher.publish(receipts_topic("pub-gw"), Receipt(result_ids=waiting).model_dump_json(by_alias=True))
            wait_for(lambda w=waiting: all(r not in run.publisher._inflight for r in w), 10, "the receipt")
        wait_for(lambda: run.spool.count() == 0, 10, "every result receipted")
        assert run.spool.stats().receipted == 12
        assert {ResultEnvelope.from_json(p).result_id for p in watcher.payloads("/results")} == set(ids)


def test_malformed_receipt_is_ignored(tmp_path: Path, broker: Broker, watcher: Watcher) -> None:
    cfg = _cfg(tmp_path, broker.port)
    with Running(cfg) as run:
        run.spool.enqueue(make_envelope("pub-gw"))
        run.publisher.wake.set()
        wait_for(lambda: watcher.payloads("/results"), 10, "the result")
        watcher.publish(receipts_topic("pub-gw"), b"{not json")
        watcher.publish(receipts_topic("pub-gw"), json.dumps({"result_ids": "x", "schema": 1}))
        assert run.spool.count() == 1 and run.thread.is_alive()


def _status(watcher: Watcher, agent_id: str) -> list[str]:
    return [json.loads(p)["state"] for t, p, _ in watcher.messages if t == status_topic(agent_id)]


def test_retained_status_online_offline_and_last_will(tmp_path: Path, broker: Broker, watcher: Watcher) -> None:
    # Graceful stop: an explicit retained "offline".
    cfg = _cfg(tmp_path, broker.port, agent_id="calm-gw")
    with Running(cfg) as run:
        wait_for(run.publisher.connected.is_set, 10, "connect")
        wait_for(lambda: _status(watcher, "calm-gw") == ["online"], 10, "online")
    wait_for(lambda: _status(watcher, "calm-gw") == ["online", "offline"], 10, "offline on stop")

    # kill -9: the broker sees the socket close and publishes the Last Will, retained.
    acfg = tmp_path / "killed.yaml"
    acfg.write_text(f"agent_id: killed-gw\nline_id: l\nsite_id: s\ndata_dir: {tmp_path}/killed\n"
                    f"mqtt: {{host: 127.0.0.1, port: {broker.port}, keepalive_s: 5}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "tests.faultkit", "agent", "--config", str(acfg), "--count", "1"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _status(watcher, "killed-gw") == ["online"], 20, "the agent online")
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: _status(watcher, "killed-gw") == ["online", "offline"], 10, "the Last Will")
    late = Watcher(broker.port, status_topic("killed-gw"), client_id="late")
    try:
        wait_for(lambda: late.messages, 5, "the retained status")
        assert late.messages == [(status_topic("killed-gw"), b'{"state":"offline"}', True)]
    finally:
        late.close()
