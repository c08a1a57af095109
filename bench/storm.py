"""Reopening storm: a backlog of results already queued at the broker, drained by the real collector.

    .venv/bin/python -m bench.storm [--agents 10000] [--results 100000]

After a lockdown every agent reconnects at once: each publishes its retained "online" status and its
spool, and the broker queues all of it for the collector's persistent session while the collector
is down. Here: a private Mosquitto (bench/ingest_rig.py; its queue raised from Mosquitto's default of
1000 messages per client to 1 000 000, see docs/scaling.md), the collector started once so that
its session and subscription exist, then stopped; the fleet simulator (bench/fleet_sim.py) connects
AGENTS agents, which publish their status and RESULTS results in all; the broker queues them for
both the collector and a bare reference subscriber (persistent sessions). Then:
1. reference: the bare subscriber reconnects and counts the backlog; time = connect -> last result;
2. `linecheck-collector serve` (SQLite) starts and drains the same backlog; time = process start ->
   the last receipt at the simulator (start-up and migrations included), peak RSS sampled by psutil.
The agents' re-send timer is an hour (an agent offline for weeks has doubled its wait up to
mqtt.resend_max_s), so nothing is re-sent during the drain unless it takes that long.
Checks: stored = distinct = results sent (zero duplicates), every receipt "stored", tickets = one
per faulty line. Prints the time (target <= 60 s), the rate against the reference and the peak RSS.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet_sim import FleetSim  # noqa: E402
from bench.ingest_rig import BareSubscriber, CollectorProcess, bench_broker, bench_main, stored_outcome  # noqa: E402

AGENT_RESEND_MAX_S = 3600.0  # agent mqtt.resend_max_s default (agent/config.py)


@dataclass
class StormFigures:
    agents: int
    results: int
    bare_s: float
    collector_s: float  # process start -> last receipt
    subscribed_s: float  # process start -> subscribed (start-up, migrations, connect)
    stored: int
    distinct: int
    receipts: dict[str, int]
    resent: int
    tickets: dict[str, int]
    expected_tickets: dict[str, int]
    statuses: int  # agents whose "online" status the collector recorded
    peak_rss_mb: float
    cpu_s: float
    load: tuple[float, float, float]

    @property
    def correct(self) -> bool:
        return (self.stored == self.distinct == self.results and self.receipts.get("stored") == self.results
                and self.tickets == self.expected_tickets)

    def report(self) -> str:
        n = self.results
        drain = self.collector_s - self.subscribed_s
        return "\n".join([
            f"bench/storm.py: {n} results of {self.agents} agents queued at the broker; load average "
            f"{self.load[0]:.2f} (5 min {self.load[1]:.2f}) on {os.cpu_count()} cores",
            f"bare subscriber drains the backlog (reference): {self.bare_s:.2f} s, {n / self.bare_s:.0f} results/s",
            f"collector (SQLite) start to last receipt: {self.collector_s:.2f} s (target <= 60 s; start-up "
            f"{self.subscribed_s:.2f} s, drain {drain:.2f} s = {n / drain:.0f} results/s), "
            f"{1000 * self.cpu_s / n:.2f} ms CPU per result",
            f"rate collector/bare: {self.bare_s / self.collector_s:.2f} (drain only {self.bare_s / drain:.2f})",
            f"peak collector RSS: {self.peak_rss_mb:.0f} MB",
            f"stored {self.stored} rows, {self.distinct} distinct (sent {n}); receipts {self.receipts}; "
            f"re-sent {self.resent}; statuses recorded {self.statuses}",
            f"tickets {self.tickets} (expected {self.expected_tickets}): {'CORRECT' if self.correct else 'WRONG'}",
        ])


def measure(workdir: Path, agents: int, results: int, connections: int = 4,
            timeout_s: float = 900.0) -> StormFigures:
    broker = bench_broker(workdir / "broker")
    collector = CollectorProcess(workdir / "collector", broker.port)
    sim = FleetSim("127.0.0.1", broker.port, agents, connections=connections, resend_after_s=AGENT_RESEND_MAX_S,
                   resend_max_s=AGENT_RESEND_MAX_S)
    try:
        # The sessions that will queue the backlog: the collector's and the reference's.
        collector.start()
        collector.stop()
        bare = BareSubscriber(broker.port, persistent=True)
        bare.connect()
        bare.close()
        # Lockdown ends: the fleet reconnects and publishes while the collector is still down.
        sim.connect(status=True)
        sim.preload(results)
        sim.run()
        if not sim.wait_published(timeout_s):
            raise TimeoutError(f"the simulator could not publish {results} results in {timeout_s} s")

        bare = BareSubscriber(broker.port, persistent=True)
        started = bare.connect()
        if not bare.wait_count(results, timeout_s):
            raise TimeoutError(f"the reference drained {bare.count} of {results} in {timeout_s} s")
        assert bare.last_at is not None
        bare_s = bare.last_at - started
        bare.close()

        collector.peak_rss = 0
        started = collector.start()
        subscribed_s = time.monotonic() - started
        if not sim.wait_receipts(timeout_s):
            raise TimeoutError(f"the collector receipted {sim.receipted} of {results} in {timeout_s} s: {sim.counts()}")
        assert sim.last_receipt is not None
        collector_s = sim.last_receipt - started
        cpu_s = collector.cpu_seconds()
    finally:
        sim.close()
        collector.stop()
        broker.stop()
    stored, distinct, tickets, statuses = stored_outcome(collector.db_path)
    counts = sim.counts()
    receipts = {k: counts[k] for k in ("stored", "duplicate", "quarantined") if k in counts}
    return StormFigures(agents, results, bare_s, collector_s, subscribed_s, stored, distinct, receipts,
                        counts["resent"], tickets, dict(sim.expected_tickets()), statuses,
                        collector.peak_rss / 2**20, cpu_s, os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, "python -m bench.storm", __doc__.splitlines()[0], 10000, 100000, measure,
                      lambda f: f.correct)


if __name__ == "__main__":
    sys.exit(main())
