"""End-to-end durable ingest rate of the real collector against a bare subscriber, same broker, same messages.

    .venv/bin/python -m bench.ingest [--agents 2000] [--results 20000] [--connections 4]

One private Mosquitto (bench/ingest_rig.py), one fleet simulator (bench/fleet_sim.py) publishing
RESULTS results of AGENTS virtual agents as a burst, twice, the same payloads both times:
1. reference: a bare paho subscriber that only counts; its rate is results / (last received -
   first published);
2. `linecheck-collector serve` (SQLite, default config: rules, promises, HTTP API in the process)
   on a fresh database; its rate is results / (last receipt at the simulator - first published),
   so it covers received → validated → committed (with rules and tickets) → receipt delivered.
Prints both rates and their ratio (target: collector ≥ 0.50 of the bare rate), checks that every
result was stored once and that the tickets are the ones the fleet's faulty lines call for.
Re-sends are set to 10 minutes so that neither phase is inflated by copies.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet_sim import FleetSim  # noqa: E402
from bench.ingest_rig import BareSubscriber, CollectorProcess, bench_broker, bench_main, stored_outcome  # noqa: E402


@dataclass
class IngestFigures:
    results: int
    bare_s: float
    collector_s: float
    stored: int
    distinct: int
    tickets: dict[str, int]
    expected_tickets: dict[str, int]
    peak_rss_mb: float
    cpu_s: float  # the collector's CPU time while it ingested
    load: tuple[float, float, float]

    @property
    def ratio(self) -> float:
        return self.bare_s / self.collector_s

    def report(self) -> str:
        n = self.results
        return "\n".join([
            f"bench/ingest.py: {n} results, {self.load[0]:.2f} load average (1 min; 5 min {self.load[1]:.2f}) "
            f"on {os.cpu_count()} cores",
            f"bare subscriber (reference): {self.bare_s:.2f} s, {n / self.bare_s:.0f} results/s",
            f"collector (SQLite, end to end to the receipt): {self.collector_s:.2f} s, "
            f"{n / self.collector_s:.0f} results/s, peak RSS {self.peak_rss_mb:.0f} MB, "
            f"{1000 * self.cpu_s / n:.2f} ms CPU per result ({self.cpu_s / self.collector_s:.2f} cores)",
            f"ratio collector/bare: {self.ratio:.2f} (target >= 0.50)",
            f"stored {self.stored} rows, {self.distinct} distinct; tickets {self.tickets} "
            f"(expected {self.expected_tickets})",
        ])


def measure(workdir: Path, agents: int, results: int, connections: int = 4, timeout_s: float = 600.0) -> IngestFigures:
    broker = bench_broker(workdir / "broker")
    sim = FleetSim("127.0.0.1", broker.port, agents, connections=connections, max_inflight=None,
                   resend_after_s=600.0)
    collector = CollectorProcess(workdir / "collector", broker.port)
    try:
        sim.connect()
        sim.preload(results)
        bare = BareSubscriber(broker.port)
        bare.connect()
        sim.run()
        if not bare.wait_count(results, timeout_s):
            raise TimeoutError(f"the bare subscriber got {bare.count} of {results} in {timeout_s} s")
        assert sim.first_publish is not None and bare.last_at is not None
        bare_s = bare.last_at - sim.first_publish
        bare.close()

        sim.replay()
        collector.start()
        cpu_before = collector.cpu_seconds()
        sim.run()
        if not sim.wait_receipts(timeout_s):
            raise TimeoutError(f"the collector receipted {sim.receipted} of {results} in {timeout_s} s")
        assert sim.first_publish is not None and sim.last_receipt is not None
        collector_s = sim.last_receipt - sim.first_publish
        cpu_s = collector.cpu_seconds() - cpu_before
    finally:
        sim.close()
        collector.stop()
        broker.stop()
    stored, distinct, tickets, _ = stored_outcome(collector.db_path)
    return IngestFigures(results, bare_s, collector_s, stored, distinct, tickets, dict(sim.expected_tickets()),
                         collector.peak_rss / 2**20, cpu_s, os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, "python -m bench.ingest", __doc__.splitlines()[0], 2000, 20000, measure,
                      lambda f: f.stored == f.distinct == f.results and f.tickets == f.expected_tickets)


if __name__ == "__main__":
    sys.exit(main())
