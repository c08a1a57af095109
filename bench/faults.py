"""Loop every fault-injection scenario (tests/faultkit.py) and print what happened to every result.

    .venv/bin/python -m bench.faults                 # 50 rounds of each scenario (~40 min on 2 cores)
    .venv/bin/python -m bench.faults --rounds 3 --only broker_kill_9_and_restart

Real mosquitto, collector and agent processes, a fresh work directory per round. Kill points are
drawn at random per round (how far delivery got before the kill). For each scenario it prints the
summed `sent, receipted, stored, lost, duplicates_stored, evicted` over all rounds, the rounds that
failed (lost > 0 or duplicates_stored > 0 or a timeout), and the median time to full delivery as a
ratio to the no-fault reference measured in the same run. Needs root for the full-disk scenario
(a 1 MB tmpfs); without root that scenario uses the spool's byte bound instead.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.faultkit import SCENARIOS, Rig, Tally, scenario_reference

Scenario = Callable[..., Tally]


@dataclass
class Outcome:
    tallies: list[Tally] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def total(self, attr: str) -> int:
        return sum(getattr(t, attr) for t in self.tallies)


def _round(name: str, fn: Scenario, work: Path, rng: random.Random) -> tuple[Tally, float]:
    kwargs: dict[str, float] = {}
    rig_args: dict[str, object] = {}
    mount: Path | None = None
    if name in ("agent_kill_9_mid_publish", "broker_kill_9_and_restart", "collector_kill_9_mid_commit"):
        kwargs["at"] = rng.uniform(0.05, 0.9)
    if name == "disk_full_on_agent_spool":
        if os.geteuid() == 0:
            mount = work / "small-disk"
            mount.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
            rig_args = {"data_dir": mount / "agent-data", "spool": "min_free_bytes: 65536"}
        else:
            rig_args = {"spool": "max_bytes: 131072", "mqtt": ", max_payload_bytes: 8192"}
    rig = Rig(work / "rig", **rig_args)  # type: ignore[arg-type]
    started = time.monotonic()
    try:
        tally = fn(rig, **kwargs)
        return tally, time.monotonic() - started
    finally:
        rig.close()
        if mount is not None:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def run(rounds: int, only: list[str] | None, seed: int) -> dict[str, Outcome]:
    rng = random.Random(seed)
    plan: dict[str, Scenario] = {"no_fault_reference": scenario_reference}
    plan.update({k: v for k, v in SCENARIOS.items() if not only or k in only})
    results = {name: Outcome() for name in plan}
    for i in range(rounds):
        for name, fn in plan.items():
            with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as tmp:
                try:
                    tally, seconds = _round(name, fn, Path(tmp), rng)
                except Exception as exc:  # a timeout is a failed round, reported, not a crash of the bench
                    results[name].failures.append(f"round {i + 1}: {type(exc).__name__}: {exc}")
                    print(f"[{i + 1}/{rounds}] {name}: FAILED {exc}", flush=True)
                    continue
            out = results[name]
            out.tallies.append(tally)
            out.seconds.append(seconds)
            if tally.lost or tally.duplicates_stored:
                out.failures.append(f"round {i + 1}: {tally.line(name)}")
            print(f"[{i + 1}/{rounds}] {tally.line(name)} ({seconds:.1f} s)", flush=True)
    return results


def report(results: dict[str, Outcome], rounds: int) -> str:
    ref = statistics.median(results["no_fault_reference"].seconds or [float("nan")])
    head = (f"bench/faults.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, {rounds} rounds per scenario; "
            f"reference (no fault) median {ref:.1f} s per round")
    lines = [head, "",
             "| scenario | rounds ok | sent | receipted | stored | lost | duplicates_stored | evicted | "
             "median time vs reference |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, out in results.items():
        median = statistics.median(out.seconds) if out.seconds else float("nan")
        ok = len(out.tallies) - sum(1 for f in out.failures if "lost=" in f)
        lines.append(f"| {name} | {ok}/{rounds} | {out.total('sent')} | {out.total('receipted')} | "
                     f"{out.total('stored')} | {out.total('lost')} | {out.total('duplicates_stored')} | "
                     f"{out.total('evicted')} | {median / ref:.2f}x |")
    failures = [f"- {name} {f}" for name, out in results.items() for f in out.failures]
    lines += ["", "failures:" if failures else "failures: none", *failures]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run only this scenario (repeatable)")
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args(argv)
    results = run(args.rounds, args.only, args.seed)
    print()
    print(report(results, args.rounds))
    bad = any(out.failures for out in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
