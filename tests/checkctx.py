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


NOBODY = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--inh-caps=-all"]


def run_agent(lab: Any, checks_yaml: str, *, line_yaml: str = "{}", as_nobody: bool = False,
              only: list[str] | None = None) -> dict[str, Any]:
    """`linecheck-agent check --json` inside the lab's gateway namespace (optionally as `nobody`
    without capabilities); returns the envelope. Fails the test on a crash or an unusable exit."""
    import json
    import shutil
    import sys
    import tempfile
    from pathlib import Path

    # pytest's tmp_path is private to root; `nobody` must be able to read the config.
    where = Path(tempfile.mkdtemp(prefix="linecheck-agent-"))
    try:
        where.chmod(0o755)
        cfg = where / "agent.yaml"
        cfg.write_text(f"agent_id: lab-gw\nline_id: lab-line\nsite_id: lab-site\ndata_dir: {where}/no-data-dir\n"
                       f"line: {line_yaml}\nchecks:\n{checks_yaml}")
        cfg.chmod(0o644)
        argv = [sys.executable, "-m", "agent.cli", "check", "--json", "--no-spool", "--config", str(cfg)]
        for kind in only or []:
            argv += ["--only", kind]
        out = lab.run(lab.gw, [*(NOBODY if as_nobody else []), *argv])
    finally:
        shutil.rmtree(where, ignore_errors=True)
    assert out.returncode in (0, 1, 3), f"exit {out.returncode}: {out.stderr[-3000:]}"  # 3: not fully checked
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return json.loads(out.stdout)


def by_kind(envelope: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for c in envelope["checks"]:
        out.setdefault(c["kind"], []).append(c)
    return out
