"""What one ingest process stores through: the database with the rules, area incidents and promise verdicts
hooked into every ingest transaction. `serve` builds it once (one process) or once per worker
(`serve --workers N`, collector/ingest/pool.py); the supervising process builds its own for the background
jobs and the API, without ingest."""

from __future__ import annotations

import gc
from dataclasses import dataclass

from collector.config import CollectorConfig
from collector.incidents.correlate import Correlator
from collector.promises.hook import PromiseHook
from collector.rules.engine import RuleEngine
from collector.store.database import Store


@dataclass
class Pipeline:
    store: Store
    rules: RuleEngine
    correlator: Correlator


def build_pipeline(cfg: CollectorConfig) -> Pipeline:
    # Ingest allocates thousands of short-lived objects per batch (parsed envelopes, rows) while the
    # rules' cache holds tens of thousands of long-lived ones: with CPython's default thresholds
    # (700, 10, 10) the collector spent about a fifth of its ingest CPU in the cyclic collector.
    gc.set_threshold(50_000, 20, 100)
    store = Store(cfg.database)
    rules = RuleEngine(cfg.rules)
    correlator = Correlator(cfg.incidents, rules)
    rules.hold = correlator.hold  # a fault on a line with an access path waits for its neighbours
    store.add_hook(rules.on_ingest)  # rules → tickets in the ingest transaction
    store.add_hook(correlator.on_ingest)  # held faults → area incidents or their own tickets
    store.add_hook(PromiseHook(cfg.promises))  # new speed/WiFi tests → promise verdicts → tickets
    return Pipeline(store, rules, correlator)
