"""One line check at a time on this gateway, across processes.

Two checks at once would measure each other, and the idle tracker must not mistake the agent's
own check traffic for the office coming back. The daemon and `linecheck-agent check` both hold
an flock on data_dir/check.lock while checking, and touch it at start and end, so the daemon can
tell "a check ran since my last traffic sample" even for a manual check in another process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from agent.statefile import PRIVATE_FILE_MODE, private_dir


@contextlib.contextmanager
def holding(path: Path, on_wait: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Hold the check lock; `on_wait` is called once if another process holds it first."""
    private_dir(path.parent)
    # 0600 like every file in data_dir (agent/statefile.py), whatever the umask; a lock file left by an
    # older agent with 0644 is narrowed when we own it.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, PRIVATE_FILE_MODE)
        _give_to_dir_owner(fd, path.parent)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.utime(fd)
        try:
            yield
        finally:
            os.utime(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _give_to_dir_owner(fd: int, directory: Path) -> None:
    """Root checking by hand (`sudo linecheck-agent check`) in the service's data_dir: the lock file must stay
    the service's, or the daemon could not open it to tell the check from office traffic while we hold it
    (the rest of root's files are handed over after the check: agent/handover.py)."""
    if os.geteuid() != 0:
        return
    owner = os.stat(directory)
    if owner.st_uid != 0 and os.fstat(fd).st_uid == 0:
        os.fchown(fd, owner.st_uid, owner.st_gid)


def busy_since(path: Path, since: float) -> bool:
    """Whether a check is running now, or one started or ended at or after `since` (wall clock)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        if os.fstat(fd).st_mtime >= since:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
