"""`linecheck-agent check` as an ordinary user, for real: the agent-only install (system Python, outside the
clone, tests/install_support.py) run as `nobody` with its own temporary HOME.

As `nobody`, ICMP is not permitted here (net.ipv4.ping_group_range excludes it, no CAP_NET_RAW), so the
ping check cannot run: the result must say "not fully checked" (exit 3), never "healthy" (exit 0). The
report is always shown; where the result is queued (the configured data_dir, the user's state directory,
or nowhere) is said once on stderr (agent/spoolplace.py).

And root's side of the same: files `sudo linecheck-agent check` writes into the service's data_dir go back
to the service's user, and a symlink planted there never makes root change the owner of anything outside
(agent/handover.py).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.handover import hand_over

# Serial (scripts/test.sh phase B): these run the cached agent-only virtualenv, which every test session
# force-reinstalls (tests/install_support.py): another xdist worker's reinstall would break a running test.
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root"),
              pytest.mark.serial]

NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def space() -> Iterator[Path]:
    """A world-traversable scratch directory (pytest's tmp_path is 0700 root: nobody cannot reach into it)."""
    path = Path(tempfile.mkdtemp(prefix="linecheck-nobody-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _home(space: Path) -> Path:
    home = space / "home"
    home.mkdir()
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    return home


def _config(space: Path, data_dir: Path) -> Path:
    cfg = space / "agent.yaml"
    cfg.write_text(f"agent_id: np-gw\nline_id: np-line\nsite_id: np-site\ndata_dir: {data_dir}\n"
                   "checks:\n  link: {window_s: 0.1}\n  ping: {targets: [127.0.0.1], count: 2, interval_s: 0.05}\n")
    cfg.chmod(0o644)
    return cfg


def as_nobody(venv: Path, args: list[str], home: Path | None, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home) if home else "/nonexistent"}
    return subprocess.run(["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}", "--clear-groups",
                           "--inh-caps=-all", str(venv / "bin" / "linecheck-agent"), *args],
                          capture_output=True, text=True, timeout=120, env={**base, **env}, cwd="/")


def _notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("linecheck-agent:")]


def _ping_not_permitted(envelope: dict) -> None:
    ping = [c for c in envelope["checks"] if c["kind"] == "ping"]
    if ping and ping[0]["status"] == "ok":
        pytest.skip("this machine lets nobody open ICMP sockets (net.ipv4.ping_group_range): nothing is skipped")
    assert ping[0]["status"] == "skipped" and "CAP_NET_RAW" in ping[0]["reason"]


@pytest.mark.parametrize("inside", ["", "linecheck"])  # the data_dir itself, or hidden inside the service's 0700 dir
def test_beside_the_services_data_dir_the_report_is_shown_not_queued(agent_venv_path: Path, space: Path,
                                                                      inside: str) -> None:
    service = space / "var-lib-linecheck"
    service.mkdir(mode=0o700)  # the service's (root here), as the package makes it for its user
    home = _home(space)
    out = as_nobody(agent_venv_path, ["check", "--json", "--config", str(_config(space, service / inside))], home)
    assert "Traceback" not in out.stderr
    envelope = json.loads(out.stdout)  # the report is there, whatever happened to the spool
    _ping_not_permitted(envelope)
    assert out.returncode == 3, out.stderr  # not fully checked: never 0, never "healthy"
    [note] = _notes(out.stderr)  # said once
    assert "not queued" in note and "root" in note
    assert envelope["seq"] == 0  # not numbered: the service's spool numbers this agent's results
    assert list(home.iterdir()) == [] and list(service.iterdir()) == []


def test_without_a_data_dir_the_result_is_queued_in_the_users_state_dir(agent_venv_path: Path, space: Path) -> None:
    home = _home(space)
    absent = space / "root-only" / "linecheck"
    absent.parent.mkdir(mode=0o755)  # nobody cannot create it
    out = as_nobody(agent_venv_path, ["check", "--config", str(_config(space, absent))], home)
    assert out.returncode == 3, out.stderr
    spool = home / ".local" / "state" / "linecheck" / "spool.sqlite"
    [note] = _notes(out.stderr)
    assert f"kept in {spool.parent}" in note
    # The human report: never "healthy"; the verdict says what could not run and why.
    assert "Not fully checked: 1 of 2 checks could not run." in out.stdout and "healthy" not in out.stdout
    assert "ICMP not permitted" in out.stdout
    with sqlite3.connect(spool) as db:
        assert db.execute("SELECT seq FROM results").fetchall() == [(1,)]
    assert spool.stat().st_uid == NOBODY.pw_uid and not absent.exists()


def test_xdg_state_home_is_honoured_and_nowhere_writable_is_said(agent_venv_path: Path, space: Path) -> None:
    state = space / "xdg"
    state.mkdir()
    os.chown(state, NOBODY.pw_uid, NOBODY.pw_gid)
    cfg = _config(space, space / "root-only" / "linecheck")
    (space / "root-only").mkdir(mode=0o755)
    out = as_nobody(agent_venv_path, ["check", "--json", "--config", str(cfg)], None, XDG_STATE_HOME=str(state))
    assert out.returncode == 3 and json.loads(out.stdout)["seq"] == 1, out.stderr
    assert (state / "linecheck" / "spool.sqlite").exists()

    out = as_nobody(agent_venv_path, ["check", "--json", "--config", str(cfg)], None)  # HOME=/nonexistent
    assert out.returncode == 3 and json.loads(out.stdout)["seq"] == 0, out.stderr
    [note] = _notes(out.stderr)
    assert "not queued" in note


def test_the_daemon_refuses_to_share_the_services_data_dir(agent_venv_path: Path, space: Path) -> None:
    service = space / "var-lib-linecheck"
    service.mkdir(mode=0o700)
    out = as_nobody(agent_venv_path, ["run", "--config", str(_config(space, service))], _home(space))
    assert out.returncode == 2 and "cannot run the agent" in out.stderr and "Traceback" not in out.stderr


def test_root_hands_the_services_files_back(agent_venv_path: Path, space: Path) -> None:
    """`sudo linecheck-agent check` into a data_dir owned by the agent's user (nobody plays it here)."""
    service = space / "data"
    service.mkdir(mode=0o700)
    os.chown(service, NOBODY.pw_uid, NOBODY.pw_gid)
    out = subprocess.run([str(agent_venv_path / "bin" / "linecheck-agent"), "check", "--json", "--only", "link",
                          "--config", str(_config(space, service))], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout)["seq"] == 1, out.stderr
    owners = {p.name: p.stat().st_uid for p in service.rglob("*")}
    assert "spool.sqlite" in owners and set(owners.values()) == {NOBODY.pw_uid}, owners


def test_hand_over_never_follows_a_planted_symlink(space: Path) -> None:
    outside_file, outside_dir = space / "etc-shadow", space / "etc"
    outside_file.write_text("root's")
    outside_dir.mkdir()
    (outside_dir / "passwd").write_text("root's")
    data = space / "data"
    data.mkdir()
    (data / "sub").mkdir()
    (data / "sub" / "spool.sqlite").write_text("")
    (data / "key-link").symlink_to(outside_file)  # the service's user planted these
    (data / "dir-link").symlink_to(outside_dir)
    os.chown(data, NOBODY.pw_uid, NOBODY.pw_gid)
    assert hand_over(data) == 4  # sub, sub/spool.sqlite and the two links themselves
    assert (data / "sub" / "spool.sqlite").stat().st_uid == NOBODY.pw_uid
    assert os.lstat(data / "key-link").st_uid == NOBODY.pw_uid
    for outside in (outside_file, outside_dir, outside_dir / "passwd"):
        assert outside.stat().st_uid == 0, outside
    # A data_dir root owns (a clone's, a laptop's) is left alone.
    os.chown(data, 0, 0)
    assert hand_over(data) == 0
