"""The I/O seam of the WiFi check: where `iw` output and /proc/net/wireless come from.

`IwCommand` runs the real `iw`; `CapturedIw` replays captured outputs from a directory (one file
per command, named after its arguments: `dev.txt`, `dev_wlan0_station_dump.txt`; a `.err` file
instead holds the stderr of a command that failed). The check takes either (STYLE.md 7).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Output:
    ok: bool
    stdout: str
    error: str | None = None  # what went wrong, in iw's own words when it said something


class IwSource(Protocol):
    def available(self) -> bool: ...

    def run(self, *args: str) -> Output: ...

    def proc_net_wireless(self) -> str | None: ...

    def sysfs_wireless(self) -> list[str]: ...


def sysfs_wireless_interfaces(root: Path = Path("/sys/class/net")) -> list[str]:
    """Interfaces the kernel knows as wireless (cfg80211 gives them a phy80211 link)."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    return [p.name for p in entries if (p / "phy80211").exists() or (p / "wireless").exists()]


class IwCommand:
    """The real thing: runs `iw` (no shell), reads /proc and /sys."""

    def __init__(self, iw_path: str = "iw", timeout_s: float = 15.0):
        self.iw_path = iw_path
        self.timeout_s = timeout_s

    def available(self) -> bool:
        return shutil.which(self.iw_path) is not None

    def run(self, *args: str) -> Output:
        try:
            proc = subprocess.run([self.iw_path, *args], capture_output=True, text=True, timeout=self.timeout_s,
                                  errors="replace")
        except FileNotFoundError:
            return Output(False, "", f"{self.iw_path} is not installed")
        except subprocess.TimeoutExpired:
            return Output(False, "", f"iw {' '.join(args)} did not answer within {self.timeout_s:g} s")
        if proc.returncode != 0:
            said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            return Output(False, proc.stdout, said[-1] if said else f"exit status {proc.returncode}")
        return Output(True, proc.stdout)

    def proc_net_wireless(self) -> str | None:
        try:
            return Path("/proc/net/wireless").read_text()
        except OSError:
            return None

    def sysfs_wireless(self) -> list[str]:
        return sysfs_wireless_interfaces()


class CapturedIw:
    """Replays a directory of captured outputs (tests, and a technician's captures from a site)."""

    def __init__(self, directory: Path | str):
        self.dir = Path(directory)

    def available(self) -> bool:
        return (self.dir / "dev.txt").exists()

    def run(self, *args: str) -> Output:
        name = "_".join(args)
        out, err = self.dir / f"{name}.txt", self.dir / f"{name}.err"
        if out.exists():
            return Output(True, out.read_text())
        if err.exists():
            return Output(False, "", err.read_text().strip())
        return Output(False, "", f"no capture for `iw {' '.join(args)}` in {self.dir}")

    def proc_net_wireless(self) -> str | None:
        path = self.dir / "proc_net_wireless.txt"
        return path.read_text() if path.exists() else None

    def sysfs_wireless(self) -> list[str]:
        return []
