"""Install linecheck the way a user does, outside the clone: a wheel of the working tree, and an agent-only
virtualenv made with the system's Python (/usr/bin/python3, so an unprivileged user can run it: this
machine's development Python lives under /root).

The virtualenv's dependencies come from the index once per pyproject.toml (cached under
/var/cache/linecheck/venv-agent-<hash>); the project itself is re-installed from a fresh wheel of the
working tree in every test session, so the code under test is always the tree's.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("LINECHECK_CACHE", "/var/cache/linecheck"))
SYSTEM_PYTHON = Path("/usr/bin/python3")
# What a wheel is built from (the rest of the clone is tests, docs, bench and configs).
SOURCES = ("pyproject.toml", "README.md", "agent", "linecheck", "collector", "testserver")


class InstallUnavailable(RuntimeError):
    pass


def _pip(python: Path, *args: str, timeout: float = 900) -> str:
    out = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise InstallUnavailable(f"pip {' '.join(args[:2])} failed: {(out.stderr or out.stdout)[-2000:]}")
    return out.stdout


def build_wheel(dest: Path) -> Path:
    """A wheel of the working tree, built from a copy (an in-tree build would write build/ into the shared clone)."""
    with tempfile.TemporaryDirectory(prefix="linecheck-src-") as tmp:
        src = Path(tmp) / "src"
        for name in SOURCES:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                src.mkdir(exist_ok=True)
                shutil.copy2(path, src / name)
        # No build isolation: the installed setuptools builds it (offline, and the form pyproject.toml uses
        # must be one that setuptools accepts: the test fails if not).
        _pip(Path(sys.executable), "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dest), str(src))
    [wheel] = dest.glob("linecheck-*.whl")
    return wheel


def pyproject_key() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]


def _prune_stale(current: Path) -> None:
    """Virtualenvs of earlier pyproject.toml versions (100 MB each), unless another run holds one."""
    for lock_path in current.parent.glob("venv-agent-*.lock"):
        stale = lock_path.with_suffix("")
        if stale == current:
            continue
        with open(lock_path, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            shutil.rmtree(stale, ignore_errors=True)
            lock_path.unlink(missing_ok=True)


def agent_venv(wheel: Path) -> Path:
    """The cached agent-only virtualenv (`pip install linecheck`, no extras), with `wheel` installed in it."""
    if not SYSTEM_PYTHON.exists():
        raise InstallUnavailable(f"{SYSTEM_PYTHON} is not installed")
    venv = CACHE / f"venv-agent-{pyproject_key()}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(venv.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = venv / ".linecheck-ready"
        if not ready.exists():
            shutil.rmtree(venv, ignore_errors=True)
            made = subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], capture_output=True, text=True,
                                  timeout=300)
            if made.returncode != 0:
                raise InstallUnavailable(f"python3 -m venv failed: {made.stderr[-1000:]}")
            _pip(venv / "bin" / "python", "install", "-q", str(wheel))  # the dependencies, as a user gets them
            ready.write_text(pyproject_key() + "\n")
            _prune_stale(venv)
        # The code under test: this session's tree (same dependencies, they are keyed by pyproject.toml).
        _pip(venv / "bin" / "python", "install", "-q", "--no-deps", "--force-reinstall", str(wheel))
        for d in [venv, *venv.rglob("*")]:  # readable by an unprivileged user (umask may be 077 under CI)
            if not d.is_symlink():
                d.chmod(d.stat().st_mode | 0o044 | (0o011 if d.is_dir() or d.stat().st_mode & 0o100 else 0))
    return venv


# --- pytest fixtures (a plugin of tests/conftest.py): built once per session -----------------------------


@pytest.fixture(scope="session")
def linecheck_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_wheel(tmp_path_factory.mktemp("wheel"))
    except InstallUnavailable as exc:
        pytest.fail(f"the working tree does not build as a wheel: {exc}")


@pytest.fixture(scope="session")
def agent_venv_path(linecheck_wheel: Path) -> Path:
    """An agent-only install (`pip install linecheck`, no extras) with the system Python, outside the clone."""
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        pytest.skip(f"cannot create the cache {CACHE} ({exc.strerror}); set LINECHECK_CACHE to a writable place")
    try:
        return agent_venv(linecheck_wheel)
    except InstallUnavailable as exc:
        pytest.skip(str(exc))
