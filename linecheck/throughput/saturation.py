"""Is the server itself the bottleneck? Sampled twice a second; every test running then is marked.

A test a saturated server served measured the server, not the line: its figure must not become a
`throughput_below_plan` or a failed speed promise. The server cannot tell from inside whether a
given test would have gone faster, so the mark is conservative — every test running while the
server was full is marked, and the engine reports it (`server_limited_flag`), and the check and the
collector do not judge that test against the plan (linecheck/speed.py `untrusted_reason`).

Full means, over the last `WINDOW_S`:
  - link: bytes sent (or received) by all workers reached `FULL_SHARE` of `--capacity-mbps`
    (the server's uplink, which the server cannot see but its operator knows), or
  - cpu: the workers' own CPU time reached `FULL_SHARE` of the cores they can use
    (min(workers, cores)): a Python worker at 100 % of its core delays every stream it serves.
The server's own CPU, not the host's: on a dedicated host they are the same, and on a shared one
(this development machine) another program's load must not hide the line's figures.

Leaderless: each worker's monitor thread writes its own CPU seconds to the shared header and,
when the last sample is older than the interval, takes the next one under the shared lock.
"""

from __future__ import annotations

import os
import threading
import time

from linecheck.throughput.sessions import RING, Sessions

INTERVAL_S = 0.5
WINDOW_S = 2.0
FULL_SHARE = 0.9
LINK, CPU = 1, 2
_REASONS = {LINK: "the server's link was at capacity", CPU: "the server's CPU was saturated"}


def reasons(flags: int) -> list[str]:
    return [text for bit, text in _REASONS.items() if flags & bit]


def usable_cores(workers: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(workers, cores))


def sample(sessions: Sessions, now: float, force: bool = False) -> int:
    """Take one sample if one is due, or look now with `force` (a test's report: its last moments count
    too); the caller holds no lock. Returns the saturation flags then (0: not full).

    A forced look is not kept in the ring and is measured over at least INTERVAL_S: anyone may ask
    GET /status?test=..., and asking many times a millisecond apart must neither push the history
    out nor turn one 1 MiB step into a momentary "full link" that marks every running test."""
    h = sessions.header
    with sessions.lock:
        last = h.ring[(h.samples - 1) % RING] if h.samples else None
        due = last is None or now - last.at >= INTERVAL_S * 0.9
        if not due and not force:
            return int(h.saturated)
        cpu_s = sum(h.worker_cpu_s[i] for i in range(max(1, h.workers)))
        sent, received = int(h.sent), int(h.received)
        # The newest sample at least WINDOW_S old, else the oldest at least INTERVAL_S old.
        base = None
        for back in range(min(int(h.samples), RING)):
            s = h.ring[(h.samples - 1 - back) % RING]
            if now - s.at >= INTERVAL_S:
                base = s
                if now - s.at >= WINDOW_S:
                    break
        if due:
            cur = h.ring[h.samples % RING]
            cur.at, cur.sent, cur.received, cur.cpu_s = now, sent, received, cpu_s
            h.samples += 1
        if base is None:
            return int(h.saturated)
        span = now - base.at
        out_bps = (sent - base.sent) * 8 / span
        in_bps = (received - base.received) * 8 / span
        cpu_share = (cpu_s - base.cpu_s) / span / usable_cores(int(h.workers))
        flags = 0
        cap = sessions.limits.capacity_mbps
        if cap and max(out_bps, in_bps) >= FULL_SHARE * cap * 1e6:
            flags |= LINK
        if cpu_share >= FULL_SHARE:
            flags |= CPU
        if due:
            h.out_bps, h.in_bps, h.cpu_share, h.saturated = out_bps, in_bps, cpu_share, flags
        if flags:
            for slot in sessions.slots:  # every admitted test not yet idled out: it may be between requests
                if slot.used:
                    if not slot.limited:
                        h.limited_tests += 1
                    slot.limited |= flags
        return flags


class Monitor:
    """One worker's sampling thread: records this process's CPU seconds and takes due samples."""

    def __init__(self, sessions: Sessions, worker: int = 0, clock=time.monotonic) -> None:
        self.sessions = sessions
        self.worker = worker
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"saturation-{worker}", daemon=True)

    def start(self) -> Monitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            self.sessions.header.worker_cpu_s[self.worker] = time.process_time()
            sample(self.sessions, self._clock())
