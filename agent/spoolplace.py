"""Where a check run by hand keeps its result, its lock and its state: chosen before the check runs.

The config's data_dir (/var/lib/linecheck) belongs to the agent's service user. Anyone else running
`linecheck-agent check` must still get their report and must never lose it:

- data_dir writable (or creatable) by us: use it, as the service does;
- data_dir exists but is someone else's: that is the service's spool, numbering this agent's results.
  A second spool for the same agent id would hand out the same seqs twice, so this result is not
  queued (it is shown, and saved with --save-report); run as the service's user or root to queue it;
- data_dir absent and not creatable (no agent installed here, e.g. a technician's laptop): the user's own
  state directory, $XDG_STATE_HOME/linecheck or ~/.local/state/linecheck, where `linecheck-agent run`
  as the same user finds and sends it;
- nowhere writable: not queued.

The choice is said once, on stderr (stdout stays the report or the JSON envelope).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Place:
    data_dir: Path | None  # spool, check lock and check state; None: nowhere (the result is not queued)
    note: str | None = None  # said once when this is not simply the configured data_dir


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def user_state_dir(env: Mapping[str, str] = os.environ) -> Path | None:
    """$XDG_STATE_HOME/linecheck, else ~/.local/state/linecheck (XDG base directory spec); None without a home."""
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "linecheck"
    home = env.get("HOME", "")
    if not home or not Path(home).is_absolute():
        try:
            home = pwd.getpwuid(os.geteuid()).pw_dir
        except KeyError:
            return None
    if not home or home == "/":
        return None
    return Path(home) / ".local" / "state" / "linecheck"


def _lstat(path: Path) -> os.stat_result | None | PermissionError:
    """The entry's stat, None when it does not exist, or the PermissionError when we may not even look
    (a path inside another user's 0700 directory; pathlib's exists() raises there)."""
    try:
        return os.stat(path)
    except PermissionError as exc:
        return exc
    except OSError:
        return None


def _owner(path: Path) -> int:
    """The owner of `path`, or of the nearest ancestor we may look at (the one hiding it)."""
    while isinstance(st := _lstat(path), PermissionError | None) and path.parent != path:
        path = path.parent
    return st.st_uid if isinstance(st, os.stat_result) else 0


def usable(path: Path) -> bool:
    """`path` is a directory we may write in, or the nearest existing ancestor lets us create it."""
    probe = path
    while (st := _lstat(probe)) is None:
        if probe.parent == probe:
            return False
        probe = probe.parent
    return not isinstance(st, PermissionError) and os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)


def choose(data_dir: Path, *, queue: bool = True, env: Mapping[str, str] = os.environ) -> Place:
    """Where this run keeps its files; `queue` False (--no-spool): for lock and state only, and nothing to say."""
    if usable(data_dir):
        return Place(data_dir)
    me = user_name(os.geteuid())
    st = _lstat(data_dir)
    if st is not None:  # there, or hidden from us inside another user's directory: the service's either way
        if not queue:
            return Place(None)
        owner = user_name(_owner(data_dir))
        return Place(None, f"{data_dir} is the agent service's (user {owner}), not {me}'s: this result is shown "
                           f"but not queued for the collector; run as {owner} or root to queue it")
    own = user_state_dir(env)
    if own is not None and usable(own):
        return Place(own, None if not queue else
                     f"{data_dir} is not writable by {me}: results are kept in {own} "
                     f"(`linecheck-agent run` as {me} sends them)")
    if not queue:
        return Place(None)
    return Place(None, f"neither {data_dir} nor {own or 'a home directory'} is writable by {me}: "
                       "this result is shown but not queued for the collector")
