"""One entry point for every kind: a promise, the evidence about its line, the policy, a time → a PromiseVerdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from collector.promises.billing import BillingRecord, evaluate_tariff, evaluate_waiver
from collector.promises.continuity import Suspension, evaluate_continuity
from collector.promises.criterion import PromisePolicy
from collector.promises.model import (
    FeeWaiverPromise,
    PromiseBase,
    ServiceContinuityPromise,
    SpeedPromise,
    TariffReductionPromise,
    WifiCoveragePromise,
)
from collector.promises.speed import SpeedSample, evaluate_speed
from collector.promises.verdict import PromiseVerdict
from collector.promises.wifi import WifiSample, evaluate_wifi


@dataclass
class LineEvidence:
    """Everything known about one line that a promise could rest on (ledger.py loads it from the store)."""

    line_id: str
    account_since: date | None = None
    speed: list[SpeedSample] = field(default_factory=list)
    wifi: list[WifiSample] = field(default_factory=list)
    billing: list[BillingRecord] = field(default_factory=list)
    suspensions: list[Suspension] = field(default_factory=list)
    report_times: list[datetime] = field(default_factory=list)


def grace_days(promise: PromiseBase, policy: PromisePolicy) -> int:
    return policy.grace_days.for_kind(promise.kind) if promise.grace_days is None else promise.grace_days  # type: ignore[attr-defined]


def evaluate(promise: PromiseBase, evidence: LineEvidence, policy: PromisePolicy, now: datetime) -> PromiseVerdict:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    crit = policy.speed
    grace = grace_days(promise, policy)
    judgeable = promise.judgeable_from(crit.zone, grace)
    if isinstance(promise, SpeedPromise):
        return evaluate_speed(promise, evidence.speed, crit, now, grace, evidence.account_since).as_verdict()
    if isinstance(promise, WifiCoveragePromise):
        return evaluate_wifi(promise, evidence.wifi, crit, now, grace)
    if isinstance(promise, TariffReductionPromise):
        return evaluate_tariff(promise, evidence.billing, now, judgeable)
    if isinstance(promise, FeeWaiverPromise):
        return evaluate_waiver(promise, evidence.billing, now, judgeable)
    if isinstance(promise, ServiceContinuityPromise):
        return evaluate_continuity(promise, evidence.suspensions, evidence.report_times, policy.continuity, now,
                                   judgeable, crit.zone)
    raise TypeError(f"no judge for promise kind {type(promise).__name__}")
