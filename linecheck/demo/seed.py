"""Seed the demo's simulated fleet into a running collector, once, and keep it reporting.

Until `fleet.json` in the state directory says it completed, the carrier's side is filled the way a
carrier fills it, through the collector's own commands: `registry import` (tenant, sites, lines
and the agents' bindings), `promises import`, `promises billing-import`. Then each simulated agent
publishes its history through the broker and waits for the collector's receipts, so every result
goes through ingest, binding, rules, tickets and the promise ledger like a real gateway's; last,
`promises evaluate` judges the billing promise (speed promises are judged at ingest).

Started again with the same state directory (`fleet.json` says the seeding completed), nothing is
imported or published twice: the anchor time and each agent's sequence number and unreceipted
results are in the state files, so only what never got a receipt goes again (ingest drops a repeat
by its result id). `live` then keeps the
agents reporting on schedule, so they stay online beside the machine's own agent.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent.statefile import load_json, save_json
from linecheck.demo import fleet
from linecheck.demo.agents import SimAgent


class SeedError(RuntimeError):
    pass


@dataclass
class SimFleet:
    agents: list[SimAgent]
    interval_s: int
    seeded_now: int = 0  # results of the history published by this run (0: seeded before)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def receipts(self) -> dict[str, int]:
        total = {"stored": 0, "duplicate": 0, "quarantined": 0}
        for a in self.agents:
            for k, n in a.receipts.items():
                total[k] += n
        return total

    def live(self) -> None:
        """Report on schedule (every interval_s) from a background thread until `stop`."""
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                for a in self.agents:
                    a.send_scheduled()

        self._thread = threading.Thread(target=loop, name="demo-fleet", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for a in self.agents:
            a.stop()


def _collector(config: Path, *argv: str) -> str:
    out = subprocess.run([sys.executable, "-m", "collector.cli", *argv[:2], "--config", str(config), *argv[2:]],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SeedError(f"linecheck-collector {' '.join(argv[:2])} failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def start(state_dir: Path, collector_config: Path, host: str, port: int, interval_s: int,
          timeout_s: float = 120) -> SimFleet:
    """Connect the simulated agents; on the first start import the carrier's records and publish the
    history, waiting for every receipt. Raises SeedError when a step fails or receipts do not come."""
    state_dir.mkdir(parents=True, exist_ok=True)
    marker = state_dir / "fleet.json"
    state = load_json(marker)
    seeded = bool(state.get("complete"))
    # The anchor is kept from the first attempt: an interrupted seeding resumes the same history.
    anchor = (datetime.fromisoformat(state["anchor"]) if state.get("anchor")
              else datetime.now(UTC).replace(microsecond=0))
    if not seeded:
        save_json(marker, {"anchor": anchor.isoformat(), "complete": False})
        files = {"registry.yaml": fleet.registry_yaml(interval_s), "promises.yaml": fleet.promises_yaml(anchor),
                 "billing.csv": fleet.billing_csv(anchor)}
        for name, text in files.items():
            (state_dir / name).write_text(text)
        # The bindings first: ingest holds each agent to the line it is registered on.
        _collector(collector_config, "registry", "import", str(state_dir / "registry.yaml"))
        _collector(collector_config, "promises", "import", str(state_dir / "promises.yaml"))
        _collector(collector_config, "promises", "billing-import", str(state_dir / "billing.csv"))
    agents = [SimAgent(line, host, port, state_dir) for line in fleet.LINES]
    sim = SimFleet(agents, interval_s)
    deadline = time.monotonic() + timeout_s
    try:
        for a in agents:
            a.start()
        for a in agents:
            if not a.connected.wait(max(0.0, deadline - time.monotonic())):
                raise SeedError(f"simulated agent {a.line.agent_id} could not connect to {host}:{port}")
        if not seeded:
            for a in agents:
                for p in fleet.history(anchor)[a.line.agent_id][a.seq:]:
                    a.send(p)
                    sim.seeded_now += 1
        for a in agents:
            if not a.wait_drained(deadline):
                raise SeedError(f"simulated agent {a.line.agent_id}: {len(a.pending)} result(s) without a receipt "
                                f"after {timeout_s:g} s (is the collector running?)")
        if sim.receipts()["quarantined"]:
            raise SeedError(f"the collector quarantined {sim.receipts()['quarantined']} simulated result(s)")
        if not seeded:
            _collector(collector_config, "promises", "evaluate")
            save_json(marker, {"anchor": anchor.isoformat(), "complete": True})
    except BaseException:
        sim.stop()
        raise
    return sim
