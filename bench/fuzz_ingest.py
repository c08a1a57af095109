"""Fuzz the collector's ingest with N generated payloads (default 100,000) and count the outcome.

    .venv/bin/python bench/fuzz_ingest.py [N]

Runs the real batch path (validation, one SQLite transaction per batch) and compares the
collector's answer for every payload with the reference (does the wire model accept it?).
Prints: payloads, crashes, stored vs expected, quarantined vs expected, quarantined without a
reason. Pass: crashes == 0, both ratios 1.000, no empty reason.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.ingest.worker import Inbound  # noqa: E402
from linecheck.wire import results_topic  # noqa: E402
from tests import fuzz_payloads  # noqa: E402
from tests.test_hardened_ingest import make_ingestor  # noqa: E402


def main(n: int) -> int:
    import logging

    logging.disable(logging.WARNING)  # one warning per quarantined payload would drown the figures
    rng = random.Random(int(time.time()))
    with tempfile.TemporaryDirectory() as tmp:
        ingestor, _ = make_ingestor(Path(tmp))
        expected_valid = crashes = 0
        batch: list[Inbound] = []
        started = time.perf_counter()
        for i in range(n):
            agent = f"fuzz-{i % 50}"
            data = fuzz_payloads.payload(rng, agent)
            expected_valid += fuzz_payloads.is_valid_for(agent, data)
            batch.append(Inbound(results_topic(agent), data, i, 1))
            if len(batch) == 500 or i == n - 1:
                try:
                    ingestor.process(batch)
                except Exception as exc:  # noqa: BLE001 - counting crashes is the point
                    crashes += 1
                    print(f"crash: {type(exc).__name__}: {exc}", file=sys.stderr)
                batch = []
        elapsed = time.perf_counter() - started
        with sqlite3.connect(Path(tmp) / "fuzz.db") as conn:
            stored = conn.execute("SELECT count(*) FROM results").fetchone()[0]
            quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
            no_reason = conn.execute("SELECT count(*) FROM quarantine WHERE coalesce(reason,'')=''").fetchone()[0]
    invalid = n - expected_valid
    print(f"payloads={n} crashes={crashes} elapsed_s={elapsed:.1f} rate_per_s={n / elapsed:.0f}")
    print(f"stored={stored} expected_valid={expected_valid} ratio={stored / max(expected_valid, 1):.3f}")
    print(f"quarantined={quarantined} expected_invalid={invalid} ratio={quarantined / max(invalid, 1):.3f}")
    print(f"quarantined_without_reason={no_reason}")
    ok = crashes == 0 and stored == expected_valid and quarantined == invalid and no_reason == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
