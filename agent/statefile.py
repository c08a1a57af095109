"""Small JSON state files in the agent's data_dir, written atomically and readable by the agent only.

The idle tracker, the scheduler, the command de-dup and the spool's ledger each keep a little state
that must survive a power cut mid-write: write a temporary file, fsync it, rename it over the old
one, then fsync the directory so the rename itself is durable.

What the agent keeps on disk (results, line details, command history) is nobody else's business on
a shared gateway: files are created 0600 and the directory made 0700, whatever the umask says.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create `path` (and parents) and make it 0700 when this process owns it.

    A directory someone else owns (e.g. a shared parent chosen by mistake) is left alone: we could
    not chmod it anyway, and the files inside are 0600 regardless."""
    path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if path.stat().st_uid == os.geteuid() and path.stat().st_mode & 0o777 != PRIVATE_DIR_MODE:
            os.chmod(path, PRIVATE_DIR_MODE)


def private_file(path: Path) -> None:
    """Create `path` empty if missing, and make it 0600 (O_CREAT with a mode is umask-independent
    only after the chmod: the umask can only remove bits, never add them)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def load_json(path: Path) -> dict[str, Any]:
    """The saved mapping, or {} when the file is missing or unreadable (logged: state is advisory)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable state file %s (%s)", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def save_json(path: Path, data: dict[str, Any]) -> None:
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), PRIVATE_FILE_MODE)  # a stale tmp file may have had other bits
        json.dump(data, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
