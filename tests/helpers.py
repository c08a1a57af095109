"""Small helpers shared by tests: write configs, start the real programs, wait for conditions."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll until `condition()` is truthy (synchronisation on an observable state, not a sleep)."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def agent_config(tmp: Path, port: int, agent_id: str = "e2e-gw", **extra: str) -> Path:
    path = tmp / f"{agent_id}.yaml"
    body = (f"agent_id: {agent_id}\nline_id: {agent_id}-line\nsite_id: e2e-site\ndata_dir: {tmp}/{agent_id}-data\n"
            f"mqtt: {{host: 127.0.0.1, port: {port}, resend_after_s: 5}}\n"
            "schedule: {interval_s: 3600, jitter_s: 0, first_delay_s: 0}\n"
            "checks:\n  link: {window_s: 0.1}\n")
    path.write_text(body + "".join(f"{k}: {v}\n" for k, v in extra.items()))
    return path


def collector_config(tmp: Path, port: int, database: str | None = None, **mqtt: str) -> Path:
    path = tmp / "collector.yaml"
    db = database or f"sqlite:///{tmp}/collector.db"
    extra = "".join(f", {k}: {v}" for k, v in mqtt.items())
    # http on port 0: a free port, so parallel test runs never fight over the default 8080.
    path.write_text(f"database: {db}\nmqtt: {{host: 127.0.0.1, port: {port}{extra}}}\nhttp: {{port: 0}}\n")
    return path


def start(module: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", module, *args], stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def acknowledged(*_args: object, **_kwargs: object) -> object:
    """What paho's publish() returns once the broker acknowledged: for tests that replace publish."""
    import paho.mqtt.client as mqtt

    info = mqtt.MQTTMessageInfo(1)
    info._set_as_published()
    return info
