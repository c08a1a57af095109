"""Several collectors in one MQTT shared-subscription group on PostgreSQL: rate, duplicates, tickets, a kill.

    .venv/bin/python -m bench.scale_pg                       # 1, 2, 3 collectors, 3 rounds each, then the kill
    .venv/bin/python -m bench.scale_pg --agents 1000 --no-kill    # a backlog burst: 10 results per agent at once

Each round gets a fresh PostgreSQL database and a fresh Mosquitto; `n` real collector processes
(`linecheck-collector serve`, `mqtt.shared_group`) ingest one burst of results from the fleet
simulator (bench/fleet_sim.py: agents with their own ids and sequence numbers, re-sending what is not
receipted). Rounds of 1, 2 and 3 collectors are interleaved so that the other load on a shared
machine falls on all of them alike. Figures, all read from the database and /proc:

- rate: results per second from the first publication to the moment every result is stored and
  receipted (the drain of the burst, end to end), and its ratio to one collector measured in the
  same run (median of the rounds);
- CPU seconds per 1000 stored results, per role (collectors, their PostgreSQL backends, broker,
  simulator), the cores these kept busy, and how busy the whole machine was (other processes
  included): on 2 shared cores this shows where the limit is;
- lock waiters: collectors blocked, on average, on another's per-agent or per-line advisory lock
  (sampled from pg_stat_activity): the price of round-robin routing when agents send many at once;
- duplicates (rows beyond one per agent and sequence number), lost results, tickets against the
  simulator's expected faults (each faulty line exactly one ticket of its class).

Then the kill, twice: 2 collectors, SIGKILL one after `--kill-at` of the results are stored; the
agents re-send what was not receipted, the survivor stores it. Lost and duplicates must be 0, and
every fault still exactly one ticket. First with the default persistent session: the killed
collector's session at the broker keeps what it held and Mosquitto 2.0 still hands it its share of
new messages, so each re-send reaches the survivor with probability 1/2 (a long tail). Then with
`mqtt.session_expiry_s`: once the session expires the survivor gets everything.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet_sim import TICKET_AFTER, FleetSim  # noqa: E402
from bench.pg_collectors import PG_ADMIN_URL, CollectorGroup, CpuMeter, LockSampler, fresh_database  # noqa: E402
from tests.helpers import wait_for  # noqa: E402

ROLES = ("collectors", "postgres", "broker", "simulator")


@dataclass
class Run:
    """One round: n collectors draining one burst."""

    collectors: int
    results: int
    rate: float | None = None  # results / wall_s
    wall_s: float | None = None  # first publication until every result is stored and receipted
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per role during the drain
    machine_busy: float | None = None  # fraction of all cores busy (every process on the machine)
    lock_waiters: float | None = None  # collectors blocked on another's advisory lock, on average
    stored: int = 0
    duplicates: int = 0
    lost: int = 0
    resent: int = 0
    tickets_ok: bool = False
    ticket_note: str = ""
    killed_at: int | None = None  # stored results when a collector was killed
    session_expiry_s: int | None = None  # the collectors' mqtt.session_expiry_s (None: MQTT 3.1.1, kept)
    error: str | None = None

    def cores_used(self) -> float | None:
        """Cores the system under test (collectors, PostgreSQL backends, broker, simulator) kept busy."""
        return sum(self.cpu.values()) / self.wall_s if self.wall_s and self.cpu else None

    def cpu_per_1000(self, role: str) -> float | None:
        return None if not self.stored or role not in self.cpu else 1000 * self.cpu[role] / self.stored


def expected_faults(sim: FleetSim) -> set[tuple[str, str]]:
    """(line, fault class) pairs the default rules must open one ticket for (see bench/fleet_sim.py)."""
    return {(a.line_id, a.profile) for a in sim.agents
            if a.profile in TICKET_AFTER and a.results >= TICKET_AFTER[a.profile]}


def check_tickets(tickets: dict[tuple[str, str], int], expected: set[tuple[str, str]]) -> tuple[bool, str]:
    twice = {k: v for k, v in tickets.items() if v != 1}
    missing = expected - set(tickets)
    extra = set(tickets) - expected
    note = f"{sum(tickets.values())} tickets for {len(expected)} expected faults"
    if twice or missing or extra:
        note += f" (more than one: {len(twice)}, missing: {len(missing)}, unexpected: {len(extra)})"
    return not (twice or missing or extra), note


def run_round(n: int, agents: int, results: int, *, kill_at: float | None = None, resend_after_s: float = 120.0,
              rate: float | None = None, session_expiry_s: int | None = None, timeout_s: float = 300.0,
              admin_url: str = PG_ADMIN_URL) -> Run:
    """Start a broker, a fresh database and n collectors; send one burst (or publish at `rate`/s);
    measure. With kill_at, SIGKILL the first collector once that fraction of the results is stored."""
    run = Run(n, results, session_expiry_s=session_expiry_s)
    with fresh_database(admin_url) as db_url, tempfile.TemporaryDirectory(prefix="scale-pg-") as tmp:
        group = CollectorGroup(Path(tmp), db_url, session_expiry_s=session_expiry_s)
        sim: FleetSim | None = None
        try:
            group.start_broker()
            names = group.start_all(n)
            sim = FleetSim("127.0.0.1", group.broker.port, agents, resend_after_s=resend_after_s,
                           resend_max_s=4 * resend_after_s, prefix=f"n{n}")
            sim.connect()
            sim.preload(results)
            meter = CpuMeter()
            meter.sample(group.pids())
            sim_cpu0 = time.process_time()  # the simulator's threads are this process
            started = time.monotonic()
            with LockSampler(group) as locks:
                sim.run(rate)
                if kill_at is not None:
                    wait_for(lambda: group.stored() >= kill_at * results, timeout_s, "results before the kill")
                    meter.sample(group.pids())  # what the doomed collector did until now still counts
                    group.kill(names[0])
                    run.killed_at = group.stored()
                    if run.killed_at >= results:
                        raise RuntimeError("every result was stored before the kill: publish slower (--kill-rate)")
                # Done = every result receipted (the agents' view) and stored (the database's view).
                wait_for(lambda: sim.outstanding() == 0, timeout_s, "every result receipted")
                wait_for(lambda: group.stored() >= results, timeout_s, "every result stored")
                run.wall_s = time.monotonic() - started
            run.lock_waiters = locks.mean()
            meter.sample(group.pids())
            run.cpu = meter.by_role()
            run.cpu["simulator"] = time.process_time() - sim_cpu0
            busy, capacity = meter.machine()
            run.machine_busy = busy / capacity if capacity else None
            run.rate = results / run.wall_s
            counts = group.counts()
            run.stored, run.duplicates = counts.distinct, counts.duplicates
            run.lost = results - counts.distinct
            run.resent = sim.counts()["resent"]
            run.tickets_ok, run.ticket_note = check_tickets(counts.tickets, expected_faults(sim))
        except Exception as exc:  # a failed measurement is recorded with its reason, never as 0
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            if sim is not None:
                sim.close()
            group.close()
    return run


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "n/a" if value is None else format(value, spec)


def report(runs: list[Run], kills: list[Run], args: argparse.Namespace) -> tuple[str, bool]:
    by_n: dict[int, list[Run]] = {}
    for r in runs:
        by_n.setdefault(r.collectors, []).append(r)

    def median(rs: list[Run], get: object) -> float | None:
        values = [v for v in (get(r) for r in rs if r.error is None) if v is not None]  # type: ignore[operator]
        return statistics.median(values) if values else None

    ref = median(by_n.get(1, []), lambda r: r.rate)
    lines = [f"bench/scale_pg.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
             f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.agents} agents, "
             f"{args.results} results per round, {args.rounds} round(s) per collector count", "",
             "| collectors | rate (results/s, median) | vs 1 collector | rounds | CPU s per 1000 stored: collectors / "
             "postgres / broker / simulator | cores used by these | machine busy (all processes) | lock waiters | "
             "duplicates | lost | tickets |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    ok = True
    for n, rs in sorted(by_n.items()):
        rate = median(rs, lambda r: r.rate)
        cpu = " / ".join(_fmt(median(rs, lambda r, role=role: r.cpu_per_1000(role)), ".2f") for role in ROLES)
        busy = median(rs, lambda r: r.machine_busy)
        waiters = median(rs, lambda r: r.lock_waiters)
        cores = median(rs, lambda r: r.cores_used())
        dup = sum(r.duplicates for r in rs)
        lost = sum(r.lost for r in rs)
        tickets_ok = all(r.tickets_ok for r in rs if r.error is None)
        ok &= dup == 0 and lost == 0 and tickets_ok and all(r.error is None for r in rs)
        rounds = ", ".join(_fmt(r.rate) if r.error is None else "failed" for r in rs)
        ratio = f"{rate / ref:.2f}x" if rate and ref else "n/a"
        notes = "; ".join(sorted({r.ticket_note for r in rs if r.ticket_note}))
        lines.append(f"| {n} | {_fmt(rate)} | {ratio} | {rounds} | {cpu} | {_fmt(cores, '.2f')} | "
                     f"{_fmt(busy and 100 * busy)}% | {_fmt(waiters, '.2f')} | {dup} | {lost} | "
                     f"{'ok' if tickets_ok else 'WRONG'}: {notes} |")
    for kill in kills:
        ok &= kill.error is None and kill.lost == 0 and kill.duplicates == 0 and kill.tickets_ok
        session = (f"session_expiry_s {kill.session_expiry_s}" if kill.session_expiry_s
                   else "persistent session (MQTT 3.1.1)")
        lines += ["", f"kill, {session}: 2 collectors, c1 SIGKILLed at {kill.killed_at} of {kill.results} stored; "
                      f"stored={kill.stored} lost={kill.lost} duplicates={kill.duplicates} re-sent={kill.resent} "
                      f"wall={_fmt(kill.wall_s, '.1f')} s; tickets {'ok' if kill.tickets_ok else 'WRONG'}: "
                      f"{kill.ticket_note}"]
    errors = [f"- {r.collectors} collector(s): {r.error}" for r in [*runs, *kills] if r.error]
    lines += ["", "errors:" if errors else "errors: none", *errors]
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale_pg", description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=5000, help="virtual agents (distinct lines)")
    p.add_argument("--results", type=int, default=10000, help="results per round (round-robin over the agents)")
    p.add_argument("--collectors", default="1,2,3", help="collector counts to compare (1 is the reference)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per collector count, interleaved")
    p.add_argument("--kill-agents", type=int, default=1000, help="virtual agents in the kill scenario")
    p.add_argument("--kill-results", type=int, default=2000, help="results in the kill scenario")
    p.add_argument("--session-expiry", type=int, default=5,
                   help="the kill scenario's second run: collectors with mqtt.session_expiry_s this")
    p.add_argument("--kill-at", type=float, default=0.3, help="fraction stored when a collector is killed")
    p.add_argument("--no-kill", action="store_true", help="skip the kill scenario")
    p.add_argument("--kill-rate", type=float, default=400.0,
                   help="results/s published in the kill scenario (paced, so the kill falls mid-run)")
    p.add_argument("--resend-after", type=float, default=2.0, help="agents' re-send timeout in the kill scenario")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a round may take")
    args = p.parse_args(argv)
    counts = sorted({int(x) for x in args.collectors.split(",")})
    if 1 not in counts:
        p.error("--collectors must include 1 (the reference the ratios are against)")
    runs: list[Run] = []
    for i in range(args.rounds):
        for n in counts:
            r = run_round(n, args.agents, args.results, timeout_s=args.timeout)
            runs.append(r)
            print(f"[round {i + 1}/{args.rounds}] {n} collector(s): rate={_fmt(r.rate)}/s "
                  f"wall={_fmt(r.wall_s, '.1f')} s "
                  f"cpu={ {k: round(v, 1) for k, v in r.cpu.items()} } dup={r.duplicates} lost={r.lost} "
                  f"lock_waiters={_fmt(r.lock_waiters, '.2f')} "
                  f"{r.ticket_note}{' ERROR ' + r.error if r.error else ''}", flush=True)
    kills = [] if args.no_kill else [
        run_round(2, args.kill_agents, args.kill_results, kill_at=args.kill_at, resend_after_s=args.resend_after,
                  rate=args.kill_rate, session_expiry_s=expiry, timeout_s=args.timeout)
        for expiry in (None, args.session_expiry)]
    text, ok = report(runs, kills, args)
    print()
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
