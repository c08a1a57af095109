"""WiFi coverage verdicts: does every promised room reach its minimum rate to the gateway?

Evidence is the WiFi throughput tests a device runs to the gateway from a room (the agent records
them with the room's label). Each room is judged like a speed promise (speed.estimate: pass share,
Wilson bound, minimum test count), a test passing at `wifi_rate_fraction` of the room's minimum;
a test's figure is the slower of its two directions, because "gigabit WiFi in every room" holds
only if both do. WiFi is local by nature, so nothing is excluded as local equipment; failed
tests are counted as not measured. The promise is the worst of its rooms: a room without tests
keeps it inconclusive.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from collector.promises.criterion import SpeedCriterion
from collector.promises.model import Outcome, WifiCoveragePromise, worst
from collector.promises.speed import Exclusion, ShareEstimate, estimate, window_for
from collector.promises.verdict import PromiseVerdict, jsonable, says, summary_of
from linecheck.i18n.phrases import Phrase


@dataclass(frozen=True)
class WifiSample:
    result_id: str
    at: datetime
    room: str
    down_mbps: float | None = None  # gateway -> device
    up_mbps: float | None = None  # device -> gateway
    status: str = "ok"
    reason: str | None = None
    agent_id: str = ""

    @property
    def figure(self) -> float | None:
        present = [v for v in (self.down_mbps, self.up_mbps) if v is not None]
        return min(present) if present else None


@dataclass(frozen=True)
class RoomTest:
    result_id: str
    at: datetime
    room: str
    minimum_mbps: float
    value_mbps: float | None
    excluded: Exclusion | None
    passed: bool | None
    agent_id: str = ""

    @property
    def ratio(self) -> float | None:
        return None if self.value_mbps is None else self.value_mbps / self.minimum_mbps


@dataclass(frozen=True)
class RoomVerdict:
    room: str
    minimum_mbps: float
    outcome: Outcome
    estimate: ShareEstimate
    not_measured: int
    reason: str  # English; `said` is the same as a phrase (linecheck/i18n [verdicts])
    tests: list[RoomTest]
    said: Phrase | None = None


def _room(room: str, minimum: float, samples: Sequence[WifiSample], crit: SpeedCriterion) -> RoomVerdict:
    threshold = minimum * crit.wifi_rate_fraction
    tests = []
    for s in sorted(samples, key=lambda x: x.at):
        value = s.figure
        excluded = Exclusion.NOT_MEASURED if value is None else None
        tests.append(RoomTest(s.result_id, s.at, room, minimum, value, excluded,
                              None if value is None else value >= threshold, s.agent_id))
    est = estimate("all", tests, crit)
    missing = Counter(t.excluded for t in tests)[Exclusion.NOT_MEASURED]
    args = {"room": room, "passed": est.passed, "valid": est.valid, "threshold": threshold,
            "confidence": crit.confidence, "lower": est.lower, "upper": est.upper, "needed": est.tests_needed}
    if est.valid == 0:
        said = says("room_no_test", **args)
    else:
        then = ("room_delivered" if est.outcome is Outcome.DELIVERED else
                "room_not_delivered" if est.outcome is Outcome.NOT_DELIVERED else
                "room_on_threshold" if est.tests_needed is None else "room_need_more")
        said = says("room_direction", base=says("room_base", **args), then=says(then, **args))
    return RoomVerdict(room, minimum, est.outcome, est, missing, summary_of([said]), tests, said)


def evaluate_wifi(promise: WifiCoveragePromise, samples: Sequence[WifiSample], crit: SpeedCriterion,
                  now: datetime, grace_days: int = 30) -> PromiseVerdict:
    start, judgeable, in_grace = window_for(promise, crit, now, grace_days)
    inside = [s for s in samples if start <= s.at <= now]
    rooms = [_room(label, minimum, [s for s in inside if s.room == label], crit)
             for label, minimum in promise.rooms.items()]
    outcome = worst([r.outcome for r in rooms])
    said = [says(f"wifi_head_{outcome.value}")]
    if in_grace:
        said.append(says("provisional", until=judgeable.date().isoformat()))
    said += [r.said for r in rooms if r.said is not None]
    ratios = [r.estimate.median_ratio for r in rooms if r.estimate.median_ratio is not None]
    return PromiseVerdict(
        promise_id=promise.id, line_id=promise.line_id, kind="wifi_coverage", outcome=outcome, said=said,
        summary=summary_of(said), evaluated_at=now, judgeable_from=judgeable,
        in_grace=in_grace, delivered_ratio=min(ratios) if ratios else None,
        detail={"criterion": crit.model_dump(mode="json"), "promise": promise.model_dump(mode="json"),
                "window": {"start": start.isoformat(), "end": now.isoformat()},
                "rooms": {r.room: jsonable(r) for r in rooms}})
