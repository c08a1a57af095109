"""Files root writes into the agent's data_dir go back to the agent's user.

A technician runs `sudo linecheck-agent enroll` and `sudo linecheck-agent check` on a gateway whose agent
service runs as its own user (the package's `linecheck`, owner of /var/lib/linecheck). Files root creates
there — the agent's key and certificate, the spool, its ledger, the check state — would be unreadable or
unwritable for the service, which would then fail to publish or to spool. So after such a command, every
root-owned entry below data_dir is given to the owner of data_dir.

data_dir is writable by that user, who could plant symlinks or swap a directory for one while we walk:
the walk never follows a symlink (os.fwalk with dir fds, lchown relative to them), so nothing outside
data_dir can change owner.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path


def hand_over(data_dir: Path) -> int:
    """Give root-owned entries below `data_dir` to its owner; how many changed. A no-op unless we are root
    and data_dir belongs to another user."""
    if os.geteuid() != 0:
        return 0
    try:
        top = os.lstat(data_dir)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(top.st_mode) or top.st_uid == 0:
        return 0
    uid, gid = top.st_uid, top.st_gid
    changed = 0
    for _dirpath, dirnames, filenames, dirfd in os.fwalk(data_dir, follow_symlinks=False):
        for name in (*dirnames, *filenames):
            with contextlib.suppress(FileNotFoundError):
                if os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_uid == 0:
                    os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)
                    changed += 1
    return changed
