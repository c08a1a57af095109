"""/metrics for reads off the primary (collector/store/replica.py): where this process's reads went, and
whether the replica is taken as down. Registered by the HTTP app only when `database_read:` is set."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.store.replica import ReadRouting

# Present at 0 from the start, so rate() works before the first fallback.
KNOWN = ("replica", "primary:own write not replayed", "primary:replica down")


class ReplicaGauges(Collector):
    def __init__(self, routing: ReadRouting):
        self.routing = routing

    def collect(self) -> Iterator[Metric]:
        reads = CounterMetricFamily(
            "linecheck_db_reads", "Database connections handed to HTTP reads, by the database that served them "
            "and why the primary did", labels=["database", "reason"])
        served = {key: 0 for key in KNOWN} | dict(self.routing.served)
        for key, count in served.items():
            database, _, reason = key.partition(":")
            reads.add_metric([database, reason], float(count))
        yield reads
        up = GaugeMetricFamily("linecheck_read_replica_up",
                               "1 while reads go to the read replica, 0 while it is taken as down")
        up.add_metric([], 0.0 if self.routing.replica_down else 1.0)
        yield up
