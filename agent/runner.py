"""Run a line check: every configured check inside one envelope.

The runner owns what checks must not each reimplement: the deadline, timing, exception capture,
identity and clock stamps, the overall verdict. One failing check never stops the others.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import envelope
from agent.checks import REGISTRY
from agent.checks.base import CheckConfig, CheckContext, LineInfo, Measurement
from agent.config import AgentConfig
from agent.flaps import FlapWatch
from agent.localise import localise
from agent.netinfo import default_route
from agent.outagelog import OUTAGE_LOG, OutageLog
from agent.outagelog import report as outage_report
from agent.reasons import because, reason_fields, step
from agent.statefile import load_json, save_json
from linecheck.i18n.phrases import Phrase
from linecheck.wire import CheckResult, Finding, Status, Trigger, Verdict, utcnow

log = logging.getLogger(__name__)

# A check that overruns its deadline is abandoned (threads cannot be killed); it gets this much
# grace to notice ctx.deadline itself before the runner records a timeout.
GRACE_S = 2.0


def line_info(cfg: AgentConfig) -> LineInfo:
    wan: str | None = cfg.line.wan_interface
    if wan == "auto":
        route = default_route()
        wan = route.interface if route else None
    return LineInfo(wan_interface=wan, lan_interfaces=list(cfg.line.lan_interfaces),
                    plan_down_mbps=cfg.line.plan_down_mbps, plan_up_mbps=cfg.line.plan_up_mbps,
                    test_server=cfg.line.test_server)


class CheckState:
    """Per-check state kept between runs (e.g. carrier flap counters), in data_dir/check-state.json.

    Written like every other state file of the agent (agent/statefile.py): atomically with fsync,
    0600, so a power cut mid-write leaves the old state, not an empty file."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict[str, dict[str, Any]] = load_json(path) if path else {}

    def for_kind(self, kind: str) -> dict[str, Any]:
        return self.data.setdefault(kind, {})

    def save(self) -> None:
        if self.path is not None:
            save_json(self.path, self.data)


def run_one(kind: str, cfg: CheckConfig, line: LineInfo, state: dict[str, Any],
            progress: Callable[[Phrase], None]) -> tuple[list[CheckResult], list[Finding]]:
    """Run one check under its deadline; return its result records and the findings it concluded."""
    spec = REGISTRY[kind]
    started = time.monotonic()
    ctx = CheckContext(line=line, state=state, deadline=started + cfg.timeout_s, progress=progress)
    outcome: list[Measurement] | None = None
    failure: BaseException | None = None

    def target() -> None:
        nonlocal outcome, failure
        try:
            got = spec.run(cfg, ctx)
            outcome = got if isinstance(got, list) else [got]
        except BaseException as exc:  # noqa: BLE001 - any crash becomes an `error` record
            failure = exc

    worker = threading.Thread(target=target, name=f"check-{kind}", daemon=True)
    worker.start()
    worker.join(cfg.timeout_s + GRACE_S)
    duration = round(time.monotonic() - started, 3)
    if worker.is_alive():
        return [CheckResult(kind=kind, status=Status.ERROR, duration_s=duration,
                            **reason_fields(because("timed_out", timeout_s=cfg.timeout_s)))], []
    if failure is not None:
        log.warning("check %s raised", kind, exc_info=failure)
        return [CheckResult(kind=kind, status=Status.ERROR,
                            **reason_fields(because("crashed", diagnostic=f"{type(failure).__name__}: {failure}"[:1000]
                                                    )),
                            duration_s=duration)], []
    assert outcome is not None
    if not outcome:
        return [CheckResult(kind=kind, status=Status.SKIPPED, **reason_fields(because("nothing_to_check")),
                            duration_s=duration)], []
    results = [CheckResult(kind=kind, status=m.status, **reason_fields(None if m.status is Status.OK else m.reason),
                           metrics=m.metrics, duration_s=duration, target=m.target) for m in outcome]
    return results, [f for m in outcome for f in m.findings]


def verdict_of(checks: list[CheckResult], findings: list[Finding]) -> Verdict:
    if findings or any(c.status in (Status.FAILED, Status.DEGRADED) for c in checks):
        return Verdict.PROBLEMS
    if any(c.status is Status.OK for c in checks):
        return Verdict.HEALTHY
    return Verdict.UNKNOWN


def run_line_check(cfg: AgentConfig, trigger: Trigger, *, only: list[str] | None = None,
                   trigger_info: dict[str, Any] | None = None,
                   skip: dict[str, Phrase] | None = None,
                   on_check: Callable[[str, Phrase], None] = lambda _k, _step: None) -> envelope.Draft:
    """Run the configured checks (or `only` these kinds); their envelope is a draft (agent/envelope.py):
    validated, with seq 0 until the spool numbers it.

    Kinds in `skip` are not run but recorded as `skipped` with the given reason (e.g. the
    scheduler's cross-traffic gate or data budget), so the gap is visible in the result.
    """
    # State only where we may keep it: a user checking by hand next to the service's data_dir
    # (agent/spoolplace.py) would otherwise warn about a state file it can neither read nor write.
    state = CheckState(cfg.data_dir / "check-state.json"
                       if os.path.isdir(cfg.data_dir) and os.access(cfg.data_dir, os.W_OK | os.X_OK) else None)
    line = line_info(cfg)
    started_at = utcnow()
    checks: list[CheckResult] = []
    findings: list[Finding] = []
    flaps = FlapWatch(line.wan_interface)  # the link dropping mid-check (agent/flaps.py)
    for kind, check_cfg in cfg.checks.items():
        if only is not None and kind not in only:
            continue
        if skip and kind in skip:
            checks.append(CheckResult(kind=kind, status=Status.SKIPPED, **reason_fields(skip[kind]), duration_s=0.0))
            continue
        on_check(kind, step("start"))
        results, found = run_one(kind, check_cfg, line, state.for_kind(kind),
                                          lambda said, k=kind: on_check(k, said))
        checks.extend(results)
        findings.extend(found)
    flapped = flaps.finding()
    if flapped is not None:
        findings.append(flapped)
    outages = OutageLog(cfg.data_dir / OUTAGE_LOG)
    # The daemon's heartbeat ran: its outages go along. os.path.exists, not Path.exists: a user's
    # `check` beside the service's 0700 data dir gets EACCES there, which Path.exists raises.
    if cfg.heartbeat.enabled and os.path.exists(outages.path):
        try:
            heard, dropped = outage_report(outages)
        except OSError as exc:  # the daemon's log, not ours to read: the report goes on without it
            log.warning("cannot read the heartbeat's outage log %s: %s", outages.path, exc)
        else:
            checks.extend(heard)
            findings.extend(dropped)
    # which of the findings is the cause: WAN, port, LAN, WiFi room, DNS or service (agent/localise.py)
    findings = localise(checks, findings, cfg.checks.get("wifi"))  # type: ignore[arg-type]
    try:
        state.save()
    except OSError as exc:
        log.warning("cannot save check state: %s", exc)
    return envelope.draft(agent_id=cfg.agent_id, line_id=cfg.line_id, site_id=cfg.site_id, trigger=trigger,
                          trigger_info=trigger_info, started_at=started_at, checks=checks,
                          verdict=verdict_of(checks, findings), findings=findings)
