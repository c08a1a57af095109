"""The line lab itself: it carries traffic, cuts the line, and cleans up after itself."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.lab import CARRIER_ADDR, SERVER_ADDR, LineLab

pytestmark = pytest.mark.lab


def _echo(lab: LineLab, address: str) -> int:
    """Replies to 3 echoes from the gateway namespace (the agent's own ICMP code; no ping binary)."""
    code = ("import sys, time; from agent.checks.ping import echo; "
            f"print(len(echo('{address}', 3, 0.05, 0.5, 56, time.monotonic() + 5).rtts_ms))")
    out = lab.run(lab.gw, [sys.executable, "-c", code], check=True)
    return int(out.stdout)


def test_lab_carries_ping_and_link_down_cuts_it(lab: LineLab) -> None:
    assert _echo(lab, SERVER_ADDR) == 3
    lab.link(up=False)
    assert _echo(lab, CARRIER_ADDR) == 0
    lab.link(up=True)
    assert _echo(lab, CARRIER_ADDR) == 3


def test_lab_namespaces_are_removed_on_exit() -> None:
    import os
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with LineLab() as lab:
        names = (lab.gw, lab.carrier)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(n in listed for n in names)


def test_agent_check_inside_gateway_namespace(lab: LineLab, tmp_path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: lab-gw\nline_id: lab-line\nsite_id: lab-site\ndata_dir: {tmp_path}/data\n"
                   "checks:\n  link: {window_s: 0.2}\n  ping: {targets: [gateway], count: 5, interval_s: 0.05}\n")
    out = lab.run(lab.gw, [sys.executable, "-m", "agent.cli", "check", "--json", "--config", str(cfg)])
    assert out.returncode == 0, out.stderr
    env = json.loads(out.stdout)
    assert [c["status"] for c in env["checks"]] == ["ok", "ok"]
    assert env["checks"][0]["target"] == "wan0"
    lab.link(up=False)
    out = lab.run(lab.gw, [sys.executable, "-m", "agent.cli", "check", "--json", "--no-spool", "--config", str(cfg)])
    assert out.returncode == 1, out.stderr
    env = json.loads(out.stdout)
    assert env["verdict"] == "problems"
    assert "line_down" in {f["code"] for f in env["findings"]}
