"""What every check shares: its config base, the context it runs in, and what it returns.

A check measures and nothing else. The runner (agent/runner.py) applies the deadline, times the
check, captures exceptions and stamps identity (STYLE.md 2).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from agent.reasons import Reason
from linecheck.catalogue import kinds, known_kind
from linecheck.configfile import Strict
from linecheck.i18n.phrases import Phrase
from linecheck.wire import Finding, MetricValue, Status


class CheckConfig(Strict):
    """Fields every check accepts. Each check subclasses this with its own settings."""

    timeout_s: float = Field(default=30.0, gt=0, le=3600, description="Runner deadline for this check")


@dataclass
class Measurement:
    """One check's outcome for one target. Unmeasured metrics are None, never 0."""

    status: Status
    reason: Reason = None  # phrases (agent/reasons.py `because`), rendered in the reader's language
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    target: str | None = None
    findings: list[Finding] = field(default_factory=list)


@dataclass
class LineInfo:
    """What the agent knows about the line it sits on (from its config, resolved at run time)."""

    wan_interface: str | None
    lan_interfaces: list[str]
    plan_down_mbps: float | None
    plan_up_mbps: float | None
    test_server: str | None


@dataclass
class CheckContext:
    line: LineInfo
    state: dict[str, Any]  # this check's persisted state from the previous run (mutable)
    deadline: float  # time.monotonic() by which the check should return
    progress: Callable[[Phrase], None] = lambda _step: None  # a step (`step(...)`) the CLI shows as it runs

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


@dataclass(frozen=True)
class CheckSpec:
    """A registry entry: the kind, its config model, and the function that runs it.

    The kind must be in linecheck/kinds.csv, whose title is the check's one title (progress lines,
    the self-check report): a `title` given here is ignored (agent/checks/http.py still passes one)."""

    kind: str
    config: type[CheckConfig]
    run: Callable[[Any, CheckContext], Measurement | list[Measurement]]
    title: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", kinds()[known_kind(self.kind)].title)
