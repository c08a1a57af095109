"""A database the collector cannot use is one line on stderr and exit 2, not a traceback (issue 23 item 2):
which database (password masked) or which path, what went wrong, what to do. The real console scripts,
against a PostgreSQL port with nothing listening, a server that never answers, a missing database on
the local PostgreSQL, an SQLite path in a missing directory and a file that is not a database.
`--log-level LOUD` is a usage error on both CLIs."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN_URL
from tests.mosquitto import free_port

BIN = Path(sys.executable).parent
COMMANDS = [["results"], ["serve"], ["delivery"], ["tickets", "list"], ["promises", "evaluate"], ["init-db"]]


def run(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / program), *args], capture_output=True, text=True, timeout=60)


def config(tmp_path: Path, database: str) -> str:
    path = tmp_path / "collector.yaml"
    # Where serve would listen: a free port, never reached (the database fails first).
    path.write_text(f"database: {database}\nhttp: {{port: {free_port()}}}\nmqtt: {{port: {free_port()}}}\n")
    return str(path)


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert out.stdout == ""
    return out.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_postgresql_with_nothing_listening(tmp_path: Path, command: list[str]) -> None:
    port = free_port()
    cfg = config(tmp_path, f"postgresql+psycopg://linecheck:s3cret-pw@127.0.0.1:{port}/fleet")
    err = one_line(run("linecheck-collector", *command, "--config", cfg))
    assert err == (f"linecheck-collector: cannot use the database postgresql+psycopg://linecheck:***@127.0.0.1:{port}"
                   f"/fleet (`database:` in {cfg}): connection to server at \"127.0.0.1\", port {port} failed: "
                   f"Connection refused; is PostgreSQL running on 127.0.0.1:{port} and accepting TCP/IP "
                   "connections?\n")
    assert "s3cret" not in err


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_sqlite_in_a_missing_directory(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "no-such-dir" / "deeper" / "linecheck.db"
    cfg = config(tmp_path, f"sqlite:///{db}")
    err = one_line(run("linecheck-collector", *command, "--config", cfg))
    assert err == (f"linecheck-collector: cannot use the SQLite database {db} (`database:` in {cfg}): its directory "
                   f"{db.parent} does not exist; create it (mkdir -p {db.parent}) or point `database:` at an "
                   "existing directory\n")
    assert not db.parent.exists()


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_text("shopping list\n" * 100)
    err = one_line(run("linecheck-collector", "results", "--config", config(tmp_path, f"sqlite:///{db}")))
    assert f"cannot use the SQLite database {db}" in err and "is not an SQLite database or is damaged" in err


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung or firewalled server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def test_postgresql_that_never_answers_times_out(tmp_path: Path, silent_server: int) -> None:
    cfg = config(tmp_path, f"postgresql+psycopg://postgres@127.0.0.1:{silent_server}/x?connect_timeout=1")
    err = one_line(run("linecheck-collector", "results", "--config", cfg))
    assert "connection timeout expired; is PostgreSQL running on" in err


def test_postgresql_database_that_does_not_exist(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    try:
        with create_engine(PG_ADMIN_URL).connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError:
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    err = one_line(run("linecheck-collector", "results", "--config",
                       config(tmp_path, f"{base}/linecheck_no_such_database")))
    assert 'database "linecheck_no_such_database" does not exist; create it (createdb -h 127.0.0.1' in err


@pytest.mark.parametrize("program,command", [("linecheck-collector", "serve"), ("linecheck-agent", "run")])
def test_unknown_log_level_is_a_usage_error(tmp_path: Path, program: str, command: str) -> None:
    out = run(program, command, "--config", str(tmp_path / "any.yaml"), "--log-level", "LOUD")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert (f"{program} {command}: error: argument --log-level: 'LOUD' is not a log level: expected one of DEBUG, "
            "INFO, WARNING, ERROR, CRITICAL (any case)") in out.stderr
