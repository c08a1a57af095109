"""bench/reopening.py at small scale: one district (12,388 lines) reopening with three failed PON ports
(64, 128 and a partial one), a failed central-office uplink, 2 % single-line faults, closed offices
and one-report blips. The correlation finds exactly the failed nodes and tickets exactly the single
faults (>= 0.98 precision and recall), with far fewer dispatches than one per failing line."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import reopening  # noqa: E402

from collector.incidents.decide import IncidentConfig  # noqa: E402


def test_reopening_wave_scores() -> None:
    w = reopening.build(10_000, seed=11, single_pct=2.0, closed_pct=10.0, wave_h=3.0)
    r = reopening.simulate(w, IncidentConfig(), interval_s=300, pass_s=60, horizon_h=4.0, seed=11)
    s = reopening.score(w, r)
    assert s["wrong_incidents"] == [] and s["missed_nodes"] == [], s
    assert s["incident_precision"] == 1.0 and s["incident_recall"] == 1.0
    assert s["ticket_precision"] >= 0.98 and s["ticket_recall"] >= 0.98, s
    assert s["ratio_with_vs_without"] < 0.25, s
    # Every incident within two report intervals and the hold of the node's first failing result.
    assert all(v is not None and v <= 2 * 300 + IncidentConfig().hold_s for v in
               s["first_result_to_incident_s"].values()), s  # type: ignore[union-attr]
