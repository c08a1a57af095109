"""The collector CLI writes nothing into the directory it is started from, creates a fleet CA only when
told to, and refuses tokens and commands for things it does not know (issue 23 item 7).

A new user ran `enrol-token` and `promises acceptance` with a config holding the defaults: the working
directory got acceptance-signing.key, ca/ca.key and linecheck.db, and the accidental CA switched on the
enrolment endpoint. Here the real console script runs from an empty directory with its config elsewhere.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from collector.cli.program import main
from collector.store.database import Store
from tests.factory import envelope, link_check
from tests.test_promises_reports import throughput_check

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR = str(Path(sys.executable).with_name("linecheck-collector"))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """(working directory, config directory); the config names its files relatively, as the example does."""
    cwd, etc = tmp_path / "cwd", tmp_path / "etc"
    cwd.mkdir()
    etc.mkdir()
    (etc / "collector.yaml").write_text("database: sqlite:///state/linecheck.db\nenrolment: {ca_dir: fleet-ca}\n"
                                        "promises: {signing_key_file: keys/acceptance.key}\n")
    (etc / "state").mkdir()
    return cwd, etc


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COLLECTOR, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_tokens_and_commands_only_for_what_is_known_and_no_ca_on_the_side(setup: tuple[Path, Path]) -> None:
    cwd, etc = setup
    c = ["--config", "../etc/collector.yaml"]  # relative, as a user types it
    out = cli(cwd, "enrol-token", *c, "--agent", "gw-1", "--line", "L-404", "--site", "S-1")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == ("linecheck-collector: line 'L-404' is not registered; enrolment tokens are only for "
                          "registered lines: add it with `linecheck-collector registry import` first\n")
    assert main(["registry", "import", "--config", str(etc / "collector.yaml"),
                 str(ROOT / "config" / "lines.example.yaml")]) == 0  # in-process: setup, not under test

    out = cli(cwd, "enrol-token", *c, "--agent", "gw-new", "--line", "acme-xuhui-1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("gw-new.") and "for line acme-xuhui-1 at site acme-xuhui" in out.stderr
    out = cli(cwd, "enrol-token", *c, "--agent", "gw-new", "--line", "acme-xuhui-1", "--site", "lotus-jingan")
    assert (out.returncode, out.stderr) == (2, "linecheck-collector: line 'acme-xuhui-1' is registered at site "
                                               "'acme-xuhui', not 'lotus-jingan'\n")

    out = cli(cwd, "command", *c, "--agent", "nobody-gw", "check_now")
    assert out.returncode == 2
    assert out.stderr.startswith("linecheck-collector: no agent 'nobody-gw' is known to this collector")

    assert not (etc / "fleet-ca").exists()  # issuing a token made no CA
    out = cli(cwd, "broker-config", *c, "--out", str(etc / "broker"), "--hostname", "localhost")
    assert out.returncode == 2 and not (etc / "broker").exists()
    assert out.stderr == (f"linecheck-collector: no fleet CA in {etc}/fleet-ca (enrolment.ca_dir in "
                          "../etc/collector.yaml); create it once with `linecheck-collector ca init "
                          "--config ../etc/collector.yaml`\n")
    assert cli(cwd, "revoke", *c, "--agent", "gw-new").returncode == 2

    out = cli(cwd, "ca", "init", *c)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"created the fleet CA in {etc}/fleet-ca ")
    assert mode(etc / "fleet-ca") == 0o700 and mode(etc / "fleet-ca" / "ca.key") == 0o600
    key = (etc / "fleet-ca" / "ca.key").read_bytes()
    out = cli(cwd, "ca", "init", *c)
    assert out.returncode == 2 and "already holds a fleet CA" in out.stderr
    assert (etc / "fleet-ca" / "ca.key").read_bytes() == key  # never replaced
    assert "CN=linecheck fleet CA, valid until" in cli(cwd, "ca", "show", *c).stdout
    out = cli(cwd, "broker-config", *c, "--out", str(etc / "broker"), "--hostname", "localhost")
    assert out.returncode == 0, out.stderr

    assert sorted(p.name for p in cwd.iterdir()) == []  # nothing written where the commands ran
    assert (etc / "state" / "linecheck.db").is_file()


def test_acceptance_report_key_goes_where_the_config_says(setup: tuple[Path, Path]) -> None:
    cwd, etc = setup
    c = ["--config", str(etc / "collector.yaml")]
    for command in (["registry", "import", *c, str(ROOT / "config" / "lines.example.yaml")],
                    ["promises", "import", *c, str(ROOT / "config" / "promises.example.yaml")]):
        assert main(command) == 0  # in-process: setup, not under test
    now = datetime.now().astimezone()
    store = Store(f"sqlite:///{etc}/state/linecheck.db")
    store.ingest([envelope("acme-xuhui-gw", "acme-xuhui-1", [link_check(), throughput_check(478.0, 470.0)],
                           site_id="acme-xuhui", started_at=now - timedelta(hours=3 * (i + 1))) for i in range(12)])
    store.close()
    out = cli(cwd, "promises", "acceptance", *c, "acme-upgrade-2022", "--technician", "Wang Wei", "--no-pdf",
              "--out", str(etc / "reports"))
    assert out.returncode == 0, out.stderr
    key = etc / "keys" / "acceptance.key"
    assert f"created the acceptance signing key {key} (0600" in out.stderr
    assert mode(key) == 0o600 and mode(key.parent) == 0o700
    again = cli(cwd, "promises", "acceptance", *c, "acme-upgrade-2022", "--technician", "Wang Wei", "--no-pdf",
                "--out", str(etc / "reports"))
    assert again.returncode == 0 and "created the acceptance signing key" not in again.stderr
    assert sorted(p.name for p in cwd.iterdir()) == []
    assert not (etc / "fleet-ca").exists()
