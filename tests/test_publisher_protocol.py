"""The publisher's MQTT protocol, packet by packet, against a scripted broker (tests/fakebroker.py).

Beside the real-Mosquitto tests (tests/test_publisher.py): here the script decides every CONNACK,
PUBACK, receipt and dropped socket, so the edge cases are exact — how many PUBLISH packets are on
the wire, with which DUP flag, and what the spool still holds. Most tests drive `Publisher.pump()`
from the test thread (paho's network thread runs as in the daemon), so "nothing more was sent" is
a fact at the point the client's DISCONNECT arrives, not a guess after a sleep.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.publisher import OFFLINE, ONLINE, Backoff, Publisher
from agent.spool import PayloadTooLarge, Spool, open_spool
from linecheck.wire import Receipt, ResultEnvelope, commands_topic, receipts_topic, results_topic, status_topic
from tests.fakebroker import (
    BAD_CREDENTIALS,
    CONNECT,
    DISCONNECT,
    NOT_AUTHORISED,
    PUBACK,
    PUBLISH,
    SUBSCRIBE,
    Connection,
    FakeBroker,
    Packet,
)
from tests.faultkit import make_envelope
from tests.helpers import wait_for

AGENT = "proto-gw"
RESULTS = results_topic(AGENT)


def _cfg(tmp: Path, port: int, **mqtt: object) -> AgentConfig:
    settings = {"host": "127.0.0.1", "port": port, "keepalive_s": 60, "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.4, "resend_after_s": 3600, **mqtt}
    return AgentConfig.model_validate({"agent_id": AGENT, "line_id": "l1", "site_id": "s1",
                                       "data_dir": str(tmp / AGENT), "mqtt": settings})


def _ack_status(conn: Connection, packet: Packet) -> bool:
    """Answer the agent's retained online/offline status at once (kept in conn.log, not in the queue)."""
    if packet.kind == PUBLISH and packet.topic == status_topic(AGENT):
        conn.puback(packet.mid or 0)
        return True
    return False


def handshake(conn: Connection, session_present: bool = False) -> Packet:
    """CONNECT → CONNACK(accepted) → SUBSCRIBE(receipts, commands) → SUBACK; returns the CONNECT."""
    conn.auto = _ack_status
    connect = conn.expect(CONNECT)
    conn.connack(0, session_present)
    sub = conn.expect(SUBSCRIBE)
    assert sub.subscriptions == [(receipts_topic(AGENT), 1), (commands_topic(AGENT), 1)]
    conn.suback(sub.mid or 0, [1, 1])
    return connect


def send_receipt(conn: Connection, ids: list[str], status: str = "stored") -> None:
    """Publish a receipt to the agent and wait for its PUBACK: paho acks a QoS 1 message after
    on_message returned, so from here on the receipt is in the publisher's queue."""
    mid = conn.publish(receipts_topic(AGENT), Receipt(result_ids=ids, status=status)  # type: ignore[arg-type]
                       .model_dump_json(by_alias=True))
    ack = conn.expect(PUBACK)
    assert ack.mid == mid


def rid(packet: Packet) -> str:
    return ResultEnvelope.from_json(packet.payload).result_id


def statuses(conn: Connection) -> list[bytes]:
    return [p.payload for p in conn.log if p.kind == PUBLISH and p.topic == status_topic(AGENT)]


class Agent:
    """The daemon's publisher and spool, with paho's network thread; the test calls pump()."""

    def __init__(self, cfg: AgentConfig, seed: int = 1, spool: Spool | None = None):
        self.spool = spool or Spool(cfg.data_dir / "spool.sqlite")
        self.publisher = Publisher(cfg, self.spool, rng=random.Random(seed))
        self.stopped = False

    def enqueue(self, n: int) -> list[str]:
        return [self.spool.enqueue(make_envelope(AGENT, i)).result_id for i in range(n)]

    def connect(self, fake: FakeBroker, session_present: bool = False) -> Connection:
        self.publisher.start()
        conn = fake.accept()
        handshake(conn, session_present)
        wait_for(self.publisher.connected.is_set, 10, "on_connect")
        return conn

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.publisher.stop()

    def close(self) -> None:
        self.stop()
        self.spool.close()


@pytest.fixture
def fake() -> Iterator[FakeBroker]:
    with FakeBroker() as broker:
        yield broker


