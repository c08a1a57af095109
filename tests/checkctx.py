"""Build a CheckContext for calling a check's run() directly in tests (the runner does this in production)."""

from __future__ import annotations

import time
from typing import Any

from agent.checks.base import CheckContext, LineInfo


def make_ctx(timeout_s: float = 30.0, *, wan: str | None = "wan0", lan: list[str] | None = None,
             plan_down: float | None = None, plan_up: float | None = None, test_server: str | None = None,
             state: dict[str, Any] | None = None) -> CheckContext:
    line = LineInfo(wan_interface=wan, lan_interfaces=list(lan or []), plan_down_mbps=plan_down,
                    plan_up_mbps=plan_up, test_server=test_server)
    return CheckContext(line=line, state={} if state is None else state, deadline=time.monotonic() + timeout_s)
