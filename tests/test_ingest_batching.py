"""Batches sized by their measured cost: one batch never holds every other agent's results for long.

The worker times each batch and keeps a running cost per message; the next batch takes about
`ingest.batch_target_s` worth of messages (bench/adversarial.py measures the stalls this bounds).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import CollectorConfig
from collector.ingest.worker import Inbound, Ingestor
from collector.store.database import Store


def _ingestor(tmp_path: Path, **ingest: object) -> Ingestor:
    url = f"sqlite:///{tmp_path}/c.db"
    return Ingestor(CollectorConfig.model_validate({"database": url, "ingest": ingest}), Store(url))


def test_batches_follow_the_measured_cost_within_their_bounds(tmp_path: Path) -> None:
    ing = _ingestor(tmp_path, batch_max=500, batch_target_s=0.25)
    assert ing.batch_limit() == 500  # nothing measured yet: the configured maximum
    ing._measured(500, 1.0)  # 2 ms a message
    assert ing.batch_limit() == 125
    for _ in range(30):  # a machine that got slow: 50 ms a message
        ing._measured(100, 5.0)
    assert ing.batch_limit() == 10  # never a transaction per message
    for _ in range(30):  # and fast again
        ing._measured(100, 0.001)
    assert ing.batch_limit() == 500
    ing._measured(1, 100.0)  # a lone message's time is mostly fixed cost: not a measure of many
    assert ing.batch_limit() == 500


def test_take_batch_stops_at_the_limit(tmp_path: Path) -> None:
    ing = _ingestor(tmp_path, batch_max=500, batch_target_s=0.1, batch_wait_s=0)
    for i in range(300):
        ing.inbox.put(Inbound("linecheck/v1/agents/gw-1/results", b"{}", i + 1, 1))
    ing._measured(100, 0.1)  # 1 ms a message: 100 fit in 0.1 s
    sizes = [len(ing._take_batch()) for _ in range(3)]
    assert sizes == [100, 100, 100]


def test_batch_target_is_validated() -> None:
    with pytest.raises(ValueError, match="batch_target_s"):
        CollectorConfig.model_validate({"ingest": {"batch_target_s": 0}})