@pytest.fixture
def agent(tmp_path: Path, fake: FakeBroker) -> Iterator[Agent]:
    a = Agent(_cfg(tmp_path, fake.port, max_inflight=3))
    yield a
    a.close()


def finish(agent: Agent, conn: Connection) -> list[Packet]:
    """Stop the agent; every packet it sent after what the script read, up to its DISCONNECT."""
    agent.stop()
    rest = []
    while (packet := conn.next()) is not None:
        rest.append(packet)
    assert rest and rest[-1].kind == DISCONNECT, rest
    assert statuses(conn)[-1] == OFFLINE
    return rest[:-1]


def test_window_holds_max_inflight_and_a_puback_is_not_a_receipt(fake: FakeBroker, agent: Agent) -> None:
    ids = agent.enqueue(7)
    conn = agent.connect(fake)
    wait_for(lambda: statuses(conn) == [ONLINE], 10, "the retained online status")

    assert agent.publisher.pump() == 3
    first = conn.expect_publishes(3, RESULTS)
    assert [rid(p) for p in first] == ids[:3]  # oldest first
    assert [(p.qos, p.dup, p.retain) for p in first] == [(1, False, False)] * 3
    assert agent.publisher.pump() == 0  # the window is full: nothing while no PUBACK came

    for p in first:  # the broker took them; the collector has not said anything yet
        conn.puback(p.mid or 0)
    assert agent.publisher.pump() == 0, "a PUBACK opened the window: results would flood an absent collector"
    assert agent.spool.count() == 7 and agent.publisher.inflight() == 3 and agent.publisher.receipts == 0

    assert finish(agent, conn) == [], "more than max_inflight results went out without a receipt"
    assert agent.spool.count() == 7  # nothing left the spool without a receipt


def test_receipts_free_exactly_their_slots_and_unknown_ids_are_ignored(fake: FakeBroker, agent: Agent) -> None:
    ids = agent.enqueue(7)
    conn = agent.connect(fake)
    assert agent.publisher.pump() == 3
    for p in conn.expect_publishes(3, RESULTS):
        conn.puback(p.mid or 0)

    send_receipt(conn, [ids[0], ids[2]])
    assert agent.publisher.pump() == 2  # two slots freed: exactly the next two results
    assert [rid(p) for p in conn.expect_publishes(2, RESULTS)] == ids[3:5]
    assert agent.spool.count() == 5 and agent.publisher.receipts == 2 and agent.publisher.inflight() == 3

    # A receipt for ids this agent never had (or already forgot) frees nothing and deletes nothing.
    send_receipt(conn, ["01HZZZZZZZZZZZZZZZZZZZZZZZ", ids[0]])
    assert agent.publisher.pump() == 0
    assert agent.spool.count() == 5 and agent.publisher.receipts == 2 and agent.publisher.inflight() == 3

    assert finish(agent, conn) == []
    published = [rid(p) for p in conn.log if p.kind == PUBLISH and p.topic == RESULTS]
    assert published == ids[:5], "each result was published once"


def test_unreceipted_results_are_republished_after_their_timeout_within_the_window(
        fake: FakeBroker, tmp_path: Path) -> None:
    a = Agent(_cfg(tmp_path, fake.port, max_inflight=2, resend_after_s=0.3, resend_max_s=10))
    try:
        ids = a.enqueue(3)
        conn = a.connect(fake)
        assert a.publisher.pump() == 2
        first = conn.expect_publishes(2, RESULTS)
        for p in first:
            conn.puback(p.mid or 0)
        assert a.publisher.pump() == 0  # not due yet
        # Due after ~0.3 s: the same two results again (new publications: new packet ids, no DUP),
        # never the third, which has no room while they wait for receipts.
        wait_for(lambda: a.publisher.pump() == 2, 5, "the re-send")
        again = conn.expect_publishes(2, RESULTS)
        assert [(rid(p), p.dup) for p in again] == [(ids[0], False), (ids[1], False)]
        assert {p.mid for p in again}.isdisjoint({p.mid for p in first})
        # The next wait is twice as long (0.6 s, ±10 % jitter).
        flights = [a.publisher._inflight[r] for r in ids[:2]]
        assert [f.attempts for f in flights] == [2, 2]
        assert all(0.54 <= f.timeout_s <= 0.66 for f in flights), [f.timeout_s for f in flights]
        for p in again:
            conn.puback(p.mid or 0)
        assert finish(a, conn) == []
        assert a.spool.count() == 3
    finally:
        a.close()


