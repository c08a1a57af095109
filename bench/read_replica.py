"""What reads off the primary cost a request: the API with `database_read:` against the same API without.

    .venv/bin/python bench/read_replica.py [--samples 300]

Starts its own PostgreSQL primary and streaming replica (tests/pg_replica.py: initdb + pg_basebackup -R
on free ports, nothing on the machine's server), seeds the API tests' two-carrier fleet on the primary,
and serves two apps under uvicorn on free ports: the reference (everything on the primary) and one with
the replica. The same requests go to both, interleaved (load from other processes hits both alike):

- a ticket read by a user who wrote nothing (routed: served by the replica);
- the same read by a user whose last write the replica has replayed (one more query on the replica);
- the same read while the replica's replay is paused behind that write (routed to the primary);
- a write (a ticket note): the routed app reads the primary's WAL position after the commit.

Prints p50 and p95 in ms per case and p95 as a ratio to the reference's same request, and how the routed
app's database connections were served (ReadRouting.served).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from collector.api.app import create_app  # noqa: E402
from collector.api.read_after import HEADER  # noqa: E402
from collector.api.server import HTTPServer  # noqa: E402
from tests.fleet_data import seed  # noqa: E402
from tests.pg_replica import replica_pair  # noqa: E402


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000


def _timed(call: Callable[[], httpx.Response]) -> float:
    start = time.perf_counter()
    r = call()
    elapsed = time.perf_counter() - start
    if r.status_code >= 400:
        raise RuntimeError(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:200]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=300, help="requests per case and app")
    args = ap.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()[0]
    with replica_pair() as pair:
        name = f"linecheck_bench_{uuid.uuid4().hex[:8]}"
        pair.primary.scalar(f'CREATE DATABASE "{name}"')
        fleet = seed(pair.primary.url(name))
        pair.catch_up()
        reference = HTTPServer(create_app(fleet.engine), "127.0.0.1", 0)
        routed_app = create_app(fleet.engine, read_url=pair.replica.url(name))
        routed = HTTPServer(routed_app, "127.0.0.1", 0)
        reference.start()
        routed.start()
        ticket = fleet.tickets["acme-xuhui-1"]
        path = f"/api/v1/tickets/{ticket}"

        def client(server: HTTPServer, user: str) -> httpx.Client:
            return httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30,
                                headers={"Authorization": f"Bearer {fleet.tokens[user]}"})

        ref_reader, ref_writer = client(reference, "a-viewer"), client(reference, "a-admin")
        reader, writer = client(routed, "a-viewer"), client(routed, "a-admin")
        times: dict[str, list[float]] = {}

        def note(c: httpx.Client) -> httpx.Response:
            return c.post(f"{path}/notes", json={"text": "bench"})

        def run(case: str, call: Callable[[], httpx.Response]) -> None:
            times.setdefault(case, []).append(_timed(call))

        for c in (ref_reader, ref_writer, reader, writer):  # warm the pools
            c.get(path)
        token = note(writer).headers[HEADER]
        pair.catch_up()
        served_before = Counter(routed_app.state.engine.served)
        for _ in range(args.samples):
            run("read, reference", lambda: ref_reader.get(path))
            run("read, no own write (replica)", lambda: reader.get(path))
            run("read, own write replayed (replica)", lambda: writer.get(path, headers={HEADER: token}))
        pair.pause_replay()
        paused_token = note(writer).headers[HEADER]
        for _ in range(args.samples):
            run("read, reference (replay paused)", lambda: ref_reader.get(path))
            run("read, own write not replayed (primary)",
                lambda: writer.get(path, headers={HEADER: paused_token}))
        pair.resume_replay()
        for _ in range(max(10, args.samples // 3)):
            run("write (note), reference", lambda: note(ref_writer))
            run("write (note), routed", lambda: note(writer))
        served = Counter(routed_app.state.engine.served) - served_before
        for c in (ref_reader, ref_writer, reader, writer):
            c.close()
        reference.stop()
        routed.stop()
        routed_app.state.engine.dispose()
        fleet.store.close()
    load_after = os.getloadavg()[0]
    print(f"# bench/read_replica.py  {started}  cores={os.cpu_count()}  samples={args.samples}  "
          f"(load average {load_before:.2f}->{load_after:.2f})")
    print("| case | p50 ms | p95 ms | p95 / reference |")
    print("|---|---|---|---|")
    # each case against the reference requests interleaved with it
    refs = {"read": _ms(times["read, reference"])[1], "paused": _ms(times["read, reference (replay paused)"])[1],
            "write": _ms(times["write (note), reference"])[1]}
    for case, samples in times.items():
        p50, p95 = _ms(samples)
        ref = refs["write"] if case.startswith("write") else refs["paused"] if case.endswith(
            ("(primary)", "(replay paused)")) else refs["read"]
        print(f"| {case} | {p50:.1f} | {p95:.1f} | {p95 / ref:.2f}x |")
    print("routed app's connections: " + ", ".join(f"{k} {v}" for k, v in sorted(served.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
