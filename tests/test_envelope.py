"""One envelope builder (agent/envelope.py): every producer's result is validated, and only the spool
numbers it. Also: the state files the runner and the check lock write are the agent's private files."""

from __future__ import annotations

import ast
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent import checklock, envelope
from agent.checkproc import failed_envelope
from agent.config import AgentConfig
from agent.lan.record import ClientResult
from agent.lan.record import envelope as room_envelope
from agent.lan.station import StationView
from agent.runner import CheckState, run_line_check
from agent.spool import Spool
from linecheck.wire import CheckResult, ResultEnvelope, Status, Trigger, Verdict

ROOT = Path(__file__).resolve().parent.parent
BUILDER = ROOT / "agent" / "envelope.py"
# Fields only an envelope has: a model_copy(update=...) naming one rebuilds an envelope without validation.
ENVELOPE_ONLY_FIELDS = {"seq", "checks", "findings", "verdict", "result_id", "trigger", "trigger_info"}


def _cfg(tmp_path: Path) -> AgentConfig:
    return AgentConfig.model_validate({
        "agent_id": "env-gw", "line_id": "env-line", "site_id": "env-site", "data_dir": str(tmp_path),
        "line": {"wan_interface": "lo"}, "checks": {"link": {"window_s": 0.05}}})


def _envelope_builds(path: Path) -> list[str]:
    """Where `path` builds or rebuilds an envelope by hand (line: what)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        if name in ("ResultEnvelope", "Draft"):
            found.append(f"{node.lineno}: {name}(...)")
        elif name == "model_construct":
            found.append(f"{node.lineno}: model_construct")
        elif owner in ("ResultEnvelope", "Draft") and name.startswith("model_validate"):
            found.append(f"{node.lineno}: {owner}.{name}")
        elif name == "model_copy":
            for kw in node.keywords:
                if kw.arg == "update" and isinstance(kw.value, ast.Dict):
                    keys = {k.value for k in kw.value.keys if isinstance(k, ast.Constant)}
                    if keys & ENVELOPE_ONLY_FIELDS:
                        found.append(f"{node.lineno}: model_copy(update={sorted(keys)})")
    return found


def test_only_the_builder_builds_envelopes() -> None:
    offenders = {str(p.relative_to(ROOT)): hits for p in sorted((ROOT / "agent").rglob("*.py"))
                 if p != BUILDER and (hits := _envelope_builds(p))}
    assert offenders == {}, "build envelopes with agent/envelope.py (draft, sealed, rebuilt), not by hand"
    assert _envelope_builds(BUILDER), "the guard must see the builder's own calls (or it sees nothing)"


def test_every_producer_yields_a_validated_draft_the_spool_numbers(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    view = StationView(ip="198.19.0.2", metrics={"station_found_flag": 0})
    drafts = {
        "runner": run_line_check(cfg, Trigger.MANUAL),
        "check process failed": failed_envelope(cfg, Trigger.SCHEDULE, ["link"], None, None,
                                                datetime.now(UTC), "check process exited with status -9"),
        "room test": room_envelope("env-gw", "env-line", "env-site", ClientResult(room="Store", down_mbps=90),
                                   view, 100.0),
    }
    for producer, d in drafts.items():
        assert isinstance(d, envelope.Draft) and d.seq == envelope.UNSEQUENCED, producer
        assert envelope.parse_draft(d.model_dump_json(by_alias=True)) == d, producer
        wire = envelope.sealed(d, 7)
        assert ResultEnvelope.from_json(wire.to_json()) == wire and wire.seq == 7, producer
    with pytest.raises(ValidationError):  # seq 0 is a draft's, never a wire record's
        ResultEnvelope.from_json(drafts["runner"].to_json())


def test_the_builder_refuses_what_the_collector_would_refuse() -> None:
    ok = CheckResult(kind="link", status=Status.OK, duration_s=0.1)
    common = {"agent_id": "gw", "line_id": "l", "site_id": "s", "trigger": Trigger.MANUAL, "checks": [ok],
              "verdict": Verdict.HEALTHY}
    assert envelope.draft(**common).checks == [ok]  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="trigger_info"):
        envelope.draft(**common, trigger_info={"note": "x" * 5000})  # type: ignore[arg-type]
    # a check altered without validation upstream (model_copy) is still caught
    with pytest.raises(ValidationError, match="reason"):
        envelope.draft(**{**common, "checks": [ok.model_copy(update={"reason": "r" * 3000})]})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="UTC offset"):
        envelope.draft(**common, started_at=datetime(2026, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="seq"):
        envelope.parse_draft(envelope.draft(**common).model_dump_json(by_alias=True)  # type: ignore[arg-type]
                             .replace('"seq":0', '"seq":5'))


def test_two_producers_sharing_the_spool_get_increasing_seqs_without_gaps(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    daemon = Spool(tmp_path / "spool.sqlite")  # the daemon's spool ...
    manual = Spool(tmp_path / "spool.sqlite")  # ... and `linecheck-agent check`'s, on the same file
    view = StationView(ip="198.19.0.2", metrics={"station_found_flag": 0})
    stored = []
    for i in range(3):
        stored.append(daemon.enqueue(room_envelope("env-gw", "env-line", "env-site",
                                                   ClientResult(room=f"Room {i}", down_mbps=500), view, 100.0)))
        stored.append(manual.enqueue(run_line_check(cfg, Trigger.MANUAL, only=["link"]), report_health=False))
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5, 6]
    published = [ResultEnvelope.from_json(p.payload) for p in daemon.pending(10)]
    assert [(e.result_id, e.seq) for e in published] == [(e.result_id, e.seq) for e in stored]
    daemon.close()
    manual.close()


def test_check_state_and_check_lock_are_private_files(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        state = CheckState(tmp_path / "check-state.json")
        state.for_kind("link")["flaps"] = 3
        state.save()
        with checklock.holding(tmp_path / "check.lock"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "check-state.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "check.lock").stat().st_mode) == 0o600
    assert CheckState(tmp_path / "check-state.json").for_kind("link") == {"flaps": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check-state.json", "check.lock"]  # no temporary left
