"""Least privilege: the shipped systemd units, and the agent running with only what its unit grants.

The capability tests strip the process to the unit's capability set with setpriv (bounding set,
ambient set, SECBIT_NOROOT) inside the line lab's gateway namespace. They keep uid 0 because this
machine's Python lives under /root, which another user cannot traverse; without capabilities,
uid 0 is an ordinary user for sockets, which is what the agent's checks touch.
"""

from __future__ import annotations

import configparser
import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.lab import LineLab

UNITS = Path(__file__).resolve().parent.parent / "config" / "systemd"


def unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read(UNITS / name)
    return parser["Service"]


@pytest.mark.parametrize("name", ["linecheck-agent.service", "linecheck-collector.service",
                                  "linecheck-testserver.service"])
def test_every_unit_is_confined(name: str) -> None:
    svc = unit(name)
    assert svc.get("User", "") not in ("", "root") or svc.get("DynamicUser") == "yes"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "RestrictSUIDSGID": "yes"}.items():
        assert svc.get(key) == value, f"{name}: {key}"


def test_only_the_agent_holds_a_capability_and_only_net_raw() -> None:
    agent = unit("linecheck-agent.service")
    assert agent["AmbientCapabilities"] == agent["CapabilityBoundingSet"] == "CAP_NET_RAW"
    for other in ("linecheck-collector.service", "linecheck-testserver.service"):
        assert unit(other)["CapabilityBoundingSet"] == ""


def _as_unit(caps: list[str]) -> list[str]:
    """setpriv arguments that leave the process exactly `caps` (lower-case names without CAP_)."""
    spec = ",".join(["-all"] + [f"+{c}" for c in caps])
    return ["setpriv", f"--bounding-set={spec}", f"--inh-caps={spec}", f"--ambient-caps={spec}",
            "--securebits=+noroot,+noroot_locked", "--no-new-privs"]


@pytest.fixture
def agent_cfg(tmp_path: Path) -> Path:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: lp-gw\nline_id: lp-line\nsite_id: lp-site\ndata_dir: {tmp_path}/data\n"
                   "checks:\n  link: {window_s: 0.1}\n  ping: {targets: [gateway], count: 3, interval_s: 0.05}\n")
    return cfg


@pytest.mark.lab
def test_agent_checks_the_line_with_only_its_units_capabilities(lab: LineLab, agent_cfg: Path) -> None:
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    caps = [c.removeprefix("CAP_").lower() for c in unit("linecheck-agent.service")["AmbientCapabilities"].split()]
    out = lab.run(lab.gw, [*_as_unit(caps), sys.executable, "-m", "agent.cli", "check", "--json",
                           "--config", str(agent_cfg)])
    assert out.returncode == 0, out.stderr
    assert [c["status"] for c in json.loads(out.stdout)["checks"]] == ["ok", "ok"]


@pytest.mark.lab
def test_without_any_privilege_ping_is_skipped_with_the_fix_named(lab: LineLab, agent_cfg: Path) -> None:
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    lab.sh(lab.gw, "sysctl -qw net.ipv4.ping_group_range='1 0'")  # nobody may open ICMP datagram sockets
    out = lab.run(lab.gw, [*_as_unit([]), sys.executable, "-m", "agent.cli", "check", "--json",
                           "--config", str(agent_cfg)])
    assert "Traceback" not in out.stderr
    checks = {c["kind"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["link"]["status"] == "ok"
    assert checks["ping"]["status"] == "skipped"
    assert "ping_group_range" in checks["ping"]["reason"] and "CAP_NET_RAW" in checks["ping"]["reason"]
