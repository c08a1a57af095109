from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.lab import LineLab
from tests.mosquitto import Broker, running_broker

# Fixtures of the API and console tests (fleet, client, sender) live in their own module; those of
# installing the project outside the clone (a wheel, an agent-only virtualenv) in tests/install_support.py.
pytest_plugins = ["tests.api_support", "tests.install_support"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (scripts/test.sh installs it when run as root)")
    workdir = tmp_path / "broker"
    workdir.mkdir()
    with running_broker(workdir) as b:
        yield b


@pytest.fixture
def lab() -> Iterator[LineLab]:
    """A gateway namespace and a carrier namespace joined by a veth pair (see tests/lab.py)."""
    if os.geteuid() != 0:
        pytest.skip("the line lab needs root to create network namespaces")
    if not shutil.which("ip") or not shutil.which("tc"):
        pytest.skip("the line lab needs iproute2 (ip, tc)")
    with LineLab() as lab:
        yield lab


@pytest.fixture
def line_lab() -> Iterator[LineLab]:
    """The line lab with the line emulator on its access link (tests/lineemu.py)."""
    if os.geteuid() != 0:
        pytest.skip("the line lab needs root to create network namespaces")
    if not shutil.which("ip"):
        pytest.skip("the line lab needs iproute2 (ip)")
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("the line emulator needs a C compiler (gcc) to build tests/lineemu.c")
    with LineLab(emulator=True) as lab:
        yield lab


@pytest.fixture
def line(line_lab: LineLab) -> Callable[..., None]:
    """`line(down=dict(rate_mbit=500, delay_ms=10, loss=1e-4, buffer_ms=50), up=...)` impairs the
    emulated line of `line_lab` (keys: tests.lineemu.Impairment); call again to change it."""
    return line_lab.line


PG_ADMIN_URL = os.environ.get("LINECHECK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, uniquely named database on the local PostgreSQL (trust auth); dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"linecheck_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({str(exc.orig).strip().splitlines()[0]})")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both backends: an SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/linecheck.db"
    return str(request.getfixturevalue("pg_url"))
