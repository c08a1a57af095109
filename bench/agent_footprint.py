"""Agent footprint: start-up time, full-check wall time and peak RSS, idle RSS and CPU of
`linecheck-agent run` on an emulated office line (needs root: network namespaces).

    sudo .venv/bin/python bench/agent_footprint.py                   # the documented run: 600 s idle
    sudo .venv/bin/python bench/agent_footprint.py --idle-s 60       # a quicker look

The rig (bench/footprint_rig.py) is the line lab with a tbf-shaped 500/300 Mbit/s line, the real
linecheck-testserver, DNS/HTTP(S) servers and routers beyond the carrier, and a private Mosquitto
plus linecheck-collector over a management link. Phases, all against the same broker:

1. reference: a bare interpreter that imports paho, connects and publishes a retained status
   (the least any MQTT agent in Python must do): its start-up time and RSS/USS/PSS;
2. start-up: `linecheck-agent run` from process start to its retained "online" status at the broker;
3. full check: a check_now command (every configured check, throughput included) from command to
   result at the broker; the process tree's RSS is sampled every 50 ms and the kernel's high-water
   marks (VmHWM, reset just before) bound it from above;
4. idle: after the result's receipt, `--idle-s` seconds (default 600) of the agent doing what it does
   between checks; RSS/USS/PSS sampled every `--sample-s`, CPU = the tree's CPU time / wall time,
   wake-ups = voluntary context switches of all its threads per second.

Each figure is printed with its ratio against the reference and against its target (issue 20, a small
office box: idle RSS <= 30 MB, full-check peak <= 64 MB PSS for the agent's whole process tree, idle CPU
<= 0.1 % of a core; and full check <= 30 s). A figure that could not be measured is printed
with the reason, never as 0; the exit status is then 1. `--json FILE` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
from footprint_rig import REF_TOPIC, Rig  # noqa: E402

MB = 1024 * 1024
TARGET_IDLE_RSS_MB = 30.0
TARGET_IDLE_CPU_PCT = 0.1
TARGET_CHECK_PSS_MB = 64.0  # the whole tree during a full check: what the unit's memory cgroup is charged
TARGET_CHECK_S = 30.0


# --- reading a process tree ----------------------------------------------------------------------
def tree(pid: int) -> list[psutil.Process]:
    p = psutil.Process(pid)
    return [p, *p.children(recursive=True)]


def memory_mb(pid: int, full: bool = True) -> dict[str, float]:
    """RSS (and USS, PSS: smaps) summed over the process and its children, in MiB."""
    out = {"rss": 0.0, "uss": 0.0, "pss": 0.0} if full else {"rss": 0.0}
    for proc in tree(pid):
        try:
            m = proc.memory_full_info() if full else proc.memory_info()
        except psutil.NoSuchProcess:  # a check's child that just ended
            continue
        for key in out:
            out[key] += getattr(m, key) / MB
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds of the process, its reaped children and its live ones."""
    total = 0.0
    for i, proc in enumerate(tree(pid)):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + (t.children_user + t.children_system if i == 0 else 0.0)
    return total


