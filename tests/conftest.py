from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import LineLab
from tests.mosquitto import Broker, running_broker


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
