"""The README's run command: the local stack stores a real result of this machine's line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker


def test_local_stack_stores_a_result(tmp_path: Path) -> None:
    if not shutil.which("mosquitto") and not shutil.which("amqtt"):
        pytest.skip("no broker: neither mosquitto nor amqtt installed")
    out = subprocess.run([sys.executable, "-m", "linecheck.stack", "--workdir", str(tmp_path), "--port", "0",
                          "--until-stored", "1", "--timeout", "60"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 result(s) stored" in out.stdout
    assert "linecheck-collector results --config" in out.stdout
    assert "/console/   user demo  password " in out.stdout  # the console, where, and how to sign in
