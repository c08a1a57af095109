"""Which checks could not run, and the exit code that says so.

A check that is `skipped` (no privilege, nothing configured to test against, the cross-traffic gate) or
ended in `error` (crashed, timed out) measured nothing: it never counts as passed. A line check with no
problem found but such checks is "not fully checked" — its own verdict and exit code, never "healthy".
The `agent` pseudo-check (spool health) is the agent's, not the line's, and is left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from linecheck.wire import AGENT_CHECK, CheckResult, ResultEnvelope, Status, Verdict

# `linecheck-agent check` exit codes (README, docs/install.md)
EXIT_HEALTHY = 0  # every check ran and found the line healthy
EXIT_PROBLEMS = 1  # problems found (whatever else could not run)
EXIT_UNUSABLE = 2  # could not run at all: usage or config
EXIT_NOT_FULLY_CHECKED = 3  # no problem found, but some checks could not run (or none could)

NOT_RUN = (Status.SKIPPED, Status.ERROR)


def not_run(checks: Sequence[CheckResult]) -> list[CheckResult]:
    """The first record that could not run of each check kind, in the order the checks ran."""
    seen: dict[str, CheckResult] = {}
    for c in checks:
        if c.kind != AGENT_CHECK and c.status in NOT_RUN and c.kind not in seen:
            seen[c.kind] = c
    return list(seen.values())


def kinds_run(checks: Sequence[CheckResult]) -> list[str]:
    return list(dict.fromkeys(c.kind for c in checks if c.kind != AGENT_CHECK))


def exit_code(envelope: ResultEnvelope) -> int:
    if envelope.verdict is Verdict.PROBLEMS:
        return EXIT_PROBLEMS
    if envelope.verdict is Verdict.HEALTHY and not not_run(envelope.checks):
        return EXIT_HEALTHY
    return EXIT_NOT_FULLY_CHECKED
