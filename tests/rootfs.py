"""Clean Debian 12 root filesystems for the gateway package tests, built once with debootstrap and cached.

A root filesystem takes minutes to build (arm64 runs its second stage under qemu-user-static), so it is
built once per machine under /var/cache/linecheck/rootfs-<arch>-<hash> (the hash covers everything that
shapes it, so a change here builds a new one) and every test gets a throw-away overlay on top of it:
what a test installs never reaches the cache. Building takes a file lock, so two test runs (or
`scripts/setup.sh --test` and a test) never build the same one twice.

    python -m tests.rootfs amd64 arm64        # build (or find) the caches; prints their paths
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

CACHE = Path(os.environ.get("LINECHECK_CACHE", "/var/cache/linecheck"))
MIRROR = os.environ.get("LINECHECK_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What shapes a root filesystem; any change here gives a new cache key. python3 is preinstalled so the
# tests install the package with dpkg offline (a technician's `apt install ./x.deb` fetches it).
SPEC = {"suite": "bookworm", "variant": "minbase", "include": ["python3"], "layout": 1}
READY = ".linecheck-rootfs-ready"
QEMU = {"arm64": "qemu-aarch64", "amd64": "qemu-x86_64"}
NATIVE = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


class Unavailable(RuntimeError):
    """This machine cannot build or run a root filesystem for that architecture (the reason says why)."""


def path_for(arch: str) -> Path:
    key = hashlib.sha256(json.dumps({**SPEC, "arch": arch, "mirror": MIRROR}, sort_keys=True).encode())
    return CACHE / f"rootfs-{arch}-{key.hexdigest()[:12]}"


def _run(argv: Sequence[str], timeout: float, what: str) -> None:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise Unavailable(f"{what} failed ({out.returncode}): {(out.stderr or out.stdout)[-1500:]}")


def ensure_emulation(arch: str) -> None:
    """A foreign architecture runs through binfmt_misc + qemu-user-static (the F flag: works in a chroot)."""
    if arch == NATIVE:
        return
    entry = Path("/proc/sys/fs/binfmt_misc") / QEMU.get(arch, f"qemu-{arch}")
    if not Path("/proc/sys/fs/binfmt_misc/register").exists():
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"],
                           capture_output=True, timeout=30)
    if not entry.exists() and shutil.which("update-binfmts"):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(["update-binfmts", "--enable", entry.name], capture_output=True, timeout=60)
    if not entry.exists():
        raise Unavailable(f"cannot run {arch} binaries: no binfmt_misc entry {entry} (install qemu-user-static "
                          "and binfmt-support as root, and mount binfmt_misc)")
    if "flags: " in (text := entry.read_text()) and "F" not in text.split("flags: ", 1)[1].split("\n", 1)[0]:
        raise Unavailable(f"{entry} lacks the F flag: the emulator would not be found inside a chroot")


def _check_tools() -> None:
    if os.geteuid() != 0:
        raise Unavailable("building and entering a root filesystem needs root (debootstrap, chroot, mount)")
    for tool in ("debootstrap", "chroot", "mount"):
        if not shutil.which(tool):
            raise Unavailable(f"{tool} is not installed (scripts/setup.sh --test installs debootstrap)")


def cached(arch: str) -> Path | None:
    path = path_for(arch)
    return path if (path / READY).exists() else None


def build(arch: str, log: Path | None = None) -> Path:
    """The cached root filesystem for `arch`, built on first use (under a lock; minutes, once)."""
    _check_tools()
    ensure_emulation(arch)
    final = path_for(arch)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(final.with_name(final.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / READY).exists():
            return final
        if final.exists():  # a half-built one from an interrupted run
            shutil.rmtree(final)
        work = Path(tempfile.mkdtemp(prefix=final.name + ".build-", dir=CACHE))
        debs = CACHE / "debootstrap-debs"
        debs.mkdir(exist_ok=True)
        try:
            argv = ["debootstrap", f"--arch={arch}", f"--variant={SPEC['variant']}",
                    f"--include={','.join(SPEC['include'])}", f"--cache-dir={debs}", str(SPEC["suite"]),
                    str(work), MIRROR]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
            if log is not None:
                log.write_text(out.stdout + out.stderr)
            if out.returncode != 0:
                tail = (out.stderr or out.stdout)[-1500:]
                raise Unavailable(f"debootstrap {arch} failed ({out.returncode}): {tail}")
            _run(["chroot", str(work), "apt-get", "clean"], 600, "apt-get clean")
            (work / READY).write_text(json.dumps({**SPEC, "arch": arch, "mirror": MIRROR}) + "\n")
            work.rename(final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return final


class Chroot:
    """A throw-away overlay on a cached root filesystem, with /proc, /sys and /dev, sharing the host's network."""

    def __init__(self, lower: Path, scratch: Path):
        self.lower = lower
        self.upper, self.work, self.root = scratch / "upper", scratch / "work", scratch / "root"
        self.mounts: list[Path] = []

    def __enter__(self) -> Chroot:
        for d in (self.upper, self.work, self.root):
            d.mkdir(parents=True)
        try:
            self._mount(["-t", "overlay", "overlay", "-o",
                         f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work}"], self.root)
            self._mount(["-t", "proc", "proc"], self.root / "proc")
            self._mount(["--rbind", "/sys"], self.root / "sys")
            self._mount(["--rbind", "/dev"], self.root / "dev")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _mount(self, args: list[str], target: Path) -> None:
        _run(["mount", *args, str(target)], 60, f"mount {target}")
        self.mounts.append(target)

    def __exit__(self, *_: object) -> None:
        for target in reversed(self.mounts):
            # lazy + recursive: a process of the test that is still exiting must not leave the mount behind
            subprocess.run(["umount", "-R", "-l", str(target)], capture_output=True, timeout=60)
        self.mounts.clear()

    def run(self, argv: Sequence[str], *, user: str | None = None, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the root filesystem (as `user` when given), with a clean environment."""
        base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                "HOME": "/root"}
        spec = [f"--userspec={user}"] if user else []  # the user's own primary group
        return subprocess.run(["chroot", *spec, str(self.root), *argv], capture_output=True, text=True,
                              timeout=timeout, env={**base, **(env or {})})

    def popen(self, argv: Sequence[str], log: Path, *, user: str | None = None) -> subprocess.Popen[bytes]:
        spec = [f"--userspec={user}"] if user else []  # the user's own primary group
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen(["chroot", *spec, str(self.root), *argv], stdout=log.open("ab"),
                                stderr=subprocess.STDOUT, env=env)


@contextlib.contextmanager
def chroot(arch: str, scratch: Path) -> Iterator[Chroot]:
    lower = build(arch)
    with Chroot(lower, scratch) as c:
        yield c


def main(argv: list[str] | None = None) -> int:
    arches = (argv if argv is not None else sys.argv[1:]) or ["amd64", "arm64"]
    failed = 0
    for arch in arches:
        try:
            print(f"rootfs {arch}: {build(arch)}")
        except Unavailable as exc:
            print(f"rootfs {arch}: not available: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
