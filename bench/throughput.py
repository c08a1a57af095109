"""Throughput benchmark: our engine vs iperf3 -P4 (reference) and speedtest-cli, in the line lab.

    sudo .venv/bin/python bench/throughput.py            # needs root (network namespaces)
    sudo .venv/bin/python bench/throughput.py --quick    # 100M and 500M/300M only

For each emulated line (tbf-shaped 100M, 500M/300M, 1G, 2.5G, and unshaped veth) it runs, on
the same link and one after the other: iperf3 -P4 (5 s, first second omitted), our engine
(`python -m agent.throughput`), and speedtest-cli against our server's Ookla endpoints. Then
500M/300M with 200 Mbit/s of office cross-traffic (iperf3 -b 200M -R in the background): our
capacity estimate against the line's goodput measured by iperf3 on the idle line just before.
Prints per case and direction: Mbit/s of each, ours/iperf3, bytes ours vs speedtest-cli and
their ratio, and the agent-side CPU seconds of each tool. Ends with the targets, met or not:
>= 0.99x iperf3 on every shaped line, >= 10 Gbit/s unshaped, capacity within 3 % under
cross-traffic, <= 40 % of speedtest-cli's bytes at 500M.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.lab import SERVER_ADDR, LineLab  # noqa: E402

CASES = [("100M", 100, 100), ("500M/300M", 500, 300), ("1G", 1000, 1000), ("2.5G", 2500, 2500),
         ("unshaped", None, None)]


@dataclass
class Run:
    mbps: float | None
    bytes: int | None
    cpu_s: float
    note: str = ""


def timed(lab: LineLab, argv: list[str], timeout: float = 180) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run argv in the gateway namespace; returns the result and the child's CPU seconds (user + sys)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = lab.run(lab.gw, argv, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def iperf3(lab: LineLab, direction: str) -> Run:
    argv = ["iperf3", "-c", SERVER_ADDR, "-p", "5201", "-P", "4", "-t", "5", "-O", "1", "-J"]
    out, cpu = timed(lab, argv + (["-R"] if direction == "down" else []))
    end = json.loads(out.stdout)["end"]["sum_received"]
    return Run(end["bits_per_second"] / 1e6, int(end["bytes"]), cpu)


def engine(lab: LineLab, server: str, direction: str, max_bytes: int) -> Run:
    argv = [sys.executable, "-m", "agent.throughput", "--server", server, "--wan-interface", lab.gw_if,
            "--directions", direction, "--max-bytes", str(max_bytes), "--max-s", "15"]
    out, cpu = timed(lab, argv)
    r = json.loads(out.stdout)
    if r["status"] != "ok":
        return Run(None, None, cpu, r["reason"])
    m = r["metrics"]
    run = Run(m[f"{direction}_mbps"], m[f"bytes_{direction}_bytes"], cpu, "; ".join(r["notes"]))
    run.capacity = m.get(f"capacity_{direction}_mbps")  # type: ignore[attr-defined]
    run.cross = m.get(f"cross_traffic_{direction}_mbps")  # type: ignore[attr-defined]
    return run


def fmt(v: float | None, spec: str = "8.1f") -> str:
    return format(v, spec) if v is not None else "     n/a"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="only 100M and 500M/300M")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench/throughput.py needs root (it builds network namespaces)", file=sys.stderr)
        return 2
    cases = CASES[:2] if args.quick else CASES
    print(f"# bench/throughput.py  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  cores={os.cpu_count()}  "
          f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ratios: list[tuple[str, float]] = []
    unshaped: dict[str, float] = {}
    bytes_500 = [0, 0]  # ours, speedtest-cli: both directions of the 500M/300M line
    with LineLab() as lab:
        srv = lab.popen(lab.carrier, [sys.executable, "-m", "testserver.cli", "--listen", f"{SERVER_ADDR}:8080",
                                      "--no-stamp", "--max-test-bytes", "64G", "--max-test-s", "120"],
                        stdout=subprocess.PIPE)
        assert srv.stdout is not None and b"listening" in srv.stdout.readline()
        for port in ("5201", "5301"):
            lab.popen(lab.carrier, ["iperf3", "-s", "-B", SERVER_ADDR, "-p", port], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # let the iperf3 servers bind (a benchmark, not a test: a fixed pause is fine)
        head = (f"{'case':<11}{'dir':<5}{'iperf3':>9}{'ours':>9}{'ratio':>7}{'speedtest':>10}"
                f"{'ours MB':>9}{'st MB':>8}{'bytes':>7}{'cpu ours':>9}{'cpu ipf':>8}{'cpu st':>7}")
        print(head)
        for name, down, up in cases:
            lab.shape(down, up)
            cap = 16 * 1024**3 if down is None or down > 1000 else 2 * 1024**3
            for direction in ("down", "up"):
                ref = iperf3(lab, direction)
                ours = engine(lab, f"{SERVER_ADDR}:8080", direction, cap)
                st = engine(lab, f"speedtest://{SERVER_ADDR}:8080", direction, cap)
                ratio = ours.mbps / ref.mbps if ours.mbps and ref.mbps else None
                bratio = ours.bytes / st.bytes if ours.bytes and st.bytes else None
                print(f"{name:<11}{direction:<5}{fmt(ref.mbps, '9.1f')}{fmt(ours.mbps, '9.1f')}"
                      f"{fmt(ratio, '7.3f')}{fmt(st.mbps, '10.1f')}{fmt((ours.bytes or 0) / 1e6, '9.0f')}"
                      f"{fmt((st.bytes or 0) / 1e6, '8.0f')}{fmt(bratio, '7.2f')}{fmt(ours.cpu_s, '9.2f')}"
                      f"{fmt(ref.cpu_s, '8.2f')}{fmt(st.cpu_s, '7.2f')}", flush=True)
                if ours.note and "stable" not in ours.note:
                    print(f"{'':<16}ours: {ours.note}")
                if down is not None and ratio is not None:
                    ratios.append((f"{name} {direction}", ratio))
                if down is None and ours.mbps:
                    unshaped[direction] = ours.mbps
                if name.startswith("500M"):
                    bytes_500[0] += ours.bytes or 0
                    bytes_500[1] += st.bytes or 0

        # Cross-traffic: 500M/300M, the office downloads 200 Mbit/s while the test runs.
        lab.shape(500, 300)
        truth = iperf3(lab, "down").mbps
        office = lab.popen(lab.gw, ["iperf3", "-c", SERVER_ADDR, "-p", "5301", "-R", "-b", "200M", "-t", "120"],
                           stdout=subprocess.DEVNULL)
        time.sleep(2)  # let the office's flow reach its rate
        ours = engine(lab, f"{SERVER_ADDR}:8080", "down", 2 * 1024**3)
        st = engine(lab, f"speedtest://{SERVER_ADDR}:8080", "down", 2 * 1024**3)
        office.kill()
        cap_ours = getattr(ours, "capacity", None)
        cap_err = (cap_ours - truth) / truth if cap_ours and truth else None
        print(f"\ncross-traffic 500M/300M + iperf3 -b 200M down: idle-line iperf3 -P4 {fmt(truth, '.1f')} Mbit/s")
        print(f"  ours: test {fmt(ours.mbps, '.1f')}, cross-traffic {fmt(getattr(ours, 'cross', None), '.1f')}, "
              f"capacity {fmt(cap_ours, '.1f')} Mbit/s ({fmt(cap_err * 100 if cap_err is not None else None, '+.1f')} %"
              f" vs idle iperf3), {fmt((ours.bytes or 0) / 1e6, '.0f')} MB, cpu {ours.cpu_s:.2f} s")
        print(f"  speedtest-cli: {fmt(st.mbps, '.1f')} Mbit/s (its own share, ramp-up included), "
              f"capacity {fmt(getattr(st, 'capacity', None), '.1f')} Mbit/s, {fmt((st.bytes or 0) / 1e6, '.0f')} MB, "
              f"cpu {st.cpu_s:.2f} s")

    print("\ntargets:")
    worst = min(ratios, key=lambda r: r[1]) if ratios else None
    if worst:
        print(f"  ours/iperf3 >= 0.99 on shaped lines: worst {worst[1]:.3f} ({worst[0]}) -> "
              f"{'met' if worst[1] >= 0.99 else 'NOT met'}")
    if unshaped:
        low = min(unshaped.values())
        print(f"  >= 10 Gbit/s unshaped: down {unshaped.get('down', 0):.0f}, up {unshaped.get('up', 0):.0f} Mbit/s -> "
              f"{'met' if low >= 10000 else 'NOT met'}")
    if cap_err is not None:
        print(f"  capacity within 3 % under cross-traffic: {cap_err * 100:+.1f} % -> "
              f"{'met' if abs(cap_err) <= 0.03 else 'NOT met'}")
    if bytes_500[1]:
        share = bytes_500[0] / bytes_500[1]
        print(f"  <= 40 % of speedtest-cli's bytes at 500M (down + up): {bytes_500[0] / 1e6:.0f} of "
              f"{bytes_500[1] / 1e6:.0f} MB = {share * 100:.0f} % -> {'met' if share <= 0.40 else 'NOT met'}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
