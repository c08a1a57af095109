"""The install split: `pip install linecheck` (no extras) is the gateway agent and exactly what it imports.

Installed the way a user installs it: a wheel of the working tree into a virtualenv of the system's
Python, outside the clone (tests/install_support.py). What the agent needs is read from the installed
code itself (every import statement of agent/ and linecheck/, lazy ones included, and each module really
imported there: tests/agent_imports_probe.py), so a dependency added to the base without the agent
importing it, or an agent import the base does not bring, fails here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

# Serial (scripts/test.sh phase B): the agent-only virtualenv is one cached directory per machine, and every
# test session force-reinstalls the tree's wheel into it (tests/install_support.py): a second xdist worker's
# reinstall would pull the files out from under a test running here.
pytestmark = pytest.mark.serial

PROBE = Path(__file__).resolve().parent / "agent_imports_probe.py"
# Seeded into every virtualenv by `python -m venv`, not installed by pip for linecheck.
VENV_SEED = {"pip", "setuptools"}


@pytest.fixture(scope="module")
def probe(agent_venv_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    # cwd outside the clone: the installed agent is imported, never the working tree's
    out = subprocess.run([str(agent_venv_path / "bin" / "python"), str(PROBE)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path_factory.mktemp("probe"))
    assert out.returncode == 0, out.stderr
    result: dict[str, list[str]] = json.loads(out.stdout)
    return result


def test_every_agent_module_imports_in_an_agent_only_install(probe: dict[str, list[str]]) -> None:
    assert probe["loaded_errors"] == []
    assert probe["unresolved"] == [], "the agent imports modules no installed distribution provides"
    assert probe["optional"] == ["scapy"]  # traceroute's method: scapy only (linecheck[scapy])


def test_agent_only_install_holds_exactly_what_the_agent_imports(probe: dict[str, list[str]]) -> None:
    installed = set(probe["installed"]) - VENV_SEED - {"linecheck"}
    needed = set(probe["needed"])
    assert installed - needed == set(), "installed for the agent although nothing in agent/ or linecheck/ imports it"
    assert needed - installed == set()
    # And the declaration itself: every base requirement is imported by the agent directly.
    assert set(probe["declared"]) - set(probe["direct"]) == set()
    for server_side in ("sqlalchemy", "fastapi", "uvicorn", "alembic", "psycopg", "starlette", "httpx"):
        assert server_side not in installed


def test_the_agent_checks_in_its_own_install(agent_venv_path: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: split-gw\nline_id: split-line\nsite_id: split-site\ndata_dir: {tmp_path}/data\n"
                   "checks:\n  link: {window_s: 0.1}\n")
    out = subprocess.run([str(agent_venv_path / "bin" / "linecheck-agent"), "check", "--no-spool", "--json",
                          "--config", str(cfg)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "Traceback" not in out.stderr and out.returncode in (0, 1, 3), out.stderr
    envelope = json.loads(out.stdout)
    assert envelope["agent_id"] == "split-gw" and [c["kind"] for c in envelope["checks"]] == ["link"]
    assert envelope["seq"] == 0  # --no-spool: not numbered


def test_an_option_whose_extra_is_missing_says_what_to_install(agent_venv_path: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: split-gw\nline_id: split-line\nsite_id: split-site\ndata_dir: {tmp_path}/data\n"
                   "checks:\n  traceroute: {target: 127.0.0.1, method: scapy}\n")
    out = subprocess.run([str(agent_venv_path / "bin" / "linecheck-agent"), "check", "--no-spool", "--json",
                          "--config", str(cfg)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 3 and "Traceback" not in out.stderr, out.stderr
    [trace] = json.loads(out.stdout)["checks"]
    assert trace["status"] == "skipped" and "pip install 'linecheck[scapy]'" in trace["reason"]


@pytest.mark.parametrize(("command", "extra"), [("linecheck-collector", "collector"), ("linecheck-stack", "collector")])
def test_carrier_commands_name_the_extra_they_need(agent_venv_path: Path, command: str, extra: str) -> None:
    out = subprocess.run([str(agent_venv_path / "bin" / command), "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert f"pip install 'linecheck[{extra}]'" in out.stderr and "Traceback" not in out.stderr
