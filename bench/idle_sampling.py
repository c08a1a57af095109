"""Cost of the idle monitor's per-minute sample on this machine, against reading /proc/net/dev once.

    .venv/bin/python bench/idle_sampling.py [N]

One sample = read the WAN/LAN counters through psutil + one step of the idle tracker (no state
write: writes happen on events and at most every 5 minutes). The reference is the least any
counter-based monitor must do: read /proc/net/dev once. Prints both per-sample times and the
ratio, plus the CPU share of one sample a minute.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config import IdleConfig  # noqa: E402
from agent.idle import IdleTracker  # noqa: E402
from agent.netinfo import default_route  # noqa: E402
from agent.traffic import read_counters  # noqa: E402


def per_call(fn: object, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / n


def main(n: int) -> int:
    route = default_route()
    wan = route.interface if route else "lo"
    tracker = IdleTracker(IdleConfig(), None)

    def reference() -> None:
        with open("/proc/net/dev") as fh:
            fh.read()

    def sample() -> None:
        tracker.observe(read_counters(wan, ["lo"]))

    per_call(sample, 200)  # warm up
    ref = per_call(reference, n)
    ours = per_call(sample, n)
    print(f"samples: {n}, WAN interface: {wan}")
    print(f"reference (read /proc/net/dev): {ref * 1e6:.1f} µs")
    print(f"idle sample (psutil counters + tracker step): {ours * 1e6:.1f} µs")
    print(f"ratio sample/reference: {ours / ref:.2f}")
    print(f"CPU share at one sample a minute: {ours / 60 * 100:.6f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
