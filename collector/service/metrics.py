"""Prometheus metrics of one collector process, served at /metrics.

Counters and the receipt-latency histogram are fed by this process's ingest worker (`observe_batch`),
so with several collectors each one reports its own share (sum them in Prometheus). Fleet-wide
gauges (quarantine size, agents online, open tickets by class) are read from the database at
scrape time: every collector reports the same figure, so take max(), not sum().
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from collector.store import schema as t
from collector.store.delivery import missing_totals

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _DatabaseGauges(Collector):
    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("linecheck_database_up", "1 when the last scrape could read the database")
        try:
            gauges = list(self._read())
        except Exception:  # a scrape must answer even when the database does not
            log.exception("metrics: cannot read the database")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from gauges

    def _read(self) -> Iterator[Metric]:
        with self.engine.connect() as conn:
            quarantined = conn.execute(select(func.count()).select_from(t.quarantine)).scalar_one()
            # Grouped by the column itself: PostgreSQL refused GROUP BY coalesce(status, $1) next to a
            # select of coalesce(status, $2) (two parameters, two expressions), so /metrics said database down.
            states: dict[str, int] = {}
            for status, n in conn.execute(select(t.agents.c.status, func.count()).group_by(t.agents.c.status)):
                states[status or "unknown"] = states.get(status or "unknown", 0) + int(n)
            stored = conn.execute(select(func.coalesce(func.sum(t.agents.c.result_count), 0))).scalar_one()
            tickets = _open_tickets(conn)
        q = GaugeMetricFamily("linecheck_quarantine_messages", "Messages held in quarantine (refused at ingest)")
        q.add_metric([], float(quarantined))
        yield q
        agents = GaugeMetricFamily("linecheck_agents", "Agents by last reported state", labels=["state"])
        for state in sorted({"online", "offline", "unknown", *states}):
            agents.add_metric([state], float(states.get(state, 0)))
        yield agents
        online = GaugeMetricFamily("linecheck_agents_online", "Agents whose last status message says online")
        online.add_metric([], float(states.get("online", 0)))
        yield online
        results = GaugeMetricFamily("linecheck_results_stored", "Results stored (all collectors)")
        results.add_metric([], float(stored))
        yield results
        missing, gappy = missing_totals(self.engine)
        gauge = GaugeMetricFamily("linecheck_results_missing",
                                  "Seq numbers below each agent's latest that have not arrived: in flight, "
                                  "evicted by the agent's spool (it reports spool_evicted_count), or lost")
        gauge.add_metric([], float(missing))
        yield gauge
        agents_gappy = GaugeMetricFamily("linecheck_agents_with_gaps", "Agents with at least one seq gap")
        agents_gappy.add_metric([], float(gappy))
        yield agents_gappy
        if tickets is not None:
            open_ = GaugeMetricFamily("linecheck_tickets_open", "Open repair tickets by fault class",
                                      labels=["fault_class"])
            for fault, n in sorted(tickets.items()):
                open_.add_metric([fault], float(n))
            yield open_


def _open_tickets(conn) -> dict[str, int] | None:  # type: ignore[no-untyped-def]
    """Open tickets by class, once the tickets table exists (collector/tickets/lifecycle.py)."""
    tickets = getattr(t, "tickets", None)
    if tickets is None or "fault_class" not in tickets.c or "state" not in tickets.c:
        return None
    closed = ("resolved", "verified")
    stmt = (select(tickets.c.fault_class, func.count()).where(tickets.c.state.not_in(closed))
            .group_by(tickets.c.fault_class))
    return {str(k): int(v) for k, v in conn.execute(stmt)}


class HasHealth(Protocol):
    def health(self) -> Any: ...  # collector.ingest.worker.IngestHealth


class _IngestGauges(Collector):
    """This process's ingest: broker connection and whether taken messages are moving."""

    def __init__(self, ingest: HasHealth):
        self.ingest = ingest

    def collect(self) -> Iterator[Metric]:
        h = self.ingest.health()
        for name, doc, value in (
                ("linecheck_broker_connected", "1 when ingest is connected to the broker", h.connected),
                ("linecheck_broker_subscribed", "1 when ingest is subscribed to results and status", h.subscribed),
                ("linecheck_ingest_pending_messages", "Messages taken from the broker and not yet acked", h.pending),
                ("linecheck_ingest_oldest_unacked_seconds", "Age of the oldest of them", h.oldest_pending_s),
                ("linecheck_ingest_stalled", "1 when the oldest un-acked message is older than the stall limit",
                 h.stalled),
                ("linecheck_ingest_db_retries", "Database outages waited out by ingest (cumulative)", h.db_retries)):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], float(value))
            yield gauge
        link = getattr(h, "broker", None)
        if link is not None:  # collector/ingest/broker_link.py: why ingest has no broker, and for how long
            failures = CounterMetricFamily("linecheck_broker_connect_failures",
                                           "Connection attempts to the broker that failed (unreachable or refused)")
            failures.add_metric([], float(link.failures))
            yield failures
            down = GaugeMetricFamily("linecheck_broker_down_seconds",
                                     "Seconds ingest has been without a broker connection (0 while connected)")
            down.add_metric([], link.down_s)
            yield down
            state = GaugeMetricFamily("linecheck_broker_state", "1 for the state ingest's broker connection is in",
                                      labels=["state"])
            for name in ("connecting", "connected", "unreachable", "refused", "disconnected"):
                state.add_metric([name], 1.0 if link.state == name else 0.0)
            yield state
        if getattr(h, "partitions_owned", None) is not None:  # broker.kind nats (collector/ingest/jetstream.py)
            owned = GaugeMetricFamily("linecheck_ingest_partitions_owned",
                                      "Partitions of the results stream this collector holds the lease of")
            owned.add_metric([], float(h.partitions_owned))
            yield owned
            again = CounterMetricFamily("linecheck_ingest_redelivered",
                                        "Results delivered to this collector again (taken before, never acked)")
            again.add_metric([], float(h.redelivered))
            yield again


class CollectorMetrics:
    def __init__(self, engine: Engine, ingest: HasHealth | None = None):
        self.registry = CollectorRegistry()
        self.messages = Counter("linecheck_ingest_messages", "Result messages handled by this collector, by outcome",
                                ["outcome"], registry=self.registry)
        for outcome in ("stored", "duplicate", "quarantined"):
            self.messages.labels(outcome)  # present at 0 before the first message, so rate() works
        self.receipt_latency = Histogram(
            "linecheck_receipt_latency_seconds",
            "From a message's arrival to its receipt being published (validation + commit + publish)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry)
        self.registry.register(_DatabaseGauges(engine))
        self.ingest: HasHealth | None = None
        if ingest is not None:
            self.watch(ingest)

    def watch(self, ingest: HasHealth) -> None:
        """Report this ingest's health in /metrics and /healthz (collector/api/app.py)."""
        self.ingest = ingest
        self.registry.register(_IngestGauges(ingest))

    def observe_batch(self, stored: int, duplicates: int, quarantined: int, latencies_s: Sequence[float]) -> None:
        self.messages.labels("stored").inc(stored)
        self.messages.labels("duplicate").inc(duplicates)
        self.messages.labels("quarantined").inc(quarantined)
        for latency in latencies_s:
            self.receipt_latency.observe(latency)

    def render(self) -> bytes:
        return generate_latest(self.registry)
