"""`linecheck-collector broker-config --broker nats` writes node configs the real nats-server accepts: every
agent the collector knows is a user (its certificate's CN) allowed its own partition subject only, with the
partition the server's mapping computes (tests/test_cluster_acl.py checks that against a running cluster)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from collector.cli.program import main
from collector.fleet.nats_config import partition_of, parse_node
from collector.store.database import Store
from tests.factory import envelope

if not shutil.which("nats-server"):
    pytest.skip("nats-server is not installed (scripts/setup.sh --test installs it)", allow_module_level=True)


def test_partition_is_fnv1a_of_the_agent_id() -> None:
    # Reference values of FNV-1a 32 ("" -> 0x811c9dc5, "a" -> 0xe40c292c) reduced mod P.
    assert partition_of("", 2**32 - 1) == 0x811C9DC5 % (2**32 - 1)
    assert partition_of("a", 1000) == 0xE40C292C % 1000
    assert {partition_of(f"gw-{i}", 8) for i in range(200)} == set(range(8))


def test_node_specs_are_checked() -> None:
    assert parse_node("n1=10.0.0.1") == parse_node("n1=10.0.0.1:4222:6222:8883")
    for bad in ("n1", "=10.0.0.1", "n1=10.0.0.1:4222", "n1=h:1:2:x"):
        with pytest.raises(ValueError, match="expected NAME=HOST"):
            parse_node(bad)


def test_generated_cluster_config_is_accepted_by_nats_server(tmp_path: Path) -> None:
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/c.db\nenrolment: {{ca_dir: {tmp_path}/ca}}\n"
                   "broker: {kind: nats, nats: {partitions: 4}}\n")
    assert main(["ca", "init", "--config", str(cfg)]) == 0
    store = Store(f"sqlite:///{tmp_path}/c.db")
    store.ingest([envelope("gw-east-1", "line-1"), envelope("gw-west-2", "line-2")])
    store.close()
    out = tmp_path / "cluster"
    nodes = [f"n{i}=127.0.0.1:{4220 + i}:{6220 + i}:{8880 + i}" for i in (1, 2, 3)]
    assert main(["broker-config", "--config", str(cfg), "--out", str(out), "--broker", "nats",
                 *[arg for n in nodes for arg in ("--node", n)]]) == 0
    password = (out / "collector.password").read_text()
    for i in (1, 2, 3):
        text = (out / f"n{i}.conf").read_text()
        check = subprocess.run(["nats-server", "-t", "-c", str(out / f"n{i}.conf")], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr + check.stdout
        for agent in ("gw-east-1", "gw-west-2"):
            grant = re.search(r'user: "CN=%s", permissions: \{"publish": \["([^"]+)"' % agent, text)
            assert grant and grant.group(1) == f"lcr.{partition_of(agent, 4)}.{agent}"
        assert '"linecheck.v1.agents.*.results": "lcr.{{partition(4,1)}}.{{wildcard(1)}}"' in text
        assert password.strip() in text and f"127.0.0.1:{6220 + i}" in text
    # Run again (after a revocation, say): the collectors' password stays the same.
    assert main(["broker-config", "--config", str(cfg), "--out", str(out), "--broker", "nats",
                 *[arg for n in nodes for arg in ("--node", n)]]) == 0
    assert (out / "collector.password").read_text() == password
    assert main(["broker-config", "--config", str(cfg), "--out", str(out), "--broker", "nats"]) == 2
