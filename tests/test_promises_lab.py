"""End to end in the line lab: the real agent measures an emulated line, the collector judges the promise.

Three lines promised 500/300: one shaped at 100/50 (not delivered → a ticket to the carrier), one
shaped at 500/300 (delivered), one whose gateway WAN port negotiated only 100 Mbit/s (limited by
local equipment → a ticket to the customer saying what to fix). The agent's JSON envelopes go
through the collector's own validation and storage, then the ledger judges them.

Two agent runs per line keep this test short, so the criterion here asks for 2 valid tests at 75%
confidence (every test passing then clears the 80% bound); docs/promises.md shows the defaults.
The lab's "gateway" is a namespace on a host shared with everything else running, so its CPU figure
says nothing about a gateway: the CPU exclusion is off here (it is table-tested in
test_promises_speed.py).
Set LINECHECK_SAMPLE_DIR to also write the delivered line's acceptance report there (docs/ holds one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from collector.fleet import registry
from collector.ingest.worker import validate
from collector.promises import acceptance, ledger
from collector.promises.consequences import LOCAL_CLASS, run_ledger
from collector.promises.criterion import PromisePolicy, SpeedCriterion
from collector.promises.model import Outcome, SpeedPromise
from collector.store.database import Store
from collector.tickets import lifecycle as tickets
from linecheck.wire import ResultEnvelope, results_topic
from tests.lab import SERVER_ADDR, LineLab

pytestmark = pytest.mark.lab

POLICY = PromisePolicy(speed=SpeedCriterion(min_valid_tests=2, confidence=0.75, cpu_saturated_pct=None))
RUNS = 2
LINES = {"slow": "lab-line-slow", "fast": "lab-line-fast", "port": "lab-line-port"}


@pytest.fixture
def served(lab: LineLab) -> Iterator[LineLab]:
    proc = lab.popen(lab.carrier, [sys.executable, "-m", "testserver.cli", "--listen", f"{SERVER_ADDR}:8080",
                                   "--no-stamp"], stdout=subprocess.PIPE)
    assert proc.stdout is not None and b"http listening" in proc.stdout.readline()
    yield lab


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/collector.db")
    data = registry.Registry.model_validate({
        "tenants": [{"tenant_id": "lab-carrier", "name": "Lab Telecom", "kind": "carrier"},
                    {"tenant_id": "lab-office", "name": "实验室贸易有限公司 Lab Trading", "kind": "enterprise",
                     "parent_id": "lab-carrier"}],
        "sites": [{"site_id": "lab-site", "tenant_id": "lab-office", "name": "Lab office", "district": "Xuhui",
                   "address": "198 Benchmark Road, Shanghai"}],
        "lines": [{"line_id": line, "tenant_id": "lab-office", "site_id": "lab-site", "segment": "sme",
                   "name": f"{case} line", "plan_down_mbps": 500, "plan_up_mbps": 300, "account_since": "2019-04-01"}
                  for case, line in LINES.items()]})
    promises = [SpeedPromise(id=f"{line}-upgrade", line_id=line, effective=date.today() - timedelta(days=60),
                             down_mbps=500, up_mbps=300, note="free upgrade to 500M (Shanghai 2022 action plan)")
                for line in LINES.values()]
    with s.engine.begin() as conn:
        registry.import_registry(conn, data)
        ledger.import_promises(conn, promises)
    yield s
    s.close()


def agent_run(lab: LineLab, tmp_path: Path, line: str) -> ResultEnvelope:
    """One `linecheck-agent check` in the gateway namespace, its envelope validated as the collector does."""
    agent = f"{line}-gw"
    cfg = tmp_path / f"{agent}.yaml"
    cfg.write_text(f"agent_id: {agent}\nline_id: {line}\nsite_id: lab-site\ndata_dir: {tmp_path}/{agent}\n"
                   f"line: {{wan_interface: {lab.gw_if}, plan_down_mbps: 500, plan_up_mbps: 300, "
                   f"test_server: '{SERVER_ADDR}:8080'}}\n"
                   "checks:\n  link: {window_s: 0.2}\n"
                   "  throughput: {max_direction_s: 3, min_measure_s: 0.5, timeout_s: 40}\n")
    out = lab.run(lab.gw, [sys.executable, "-m", "agent.cli", "check", "--json", "--no-spool", "--config", str(cfg)])
    assert out.stdout, out.stderr
    envelope = json.loads(out.stdout)
    envelope["seq"] = envelope.get("seq") or 1
    checked = validate(results_topic(agent), json.dumps(envelope).encode(), 256 * 1024)
    assert checked.envelope is not None, checked.reason
    return checked.envelope


def measure(lab: LineLab, tmp_path: Path, store: Store, line: str) -> list[ResultEnvelope]:
    runs = []
    for i in range(RUNS):
        e = agent_run(lab, tmp_path, line)
        runs.append(e.model_copy(update={"seq": i + 1}))
    store.ingest(runs)
    return runs


def test_promised_500_300_judged_from_real_agent_runs(served: LineLab, store: Store, tmp_path: Path) -> None:
    served.shape(100, 50)
    measure(served, tmp_path, store, LINES["slow"])
    served.shape(500, 300)
    fast_runs = measure(served, tmp_path, store, LINES["fast"])
    served.slow_wan_port(100)  # the gateway's WAN port negotiated 100 Mbit/s (and carries no more)
    measure(served, tmp_path, store, LINES["port"])

    with store.engine.begin() as conn:
        run = run_ledger(conn, POLICY, datetime.now(UTC) + timedelta(seconds=1))
    verdicts = {v.line_id: v for v in run.verdicts}
    slow, fast, port = (verdicts[LINES[k]] for k in ("slow", "fast", "port"))

    assert slow.outcome is Outcome.NOT_DELIVERED, slow.summary
    down = slow.detail["directions"]["down"]
    assert down["all"]["valid"] == RUNS and down["all"]["passed"] == 0
    assert all(t["value_mbps"] < 110 for t in down["tests"])

    assert fast.outcome is Outcome.DELIVERED, fast.summary
    assert fast.detail["directions"]["down"]["all"]["passed"] == RUNS
    assert fast.detail["directions"]["up"]["all"]["passed"] == RUNS
    assert all(t["source"] == "capacity_down_mbps" for t in fast.detail["directions"]["down"]["tests"])

    assert port.outcome is Outcome.LIMITED, port.summary
    assert port.detail["directions"]["down"]["excluded"] == {"wan_port_below_promise": RUNS}
    assert "negotiated only 100 Mbit/s" in port.fixes[0]

    with store.engine.connect() as conn:
        carrier = tickets.open_ticket_for(conn, LINES["slow"], "upgrade_not_delivered")
        customer = tickets.open_ticket_for(conn, LINES["port"], LOCAL_CLASS)
        assert carrier is not None and customer is not None
        assert tickets.open_ticket_for(conn, LINES["fast"], "upgrade_not_delivered") is None
        assert {e.result_id for e in tickets.evidence(conn, carrier.ticket_id)} == {
            t["result_id"] for t in down["tests"]}
        assert "cable" in customer.summary

        sample_dir = os.environ.get("LINECHECK_SAMPLE_DIR")
        if sample_dir:
            key = acceptance.load_or_create_key(tmp_path / "sample-signing.key")
            acceptance.write_report(conn, fast, Path(sample_dir), key, POLICY.speed.zone, "王伟 Wang Wei (T-0117)",
                                    "李娜 Li Na")
    assert {e.result_id for e in fast_runs} == {t["result_id"] for t in fast.detail["directions"]["up"]["tests"]}
