"""What a new user meets first on every command line (issue 23 item 8): `--version`, a help text for
every option, `serve --help` naming the console and the API, argparse refusing a negative `--limit`,
exit 2 for a ticket that does not exist, times with their zone, whole ticket summaries, and a test
server whose default port is not the collector's. The real console scripts where a user types them."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.store.database import Store
from collector.tickets import lifecycle as tickets
from tests.factory import envelope

BIN = Path(sys.executable).parent
PROGRAMS = ("linecheck-agent", "linecheck-collector", "linecheck-stack", "linecheck-testserver")


def run(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / program), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_program_has_version(program: str) -> None:
    from linecheck import __version__

    out = run(program, "--version")
    assert (out.returncode, out.stdout) == (0, f"{program} {__version__}\n"), out.stderr


def _options_without_help(p: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                missing += _options_without_help(child, f"{path} {name}")
        elif not action.help:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_and_argument_says_what_it_is() -> None:
    from agent.cli import _parser as agent_parser
    from collector.cli.program import parser as collector_parser
    from testserver.cli import parser as testserver_parser

    missing = (_options_without_help(agent_parser(), "linecheck-agent")
               + _options_without_help(collector_parser(), "linecheck-collector")
               + _options_without_help(testserver_parser(), "linecheck-testserver"))
    assert missing == []
    stack = run("linecheck-stack", "--help").stdout  # its parser lives in main(): read its help instead
    for option in re.findall(r"^  (--[a-z-]+)", stack, re.M):
        assert re.search(rf"^  {option}( [A-Z_]+)?\s+\S", stack, re.M), f"linecheck-stack {option} has no help"


def test_serve_help_names_the_console_and_the_api() -> None:
    out = run("linecheck-collector", "serve", "--help").stdout
    text = " ".join(out.split())
    assert "web console (/console/)" in text and "HTTP API (/api/v1" in text and "/metrics" in text
    assert "--config FILE the collector's config file" in text and "--log-level LEVEL how much to log" in text


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(f"database: sqlite:///{tmp_path}/c.db\n")
    return path


def test_a_fresh_database_is_migrated_without_a_word(cfg: Path) -> None:
    """Alembic announced its plugins at INFO, seven lines on every command (fixed in b74728f; kept so)."""
    out = run("linecheck-collector", "results", "--config", str(cfg))
    assert (out.returncode, out.stdout, out.stderr) == (0, "no results stored yet\n", "")


def test_negative_limit_is_a_usage_error(cfg: Path) -> None:
    for command in (["results"], ["tickets", "list"]):
        out = run("linecheck-collector", *command, "--config", str(cfg), "--limit", "-3")
        assert out.returncode == 2 and "argument --limit: expected 1 or more, got -3" in out.stderr, out.stderr


def test_a_missing_ticket_exits_2(cfg: Path) -> None:
    for command in (["tickets", "show", "999"], ["tickets", "ack", "999"]):
        out = run("linecheck-collector", *command, "--config", str(cfg))
        assert (out.returncode, out.stderr) == (2, "linecheck-collector: no ticket #999\n")


def test_cli_times_carry_the_console_zone_and_summaries_are_whole(tmp_path: Path, cfg: Path) -> None:
    at = datetime(2026, 5, 1, 6, 30, tzinfo=UTC)
    summary = ("Line down on acme-xuhui-1 since the office reopened: the gateway sees no carrier signal on its WAN "
               "port; send a crew")
    assert len(summary) > 80
    store = Store(f"sqlite:///{tmp_path}/c.db")
    store.ingest([envelope("gw-1", "line-1")], received_at=at)
    with store.engine.begin() as conn:
        tid = tickets.open_ticket(conn, line_id="line-1", fault_class="line_down", summary=summary,
                                  location="wan", now=at).ticket_id
    store.close()
    results = run("linecheck-collector", "results", "--config", str(cfg)).stdout
    assert results.startswith("2026-05-01 14:30:00 +08:00  gw-1"), results  # the console's Asia/Shanghai
    listed = run("linecheck-collector", "tickets", "list", "--config", str(cfg)).stdout
    assert "2026-05-01 14:30 +08:00" in listed and listed.rstrip().endswith("port; send a crew"), listed
    shown = run("linecheck-collector", "tickets", "show", str(tid), "--config", str(cfg)).stdout
    assert "2026-05-01 14:30:00 +08:00  opened" in shown, shown

    cfg.write_text(cfg.read_text() + "http: {timezone: UTC}\n")
    assert run("linecheck-collector", "results", "--config", str(cfg)).stdout.startswith("2026-05-01 06:30:00 +00:00")


def test_the_test_server_and_the_collector_do_not_share_a_default_port() -> None:
    from agent.throughput.backends import parse_server
    from collector.config import CollectorConfig
    from testserver.config import TestServerConfig, split_host_port

    server_port = split_host_port(TestServerConfig().listen)[1]
    assert server_port != CollectorConfig().http.port
    assert parse_server("linecheck://ts.example").port == server_port  # the agent looks where the server is
