"""Run the daemon's line checks in a short-lived child process, so the daemon stays small.

A full check imports what its checks need — dnspython, the throughput engine, the WiFi parsers (scapy
only for traceroute's `method: scapy`) — and allocates buffers for the speed test.
A process keeps every module it imported and CPython rarely hands freed memory back, so after one
check in-process the daemon would hold ~80 MB for the rest of its life on a gateway that may have
128 MB in total (measured: bench/agent_footprint.py, docs/scaling.md). Instead the daemon starts
`python -m agent.checkproc` per check, writes the loaded config and what to run to its stdin and
reads the envelope from its stdout; the child's memory goes back to the system when it exits.
An hourly check pays one interpreter start (well under a second), which is nothing beside the check.

The child inherits the network namespace, the user and the ambient capabilities (CAP_NET_RAW
survives execve as an ambient capability), and logs to the daemon's stderr. A child that dies,
overruns or answers nonsense still yields a result: every check it should have run is an `error`
record with the reason, never a silent gap.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

from agent import envelope
from agent.config import AgentConfig
from agent.reasons import because, reason_fields
from linecheck.i18n.phrases import Phrase
from linecheck.wire import CheckResult, Status, Trigger, Verdict, utcnow

log = logging.getLogger(__name__)

# Beyond the checks' own deadlines (each runs under timeout_s + the runner's grace): interpreter
# start, imports, and a busy gateway. Past this the child is killed and its checks are errors.
MARGIN_S = 60.0


def config_for_child(cfg: AgentConfig) -> dict[str, Any]:
    # serialize_as_any: `checks` is declared as the base CheckConfig; each kind's own fields must go too.
    return cfg.model_dump(mode="json", by_alias=True, serialize_as_any=True)


def child_deadline_s(cfg: AgentConfig, kinds: list[str]) -> float:
    from agent.runner import GRACE_S

    return sum(cfg.checks[k].timeout_s + GRACE_S for k in kinds) + MARGIN_S


def run_in_child(cfg: AgentConfig, trigger: Trigger, *, only: list[str] | None = None,
                 skip: dict[str, Phrase] | None = None, trigger_info: dict[str, Any] | None = None) -> envelope.Draft:
    """The envelope (a draft, seq 0) of one line check run by a fresh interpreter (as runner.run_line_check)."""
    request = {"config": config_for_child(cfg), "trigger": trigger.value, "only": only,
               "skip": {k: p.as_json() for k, p in (skip or {}).items()},
               "trigger_info": trigger_info or {}, "log_level": logging.getLogger().getEffectiveLevel()}
    kinds = [k for k in cfg.checks if only is None or k in only]
    started_at = utcnow()
    try:
        done = subprocess.run([sys.executable, "-m", "agent.checkproc"], input=json.dumps(request).encode(),
                              stdout=subprocess.PIPE, timeout=child_deadline_s(cfg, kinds), check=False)
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it
        return failed_envelope(cfg, trigger, kinds, skip, trigger_info, started_at,
                               because("child_overran", timeout_s=exc.timeout))
    except OSError as exc:
        return failed_envelope(cfg, trigger, kinds, skip, trigger_info, started_at,
                               because("child_not_started", diagnostic=str(exc)))
    if done.returncode != 0:
        return failed_envelope(cfg, trigger, kinds, skip, trigger_info, started_at,
                               because("child_exited", status=done.returncode))
    try:
        # A draft (seq 0): the spool numbers it at enqueue. Validated again here: the child is another process.
        return envelope.parse_draft(done.stdout)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        return failed_envelope(cfg, trigger, kinds, skip, trigger_info, started_at,
                               because("child_nonsense", diagnostic=str(exc)[:200]))


def failed_envelope(cfg: AgentConfig, trigger: Trigger, kinds: list[str], skip: dict[str, Phrase] | None,
                    trigger_info: dict[str, Any] | None, started_at: Any, reason: Phrase) -> envelope.Draft:
    fields = reason_fields(reason)
    log.error("line check failed: %s", fields["reason"])
    skip = skip or {}
    checks = [CheckResult(kind=k, status=Status.SKIPPED if k in skip else Status.ERROR,
                          **reason_fields(skip.get(k) or reason), duration_s=0.0) for k in kinds]
    return envelope.draft(agent_id=cfg.agent_id, line_id=cfg.line_id, site_id=cfg.site_id, trigger=trigger,
                          trigger_info=trigger_info, started_at=started_at, checks=checks, verdict=Verdict.UNKNOWN)


def main() -> int:
    """The child: request on stdin, envelope (JSON) on stdout, logs on stderr."""
    from agent.runner import run_line_check

    request = json.loads(sys.stdin.buffer.read())
    logging.basicConfig(level=request["log_level"], format="%(asctime)s %(levelname)s %(name)s[check]: %(message)s")
    cfg = AgentConfig.model_validate(request["config"])
    skip = {k: Phrase.from_json(p) or because("raw", diagnostic=str(p)) for k, p in request["skip"].items()}
    result = run_line_check(cfg, Trigger(request["trigger"]), only=request["only"], skip=skip,
                            trigger_info=request["trigger_info"])
    sys.stdout.write(result.model_dump_json(by_alias=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