def voluntary_switches(pid: int) -> int:
    """Voluntary context switches of every thread (each is a wake-up after sleeping)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_hwm(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5 = reset the peak RSS (Linux >= 4.0)


class PeakSampler(threading.Thread):
    """Samples the tree's summed RSS and PSS and every member's VmHWM until stopped.

    Summed RSS counts the shared library pages of parent and child twice; summed PSS splits them,
    so it is what a memory cgroup (the systemd unit's MemoryMax) is charged, near enough."""

    def __init__(self, pid: int, interval_s: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval_s = pid, interval_s
        self.peak_rss_mb = 0.0
        self.peak_pss_mb = 0.0
        self.hwm_mb: dict[int, float] = {}
        self.samples = 0
        self.most_processes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                procs = tree(self.pid)
            except psutil.NoSuchProcess:
                return
            self.most_processes = max(self.most_processes, len(procs))
            rss = pss = 0.0
            for proc in procs:
                try:
                    m = proc.memory_full_info()  # smaps_rollup: cheap enough at 20 Hz
                except psutil.NoSuchProcess:
                    continue
                rss, pss = rss + m.rss / MB, pss + m.pss / MB
                hwm = vm_hwm_mb(proc.pid)
                if hwm is not None:
                    self.hwm_mb[proc.pid] = max(self.hwm_mb.get(proc.pid, 0.0), hwm)
            self.peak_rss_mb = max(self.peak_rss_mb, rss)
            self.peak_pss_mb = max(self.peak_pss_mb, pss)
            self.samples += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


# --- the figures -----------------------------------------------------------------------------------
@dataclass
class Figures:
    date_utc: str
    cores: int
    loadavg_start: list[float]
    loadavg_end: list[float] = field(default_factory=list)
    line: str = ""
    idle_s: float = 0.0
    reference: dict[str, float] = field(default_factory=dict)
    startup_s: float | None = None
    fresh: dict[str, float] = field(default_factory=dict)  # memory once started, before any check
    check: dict[str, Any] = field(default_factory=dict)
    idle: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def settled_memory(pid: int, n: int, interval_s: float) -> dict[str, float]:
    """The largest of `n` samples `interval_s` apart (a process just started still grows a little)."""
    samples = []
    for _ in range(n):
        time.sleep(interval_s)
        samples.append(memory_mb(pid))
    return {k: round(max(s[k] for s in samples), 1) for k in samples[0]}


def measure_reference(rig: Rig, fig: Figures) -> None:
    assert rig.observer is not None
    started = time.monotonic()
    ref = rig.start_reference()
    try:
        at, _ = rig.observer.next(REF_TOPIC, 60)
        fig.reference["startup_s"] = round(at - started, 3)
        fig.reference.update(settled_memory(ref.pid, 5, 0.2))
    finally:
        assert ref.stdin is not None
        ref.stdin.close()
        ref.wait(10)


def measure_agent(rig: Rig, fig: Figures, idle_s: float, sample_s: float) -> None:
    assert rig.observer is not None
    started = time.monotonic()
    agent = rig.start_agent()
    pid = agent.pid
    try:
        at, _ = rig.observer.next("/status", 120, b'"online"')
        fig.startup_s = round(at - started, 3)
    except TimeoutError as exc:
        fig.failures["startup"] = str(exc)
        return
    fig.fresh = settled_memory(pid, 5, 1.0)

    reset_hwm(pid)
    sampler = PeakSampler(pid)
    sampler.start()
    sent = rig.observer.check_now()
    try:
        at, payload = rig.observer.next("/results", 300)
    except TimeoutError as exc:
        sampler.stop()
        fig.failures["full_check"] = str(exc)
        return
    envelope = json.loads(payload)
    try:
        rig.observer.next("/receipts", 60, envelope["result_id"].encode())
    except TimeoutError as exc:
        fig.failures["receipt"] = str(exc)
    sampler.stop()
    own = datetime.fromisoformat(envelope["ended_at"]) - datetime.fromisoformat(envelope["started_at"])
    per_kind: dict[str, float] = {}
    for c in envelope["checks"]:
        per_kind[c["kind"]] = round(per_kind.get(c["kind"], 0.0) + c["duration_s"], 2)
    main_hwm = vm_hwm_mb(pid)
    fig.check = {
        "wall_s": round(at - sent, 2), "agent_s": round(own.total_seconds(), 2), "verdict": envelope["verdict"],
        "statuses": {c["kind"]: c["status"] for c in envelope["checks"]}, "per_kind_s": per_kind,
        "peak_tree_rss_mb": round(sampler.peak_rss_mb, 1), "peak_tree_pss_mb": round(sampler.peak_pss_mb, 1),
        "hwm_child_mb": round(max((v for k, v in sampler.hwm_mb.items() if k != pid), default=0.0), 1) or None,
        "samples": sampler.samples,
        "most_processes": sampler.most_processes, "hwm_main_mb": None if main_hwm is None else round(main_hwm, 1),
        "hwm_sum_mb": round(sum(sampler.hwm_mb.values()), 1)}

    # Idle: the receipt is in, nothing is scheduled within the window (first_delay_s in the rig).
    samples: list[dict[str, float]] = []
    t0, c0, w0 = time.monotonic(), cpu_s(pid), voluntary_switches(pid)
    end = t0 + idle_s
    while time.monotonic() < end and agent.poll() is None:
        samples.append(memory_mb(pid))
        time.sleep(max(0.0, min(sample_s, end - time.monotonic())))
    if agent.poll() is not None:
        fig.failures["idle"] = f"the agent exited with {agent.returncode} during the idle window"
        return
    t1, c1, w1 = time.monotonic(), cpu_s(pid), voluntary_switches(pid)
    samples.append(memory_mb(pid))
    wall = t1 - t0
    fig.idle = {
        "wall_s": round(wall, 1), "cpu_s": round(c1 - c0, 3), "cpu_pct": round((c1 - c0) / wall * 100, 4),
        "wakeups_per_s": round((w1 - w0) / wall, 2), "samples": len(samples),
        **{f"{k}_mean_mb": round(statistics.fmean(s[k] for s in samples), 1) for k in samples[0]},
        **{f"{k}_max_mb": round(max(s[k] for s in samples), 1) for k in samples[0]}}


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def report(fig: Figures) -> list[str]:
    ref, idle, chk = fig.reference, fig.idle, fig.check
    out = [f"date {fig.date_utc}; {fig.cores} cores; load average {fig.loadavg_start} -> {fig.loadavg_end}",
           f"line: {fig.line}; idle window {fig.idle_s:g} s",
           f"reference (bare python + paho, connected): start-up {ref.get('startup_s')} s, RSS {ref.get('rss')} MB, "
           f"USS {ref.get('uss')} MB, PSS {ref.get('pss')} MB"]
    if fig.startup_s is not None:
        out.append(f"start-up to 'online' at the broker: {fig.startup_s} s = "
                   f"{ratio(fig.startup_s, ref.get('startup_s'))} the reference")
    if fig.fresh:
        out.append(f"started, before any check: RSS {fig.fresh['rss']} MB ({ratio(fig.fresh['rss'], ref.get('rss'))} "
                   f"reference), USS {fig.fresh['uss']} MB, PSS {fig.fresh['pss']} MB")
    if chk:
        out += [f"full check: {chk['wall_s']} s command→result ({chk['agent_s']} s by the agent's clock) = "
                f"{ratio(chk['wall_s'], TARGET_CHECK_S)} the {TARGET_CHECK_S:g} s target; verdict {chk['verdict']}",
                f"  per check (s): {chk['per_kind_s']}",
                f"  statuses: {chk['statuses']}",
                f"  peak tree RSS (50 ms samples, up to {chk['most_processes']} processes): "
                f"{chk['peak_tree_rss_mb']} MB = {ratio(chk['peak_tree_rss_mb'], ref.get('rss'))} reference; "
                f"peak tree PSS {chk['peak_tree_pss_mb']} MB = {ratio(chk['peak_tree_pss_mb'], TARGET_CHECK_PSS_MB)} "
                f"the {TARGET_CHECK_PSS_MB:g} MB target (what a memory cgroup is charged); "
                f"high-water marks: daemon {chk['hwm_main_mb']} MB, "
                f"check process {chk['hwm_child_mb']} MB"]
    if idle:
        out += [f"idle {idle['wall_s']} s: RSS mean {idle['rss_mean_mb']} / max {idle['rss_max_mb']} MB = "
                f"{ratio(idle['rss_max_mb'], ref.get('rss'))} reference, "
                f"{ratio(idle['rss_max_mb'], TARGET_IDLE_RSS_MB)} the {TARGET_IDLE_RSS_MB:g} MB target; "
                f"USS max {idle['uss_max_mb']} MB ({ratio(idle['uss_max_mb'], ref.get('uss'))} reference), "
                f"PSS max {idle['pss_max_mb']} MB",
                f"idle CPU: {idle['cpu_s']} s over {idle['wall_s']} s = {idle['cpu_pct']} % of a core = "
                f"{ratio(idle['cpu_pct'], TARGET_IDLE_CPU_PCT)} the {TARGET_IDLE_CPU_PCT:g} % target; "
                f"{idle['wakeups_per_s']} wake-ups/s"]
    for what, reason in fig.failures.items():
        out.append(f"NOT MEASURED {what}: {reason}")
    met = []
    if idle:
        met += [("idle RSS", idle["rss_max_mb"] <= TARGET_IDLE_RSS_MB),
                ("idle CPU", idle["cpu_pct"] <= TARGET_IDLE_CPU_PCT)]
    if chk:
        met += [("full check", chk["wall_s"] <= TARGET_CHECK_S),
                ("check peak PSS", chk["peak_tree_pss_mb"] <= TARGET_CHECK_PSS_MB)]
    out.append("targets: " + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in met))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--idle-s", type=float, default=600.0, help="length of the idle window (default 600)")
    p.add_argument("--sample-s", type=float, default=10.0, help="memory sample interval while idle (default 10)")
    p.add_argument("--down-mbit", type=float, default=500.0, help="line rate down (tbf; default 500)")
    p.add_argument("--up-mbit", type=float, default=300.0, help="line rate up (tbf; default 300)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("agent_footprint: needs root (the line lab builds network namespaces)", file=sys.stderr)
        return 2
    fig = Figures(date_utc=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), cores=os.cpu_count() or 0,
                  loadavg_start=[round(x, 2) for x in os.getloadavg()], idle_s=args.idle_s,
                  line=f"tbf {args.down_mbit:g}/{args.up_mbit:g} Mbit/s")
    workdir = Path(tempfile.mkdtemp(prefix="linecheck-footprint-"))
    with Rig(workdir, args.down_mbit, args.up_mbit) as rig:
        measure_reference(rig, fig)
        measure_agent(rig, fig, args.idle_s, args.sample_s)
    fig.loadavg_end = [round(x, 2) for x in os.getloadavg()]
    print("\n".join(report(fig)))
    if args.json:
        args.json.write_text(json.dumps(asdict(fig), indent=2) + "\n")
    if args.keep:
        print(f"work directory: {workdir}")
    else:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if fig.failures else 0


if __name__ == "__main__":
    sys.exit(main())
