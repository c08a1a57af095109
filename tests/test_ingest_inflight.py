"""broker.kind nats: the results a collector takes ahead of its worker follow its measured pace
(collector/ingest/worker.py in_flight_bound). A storm on a loaded 2-core machine drained at ~40 results/s
with 1000 taken per worker: what waited in hand longer than ack_wait (30 s) was delivered again, over and
over, and processed twice."""

from __future__ import annotations

from types import SimpleNamespace

from collector.config import CollectorConfig
from collector.ingest.worker import IN_FLIGHT_MIN, Ingestor, in_flight_bound


def test_bound_is_what_a_third_of_ack_wait_gets_through() -> None:
    assert in_flight_bound(0.0, 30.0, 1000) == 1000  # not measured yet: the configured look-ahead
    assert in_flight_bound(0.001, 30.0, 1000) == 1000  # 1000/s: a third of 30 s is 10,000 > the cap
    assert in_flight_bound(0.025, 30.0, 1000) == 400  # 40/s: 10 s of work
    assert in_flight_bound(1.0, 30.0, 1000) == IN_FLIGHT_MIN  # never starved below a pull's worth
    assert in_flight_bound(1.0, 30.0, 20) == 20


def test_a_slow_worker_takes_less_ahead_from_the_stream() -> None:
    cfg = CollectorConfig(broker={"kind": "nats"})  # type: ignore[arg-type]
    ingestor = Ingestor.__new__(Ingestor)  # no broker, no database: only the pacing is exercised
    ingestor.cfg = cfg
    ingestor._cost_per_message = 0.0
    ingestor._in_flight_cap = 1000
    ingestor.source = SimpleNamespace(max_in_flight=1000)  # type: ignore[assignment]
    ingestor._measured(100, 2.5)  # 25 ms per result
    assert ingestor.source.max_in_flight == 400  # type: ignore[union-attr]
    for _ in range(30):
        ingestor._measured(500, 0.5)  # back to 1 ms per result
    assert ingestor.source.max_in_flight == 1000  # type: ignore[union-attr]
