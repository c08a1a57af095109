"""The carrier side needs none of the gateway's code: importing every collector module never loads
`agent` (the contracts both sides read live in linecheck/), so the install split can give each side
only what it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import importlib, pkgutil, sys
import collector
for mod in pkgutil.walk_packages(collector.__path__, "collector."):
    if mod.name.endswith("__main__"):
        continue
    importlib.import_module(mod.name)
from collector.commands.publish import known_checks
assert "throughput" in known_checks()  # bounding a command once loaded the agent's check registry
loaded = sorted(name for name in sys.modules if name == "agent" or name.startswith("agent."))
print(",".join(loaded))
"""


def test_importing_the_whole_collector_never_loads_the_agent() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"collector modules import agent code: {out.stdout.strip()}"
