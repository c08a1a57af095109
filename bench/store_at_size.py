"""The rules' and the promise ledger's reads on a PostgreSQL fleet of 100,000 lines and 10,000,000 results.

    .venv/bin/python bench/store_at_size.py [--lines 100000] [--results-per-line 100] [--ref-lines 1000]
                                            [--samples 30]

The same fleets as bench/api_at_size.py (its cached database, built first if missing, and a reference
fleet of `--ref-lines` lines with the same history, generated fresh in the run by the same code). On
each, through the collector's own code and engine:

- **rules, one ingest chunk**: what the rule engine reads before it judges a batch — `_load_state`
  (plans, open tickets, re-tests) and `_load_history` (the newest results per line and check kind, per
  finding code and per line, and their documents) for 200 random reporting lines, the chunk size ingest
  uses; `--samples` chunks, p50/p95;
- **promises, 200 lines**: `ledger.judge` for the speed promises of 200 random promised lines (evidence of
  the policy's window read back from the result documents, verdicts computed), `--samples` times;
- **promises, whole fleet**: one `ledger.judge` over every promise (the nightly run's reads; 20,000
  promises on the big fleet), rolled back (`--no-whole-fleet` skips it: minutes on the big fleet).

The rules are measured cold (a fresh engine parses every document it loads, as after a restart) and warm
(the same 200-line chunks again: a running collector keeps its lines' parsed history and reads only SQL).

Prints each figure for both fleets and the ratio big / reference: a ratio near 1 means the cost follows
the work asked (200 lines) and not the size of the fleet.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select, text  # noqa: E402

from bench import api_at_size  # noqa: E402
from collector.promises import ledger  # noqa: E402
from collector.promises.criterion import PromisePolicy  # noqa: E402
from collector.rules.engine import RuleEngine, RulesConfig  # noqa: E402
from collector.store import schema as t  # noqa: E402
from collector.store.database import make_engine  # noqa: E402


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def measure(url: str, samples: int, rng: random.Random, whole: bool) -> dict[str, list[float]]:
    engine = make_engine(url)
    out: dict[str, list[float]] = {}
    try:
        with engine.connect() as conn:
            reporting = [r[0] for r in conn.execute(select(t.line_state.c.line_id))]
            promised = sorted({r[0] for r in conn.execute(select(t.promises.c.line_id))})
            now = conn.execute(text("SELECT max(started_at) FROM results")).scalar_one()

            def rules() -> None:
                rule_engine = RuleEngine(RulesConfig())  # a fresh engine: nothing parsed yet, as after a restart
                chunk = rng.sample(reporting, 200)
                b = rule_engine._load_state(conn, chunk)
                rule_engine._load_history(conn, b, chunk)

            warm = RuleEngine(RulesConfig())
            warm_chunks = [rng.sample(reporting, 200) for _ in range(3)]
            for chunk in warm_chunks:  # parsed once: a running collector's cache holds its lines' history
                warm._load_history(conn, warm._load_state(conn, chunk), chunk)

            def rules_warm() -> None:
                chunk = rng.choice(warm_chunks)
                warm._load_history(conn, warm._load_state(conn, chunk), chunk)

            def promises_200() -> None:
                ledger.judge(conn, PromisePolicy(), now, rng.sample(promised, min(200, len(promised))))

            cases: dict[str, tuple[Callable[[], None], int]] = {
                "rules: state + history of 200 lines, cold (after a restart)": (rules, samples),
                "rules: the same, history already parsed (running collector)": (rules_warm, samples),
                "promises: judge 200 promised lines": (promises_200, samples),
            }
            if whole:
                cases["promises: judge the whole fleet"] = (lambda: ledger.judge(conn, PromisePolicy(), now), 1)
            for label, (run, n) in cases.items():
                run()  # warm-up: caches as a running collector has them
                times = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    run()
                    times.append((time.perf_counter() - t0) * 1000)
                out[label] = times
            out["promises in the fleet"] = [float(len(promised))]
            conn.rollback()
    finally:
        engine.dispose()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--results-per-line", type=int, default=100)
    ap.add_argument("--ref-lines", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--no-whole-fleet", action="store_true", help="skip the whole-fleet ledger run (minutes)")
    args = ap.parse_args()
    print(f"# bench/store_at_size.py  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    big_name, how = api_at_size.cached(args.lines, args.results_per_line, rebuild=False)
    ref_name = f"{api_at_size.CACHE_PREFIX}ref_{uuid.uuid4().hex[:8]}"
    try:
        took = api_at_size.build(ref_name, args.ref_lines, args.results_per_line, say=lambda _: None)
        print(f"fleet: {args.lines} lines x {args.results_per_line} results in {big_name} ({how}); reference: "
              f"{args.ref_lines} lines x {args.results_per_line} loaded in {took:.0f} s")
        rng = random.Random(11)
        big = measure(api_at_size._url(big_name), args.samples, rng, not args.no_whole_fleet)
        ref = measure(api_at_size._url(ref_name), args.samples, rng, not args.no_whole_fleet)
    finally:
        api_at_size._drop(ref_name)
    print(f"{'(ms)':58} {'p50':>9} {'p95':>9} {'p50 ref':>9} {'p95 ref':>9} {'× ref p95':>9}")
    for label, times in big.items():
        if label == "promises in the fleet":
            continue
        r = ref[label]
        print(f"{label:58} {statistics.median(times):>9.1f} {_pct(times, 95):>9.1f} {statistics.median(r):>9.1f} "
              f"{_pct(r, 95):>9.1f} {_pct(times, 95) / _pct(r, 95):>9.2f}")
    print(f"promises: {big['promises in the fleet'][0]:.0f} in the fleet, {ref['promises in the fleet'][0]:.0f} "
          f"in the reference; load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