def test_refused_connect_is_reported_and_retried_with_backoff_keeping_the_spool(
        tmp_path: Path, fake: FakeBroker, caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    cfg = _cfg(tmp_path, fake.port, username=AGENT, password_file=str(secret))
    a = Agent(cfg, seed=5)
    ids = a.enqueue(2)
    caplog.set_level(logging.INFO, logger="agent.publisher")
    try:
        a.publisher.start()
        refused = []
        for code in (BAD_CREDENTIALS, NOT_AUTHORISED):
            conn = fake.accept()
            connect = conn.expect(CONNECT)
            assert (connect.username, connect.password, connect.clean_start) == (AGENT, b"hunter2", True)
            conn.connack(code)
            # The broker closes after a refusal (MQTT 3.1.1 §3.2.2.3); paho then waits our backoff.
            assert a.publisher.pump() == 0
            conn.drop()
            refused.append(conn)
        conn = fake.accept()
        handshake(conn)
        wait_for(a.publisher.connected.is_set, 10, "the accepted connection")

        # Reported: one warning per refusal, with the broker's reason.
        warnings = [r.getMessage() for r in caplog.records if "refused the connection" in r.getMessage()]
        assert len(warnings) == 2, warnings
        # Retried with the jittered backoff: exactly the waits Backoff draws from the same seed
        # (the first, before the first attempt, is not recorded), one per lost connection.
        expected = Backoff(cfg.mqtt.reconnect_min_s, cfg.mqtt.reconnect_max_s, random.Random(5))
        draws = [expected.next_delay() for _ in range(3)]
        assert a.publisher.reconnect_delays == draws[1:]
        # Nothing was published on a refused connection, and nothing left the spool.
        for c in refused:
            assert [p.name for p in c.log] == ["CONNECT"]
        assert a.spool.count() == 2

        assert a.publisher.pump() == 2
        assert [rid(p) for p in conn.expect_publishes(2, RESULTS)] == ids
        send_receipt(conn, ids)
        a.publisher.pump()
        assert a.spool.count() == 0 and a.publisher.receipts == 2
        assert finish(a, conn) == []
    finally:
        a.close()


def test_reconnect_mid_window_resends_exactly_the_unacked_with_dup(fake: FakeBroker, tmp_path: Path) -> None:
    a = Agent(_cfg(tmp_path, fake.port, max_inflight=4))
    try:
        ids = a.enqueue(6)
        conn = a.connect(fake)
        assert a.publisher.pump() == 4
        first = conn.expect_publishes(4, RESULTS)
        assert [rid(p) for p in first] == ids[:4]
        conn.puback(first[0].mid or 0)  # ids[0]: taken by the broker and receipted
        conn.puback(first[1].mid or 0)  # ids[1]: taken by the broker, its receipt never comes
        send_receipt(conn, [ids[0]])     # ids[2], ids[3]: no PUBACK at all
        conn.drop()
        wait_for(lambda: not a.publisher.connected.is_set(), 10, "the agent to see the drop")
        assert a.publisher.pump() == 0  # disconnected: nothing is published, receipts are still applied
        assert a.spool.count() == 5 and a.publisher.receipts == 1

        conn2 = fake.accept()
        connect = handshake(conn2)
        assert connect.clean_start  # a clean session: the broker kept nothing of ours
        wait_for(a.publisher.connected.is_set, 10, "the reconnect")
        # paho itself re-sends what the broker never acknowledged, with DUP set and the same packet ids.
        resent = conn2.expect_publishes(2, RESULTS)
        assert [(rid(p), p.dup, p.mid) for p in resent] == [(ids[2], True, first[2].mid), (ids[3], True, first[3].mid)]
        # The publisher re-publishes the result the broker took but no receipt covered (its receipt may
        # have been published while we had no subscription), and fills the window with the next result.
        assert a.publisher.pump() == 2
        fresh = conn2.expect_publishes(2, RESULTS)
        assert [(rid(p), p.dup) for p in fresh] == [(ids[1], False), (ids[4], False)]
        assert a.publisher.inflight() == 4 and a.spool.count() == 5, "nothing may leave the spool without a receipt"
        for p in resent + fresh:
            conn2.puback(p.mid or 0)
        assert a.publisher.pump() == 0
        send_receipt(conn2, ids[1:5])
        assert a.publisher.pump() == 1
        assert [rid(p) for p in conn2.expect_publishes(1, RESULTS)] == [ids[5]]
        assert a.spool.count() == 1 and a.publisher.receipts == 5
        assert finish(a, conn2) == []
    finally:
        a.close()


def test_result_published_while_the_connection_is_gone_is_sent_once(fake: FakeBroker, agent: Agent) -> None:
    """The pump saw `connected` a moment before paho's on_disconnect cleared it: paho answers NO_CONN
    but keeps the message and sends it after reconnecting. It is in flight, not to be published again."""
    ids = agent.enqueue(1)
    conn = agent.connect(fake)
    fake.stop_listening()  # reconnect attempts fail until the script says otherwise
    conn.drop()
    wait_for(lambda: not agent.publisher.connected.is_set(), 10, "the agent to see the drop")
    agent.publisher.connected.set()  # the race, held still: the flag as it was just before on_disconnect
    assert agent.publisher.pump() == 1 and agent.publisher.inflight() == 1
    agent.publisher.connected.clear()

    fake.listen_again()
    conn2 = fake.accept()
    handshake(conn2)
    wait_for(agent.publisher.connected.is_set, 10, "the reconnect")
    queued = conn2.expect(PUBLISH)
    assert (queued.topic, rid(queued), queued.dup) == (RESULTS, ids[0], False)
    assert agent.publisher.pump() == 0
    conn2.puback(queued.mid or 0)
    assert finish(agent, conn2) == [], "the result was published twice"
    assert agent.spool.count() == 1


def test_quarantined_receipt_ends_delivery_and_is_logged(
        fake: FakeBroker, agent: Agent, caplog: pytest.LogCaptureFixture) -> None:
    """The collector keeps a quarantined result as evidence (its quarantine table) and receipts it: the
    agent must stop re-sending it (it would be quarantined again for ever), and says so at error level."""
    ids = agent.enqueue(2)
    conn = agent.connect(fake)
    assert agent.publisher.pump() == 2
    for p in conn.expect_publishes(2, RESULTS):
        conn.puback(p.mid or 0)
    caplog.set_level(logging.ERROR, logger="agent.publisher")
    send_receipt(conn, [ids[1]], status="quarantined")
    agent.publisher.pump()
    assert agent.spool.count() == 1 and agent.publisher.inflight() == 1 and agent.publisher.receipts == 1
    assert [r.levelno for r in caplog.records if ids[1] in r.getMessage()] == [logging.ERROR]
    assert agent.spool.pending(10)[0].result_id == ids[0]
    assert finish(agent, conn) == []  # and it was not published again


def test_malformed_receipt_changes_nothing(fake: FakeBroker, agent: Agent) -> None:
    ids = agent.enqueue(1)
    conn = agent.connect(fake)
    assert agent.publisher.pump() == 1
    conn.puback(conn.expect(PUBLISH).mid or 0)
    for bad in (b"{not json", b'{"schema": 1, "result_ids": "' + ids[0].encode() + b'"}',
                b'{"schema": 1, "result_ids": ["' + ids[0].encode() + b'"], "status": "lost"}'):
        mid = conn.publish(receipts_topic(AGENT), bad)
        assert conn.expect(PUBACK).mid == mid
    assert agent.publisher.pump() == 0
    assert agent.spool.count() == 1 and agent.publisher.inflight() == 1 and agent.publisher.receipts == 0
    assert finish(agent, conn) == []


def test_oversized_result_is_refused_at_enqueue_and_never_reaches_the_wire(fake: FakeBroker, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, fake.port, max_payload_bytes=4096)
    a = Agent(cfg, spool=open_spool(cfg))
    try:
        with pytest.raises(PayloadTooLarge):
            a.spool.enqueue(make_envelope(AGENT, 0, pad=1900, problems=True).model_copy(
                update={"findings": [make_envelope(AGENT, problems=True).findings[0]] * 40}))
        assert a.spool.count() == 0 and a.spool.stats().refused == 1
        small = a.spool.enqueue(make_envelope(AGENT, 1)).result_id
        conn = a.connect(fake)
        assert a.publisher.pump() == 1
        sent = conn.expect(PUBLISH)
        assert rid(sent) == small and len(sent.payload) <= 4096
        assert finish(a, conn) == []
    finally:
        a.close()
