"""Result layout before migration 13 vs now, the real code of each: ingest CPU per result and the promise ledger.

    .venv/bin/python bench/layout_ab.py [--lines 2000] [--per-line 10] [--rounds 2] [--ref e7d7032]
                                        [--promises 2000x30]

The reference is the collector as it was before migration 13 (git commit `--ref`, the last one with
the checks/metrics/findings tables), unpacked from this repository's history with `git archive` into
a cache directory outside the clone. Both trees run the same driver: `bench/rules_ingest.py`'s fleet
(LINES lines, PER_LINE results each with a link, a ping and a throughput check, faults that open
tickets and re-tests) stored through that tree's own `Store.ingest` with the rule engine as the
ingest hook, in batches of 500, into a fresh PostgreSQL database. Runs alternate old/new `--rounds`
times, so load from elsewhere falls on both.

Per run it measures the collector's own CPU (the driver process) and the database server's (every
PostgreSQL process plus what the postmaster collected from exited backends) around the ingest, and
prints CPU milliseconds per result for each, the total, and new/old. The figure issue 19 asks for:
"ingest CPU per result not worse" on the new layout.

`--promises LINESxTESTS` also runs `bench/bench_promises.py LINES TESTS --pg` in each tree (the speed
promise ledger over the whole fleet, one transaction, evidence read back from the store) and prints
its ledger time old vs new.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LINECHECK_BENCH_CACHE", "/var/tmp/linecheck-bench"))

# Runs inside the tree under test (cwd = that tree): its own bench/rules_ingest.py, Store and rules.
DRIVER = r"""
import json, logging, random, sys, time
sys.path.insert(0, ".")
import psutil
from sqlalchemy import text
from bench import rules_ingest as ri

def pg_cpu():
    # every postgres process, plus what the postmaster reaped from backends that have exited
    total = 0.0
    for p in psutil.process_iter(["name"]):
        if p.info["name"] != "postgres":
            continue
        try:
            c = p.cpu_times()
            total += c.user + c.system
            if p.parent() is None or p.parent().name() != "postgres":
                total += c.children_user + c.children_system
        except psutil.Error:
            pass
    return total

logging.basicConfig(level=logging.ERROR)
lines, per_line = int(sys.argv[1]), int(sys.argv[2])
results = ri.fleet(lines, per_line, random.Random(7))
with ri.database(True) as url:
    from sqlalchemy import create_engine
    from collector.store.database import Store
    Store(url).close()  # migrate first: schema creation is not ingest
    me = psutil.Process()
    c0, s0, w0 = me.cpu_times(), pg_cpu(), time.perf_counter()
    elapsed, made = ri.run(url, lines, results, with_rules=True)
    # run() closed its engine; wait for its backends to exit so the postmaster has collected their CPU
    name = url.rsplit("/", 1)[1]
    admin = create_engine(ri.PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for _ in range(200):
            if not conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :n"), {"n": name}).scalar():
                break
            time.sleep(0.05)
    admin.dispose()
    c1, s1, w1 = me.cpu_times(), pg_cpu(), time.perf_counter()
print(json.dumps({"results": len(results), "ingest_s": elapsed,
                  "collector_cpu_s": (c1.user + c1.system) - (c0.user + c0.system), "server_cpu_s": s1 - s0,
                  "tickets": sum(v for k, v in made.items() if not k.startswith("retest:")),
                  "retests": sum(v for k, v in made.items() if k.startswith("retest:"))}))
"""


def reference_tree(ref: str) -> Path:
    """The collector at `ref`, unpacked once into the cache (outside the clone)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], check=True, capture_output=True,
                         text=True).stdout.strip()
    tree = CACHE / f"tree-{sha[:12]}"
    if not (tree / "collector").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "collector", "linecheck", "bench", "tests"],
                                 check=True, capture_output=True).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
    return tree


def measure(tree: Path, lines: int, per_line: int) -> dict:
    # PYTHONPATH: the tree first, so its collector/linecheck packages shadow the installed ones
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", DRIVER, str(lines), str(per_line)], cwd=tree, env=env,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def promises(tree: Path, size: str) -> float:
    """Seconds of one whole-fleet ledger run, by that tree's bench/bench_promises.py."""
    lines, per_line = size.split("x")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "bench/bench_promises.py", lines, per_line, "--pg"], cwd=tree, env=env,
                         check=True, capture_output=True, text=True).stdout
    print("  " + out.strip().replace("\n", "\n  "), file=sys.stderr)
    line = next(x for x in out.splitlines() if x.startswith("ledger, whole fleet:"))
    return float(line.split(":")[1].split(" s")[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--per-line", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ref", default="e7d7032", help="commit of the reference (last before migration 13)")
    ap.add_argument("--promises", metavar="LINESxTESTS", help="also the promise ledger, e.g. 2000x30")
    a = ap.parse_args()
    trees = {"old (v12)": reference_tree(a.ref), "new (now)": ROOT}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    load0 = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for r in range(a.rounds):
        for name, tree in (trees.items() if r % 2 == 0 else reversed(trees.items())):
            runs[name].append(measure(tree, a.lines, a.per_line))
            print(f"  round {r + 1} {name}: {json.dumps(runs[name][-1])}", file=sys.stderr)
    print(f"# bench/layout_ab.py  {started}  cores={os.cpu_count()}  load={load0:.2f}->"
          f"{os.getloadavg()[0]:.2f}  lines={a.lines} x {a.per_line} results, rules on, PostgreSQL, rounds={a.rounds}")
    print(f"{'layout':<10} {'results/s':>10} {'collector ms/result':>20} {'server ms/result':>17} "
          f"{'total ms/result':>16} {'tickets':>8} {'retests':>8}")
    totals = {}
    for name, rs in runs.items():
        n = rs[0]["results"]
        col = statistics.median(x["collector_cpu_s"] for x in rs) * 1000 / n
        srv = statistics.median(x["server_cpu_s"] for x in rs) * 1000 / n
        rate = statistics.median(n / x["ingest_s"] for x in rs)
        totals[name] = col + srv
        print(f"{name:<10} {rate:>10.0f} {col:>20.3f} {srv:>17.3f} {col + srv:>16.3f} {rs[0]['tickets']:>8} "
              f"{rs[0]['retests']:>8}")
    old, new = totals.values()
    print(f"new/old total CPU per result: {new / old:.2f}  (≤ 1.00 = not worse)")
    if a.promises:
        ledger: dict[str, list[float]] = {k: [] for k in trees}
        for r in range(a.rounds):
            for name, tree in (trees.items() if r % 2 == 0 else reversed(trees.items())):
                ledger[name].append(promises(tree, a.promises))
        old_s, new_s = (statistics.median(v) for v in ledger.values())
        print(f"promise ledger, whole fleet ({a.promises} results, PostgreSQL): old {old_s:.2f} s, new {new_s:.2f} s, "
              f"new/old {new_s / old_s:.2f}")


if __name__ == "__main__":
    main()
