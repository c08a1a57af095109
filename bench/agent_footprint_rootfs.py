"""The installed package's footprint in clean Debian 12 root filesystems (amd64 native, arm64 under qemu-user):
memory of `linecheck-agent run` once started and idle, and the high-water mark of a `check` (link + ping on
loopback), each against the same figures of a bare `python3 -c 'import paho…'` reference in the same root fs.

    sudo .venv/bin/python bench/agent_footprint_rootfs.py                 # both arches, builds the .debs
    sudo .venv/bin/python bench/agent_footprint_rootfs.py --arch arm64 --idle-s 30

Under qemu-user the process's RSS is the emulator's: the guest's memory plus qemu's own code and its
translation cache. The arm64 figures are therefore an upper bound for a real arm64 gateway, and the
reference run under the same emulator shows the emulator's share. The agent connects to the broker at
--broker (default the machine's Mosquitto on 127.0.0.1:1883; a chroot shares the host's network).
A figure that could not be measured is printed with the reason, never as 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from tests import rootfs  # noqa: E402

MB = 1024 * 1024
CONFIG = """agent_id: footprint-{arch}
line_id: footprint-line
site_id: footprint-site
data_dir: /var/lib/linecheck
mqtt: {{host: {host}, port: {port}}}
schedule: {{first_delay_s: 86400}}
idle: {{sample_s: 60}}
checks:
  link: {{window_s: 0.1}}
  ping: {{targets: [127.0.0.1], count: 3, interval_s: 0.05}}
"""
REFERENCE = ("import sys, time\nsys.path.insert(0, '/opt/linecheck-agent/lib')  # the package's paho\n"
             "import paho.mqtt.client as m\nfrom paho.mqtt.enums import CallbackAPIVersion\n"
             "c = m.Client(CallbackAPIVersion.VERSION2)\nc.connect({host!r}, {port})\nc.loop_start()\n"
             "sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(3600)\n")


def memory(pid: int) -> dict[str, float]:
    m = psutil.Process(pid).memory_full_info()
    return {"rss": round(m.rss / MB, 1), "uss": round(m.uss / MB, 1), "pss": round(m.pss / MB, 1)}


def settled(pid: int, seconds: float) -> dict[str, float]:
    """The largest of one sample a second over `seconds` (a process just started still grows a little)."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(memory(pid))
        time.sleep(1.0)
    return {k: max(s[k] for s in samples) for k in samples[0]}


def peak_while(proc: subprocess.Popen[str]) -> float:
    """The process's RSS high-water mark (VmHWM), read until it exits (chroot execs: same pid)."""
    peak = 0.0
    while proc.poll() is None:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            break
        time.sleep(0.02)
    return round(peak, 1)


def measure(arch: str, deb: Path, host: str, port: int, idle_s: float, scratch: Path) -> dict[str, object]:
    out: dict[str, object] = {"arch": arch}
    with rootfs.chroot(arch, scratch) as fs:
        shutil.copy(deb, fs.root / "tmp" / deb.name)
        done = fs.run(["dpkg", "-i", f"/tmp/{deb.name}"])
        if done.returncode != 0:
            return {**out, "failed": f"dpkg -i: {done.stderr[-500:]}"}
        (fs.root / "etc/linecheck/agent.yaml").write_text(CONFIG.format(arch=arch, host=host, port=port))
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        ref = subprocess.Popen(["chroot", str(fs.root), "python3", "-c", REFERENCE.format(host=host, port=port)],
                               stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert ref.stdout is not None
            if ref.stdout.readline().strip() != "up":
                return {**out, "failed": "the reference did not connect"}
            out["reference"] = settled(ref.pid, 5)
        finally:
            ref.kill()
            ref.wait()
        log = scratch / f"agent-{arch}.log"
        started = time.monotonic()
        agent = fs.popen(["linecheck-agent", "run", "--config", "/etc/linecheck/agent.yaml"], log)
        try:
            time.sleep(max(5.0, idle_s / 4))  # start-up; the first check is a day away (first_delay_s)
            if agent.poll() is not None:
                return {**out, "failed": f"the agent exited: {log.read_text()[-500:]}"}
            out["started_s"] = round(time.monotonic() - started, 1)
            out["idle"] = settled(agent.pid, idle_s)
            cpu = psutil.Process(agent.pid).cpu_times()
            out["cpu_s_since_start"] = round(cpu.user + cpu.system, 2)
            check = subprocess.Popen(["chroot", str(fs.root), "linecheck-agent", "check", "--no-spool", "--json"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            holder: dict[str, float] = {}
            sampler = threading.Thread(target=lambda: holder.update(hwm=peak_while(check)))
            sampler.start()
            check.wait(600)
            sampler.join()
            out["check_hwm_rss"] = holder.get("hwm")
            out["check_exit"] = check.returncode
        finally:
            agent.terminate()
            agent.wait(60)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", action="append", choices=["amd64", "arm64"], help="default: both")
    p.add_argument("--idle-s", type=float, default=30.0, help="idle window sampled once a second (default 30)")
    p.add_argument("--broker", default="127.0.0.1:1883", help="host:port of an MQTT broker (default 127.0.0.1:1883)")
    p.add_argument("--deb-dir", type=Path, help="take linecheck-agent_*_<arch>.deb from here instead of building")
    p.add_argument("--json", type=Path, metavar="FILE")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("agent_footprint_rootfs: needs root (chroot, mounts)", file=sys.stderr)
        return 2
    host, _, port = args.broker.rpartition(":")
    scratch = Path(tempfile.mkdtemp(prefix="linecheck-footprint-rootfs-"))
    figures = []
    try:
        for arch in args.arch or ["amd64", "arm64"]:
            try:
                if args.deb_dir:
                    deb = next(args.deb_dir.glob(f"linecheck-agent_*_{arch}.deb"))
                else:
                    built = subprocess.run([str(ROOT / "scripts/package.sh"), "--arch", arch, "--out", str(scratch),
                                            "--compress", "gzip"], capture_output=True, text=True, check=True)
                    deb = Path(built.stdout.strip().splitlines()[-1])
                fig = measure(arch, deb, host, int(port), args.idle_s, scratch / arch)
            except (rootfs.Unavailable, subprocess.CalledProcessError, StopIteration) as exc:
                fig = {"arch": arch, "failed": f"{type(exc).__name__}: {exc}"}
            fig["loadavg"] = [round(x, 2) for x in os.getloadavg()]
            figures.append(fig)
            print(json.dumps(fig))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if any("failed" in f for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
