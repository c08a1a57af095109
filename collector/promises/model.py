"""What was promised for a line: five kinds, each with an effective date and a grace window.

Promises are data (imported from YAML/CSV or through the API); `kind` picks the model. Dates are
local dates in the criterion's time zone. Nothing here judges anything: see speed.py, wifi.py,
billing.py and continuity.py.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, field_validator, model_validator

from linecheck.configfile import Strict
from linecheck.wire import ID_PATTERN

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class Outcome(StrEnum):
    DELIVERED = "delivered"
    NOT_DELIVERED = "not_delivered"
    INCONCLUSIVE = "inconclusive"
    LIMITED = "limited_by_local_equipment"

    @property
    def severity(self) -> int:
        """Combining parts of a verdict: the worst part wins (a breach outranks a local limit)."""
        return {"delivered": 0, "inconclusive": 1, "limited_by_local_equipment": 2, "not_delivered": 3}[self.value]


# The outcomes that answer "is the promise kept?". `inconclusive` says "not yet" and
# `limited_by_local_equipment` says the office's equipment keeps the line from being judged, and a verdict
# in its grace window is provisional: none of these is a judgement. The share delivered of a group is
# delivered / judged (both past the grace window); with nothing judged there is no share (null, "not yet
# judged"), never 0 % — a zero would say "judged and not delivered" (issue 23).
DECISIVE = (Outcome.DELIVERED, Outcome.NOT_DELIVERED)


def delivered_share(delivered: int, judged: int) -> float | None:
    """Delivered promises among the judged ones, or None when none is judged yet."""
    return delivered / judged if judged else None


def worst(outcomes: list[Outcome]) -> Outcome:
    return max(outcomes, key=lambda o: o.severity) if outcomes else Outcome.INCONCLUSIVE


def parse_period(value: str) -> tuple[int, int]:
    m = _PERIOD.match(value)
    if not m:
        raise ValueError(f"expected a billing period YYYY-MM, got {value!r}")
    return int(m.group(1)), int(m.group(2))


def period_end(period: str) -> date:
    """The last day of a YYYY-MM period."""
    y, m = parse_period(period)
    first_next = date(y + (m == 12), m % 12 + 1, 1)
    return first_next - timedelta(days=1)


def periods_between(first: str, last: str) -> list[str]:
    y, m = parse_period(first)
    end = parse_period(last)
    out = []
    while (y, m) <= end:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _period(value: str) -> str:
    parse_period(value)
    return value


class PromiseBase(Strict):
    id: str = Field(pattern=ID_PATTERN, description="Stable id of this promise (unique across the fleet)")
    line_id: str = Field(pattern=ID_PATTERN)
    effective: date = Field(description="Local date the promise takes effect")
    grace_days: int | None = Field(default=None, ge=0, le=365,
                                   description="Days before it can be judged; null = the policy default")
    note: str | None = Field(default=None, max_length=500, description="Where the promise comes from")

    def effective_at(self, zone: tzinfo) -> datetime:
        return datetime.combine(self.effective, time(0), zone)

    def due_at(self, zone: tzinfo) -> datetime:
        """When the promise must be kept; the grace window starts here. Kinds with a period override it."""
        return self.effective_at(zone)

    def judgeable_from(self, zone: tzinfo, default_grace_days: int) -> datetime:
        grace = default_grace_days if self.grace_days is None else self.grace_days
        return self.due_at(zone) + timedelta(days=grace)


class SpeedStep(Strict):
    """The promise rises with account age (e.g. upload to gigabit after some years as a customer)."""

    after_months: int = Field(ge=1, le=600, description="Account age in months at which this step applies")
    down_mbps: float | None = Field(default=None, gt=0)
    up_mbps: float | None = Field(default=None, gt=0)


class SpeedPromise(PromiseBase):
    kind: Literal["speed"] = "speed"
    down_mbps: float = Field(gt=0, le=100000)
    up_mbps: float | None = Field(default=None, gt=0, le=100000, description="null = upload not promised")
    steps: list[SpeedStep] = Field(default_factory=list)

    @field_validator("steps")
    @classmethod
    def _ordered(cls, steps: list[SpeedStep]) -> list[SpeedStep]:
        months = [s.after_months for s in steps]
        if months != sorted(set(months)):
            raise ValueError("steps must be in increasing after_months order, each once")
        return steps

    def rates_at(self, at: date, account_since: date | None) -> tuple[float, float | None]:
        """(down, up) promised on `at`, after the steps the account's age has reached."""
        down, up = self.down_mbps, self.up_mbps
        if account_since is None:
            return down, up
        age = (at.year - account_since.year) * 12 + at.month - account_since.month - (at.day < account_since.day)
        for step in self.steps:
            if age >= step.after_months:
                down = step.down_mbps or down
                up = step.up_mbps or up
        return down, up


class WifiCoveragePromise(PromiseBase):
    kind: Literal["wifi_coverage"] = "wifi_coverage"
    rooms: dict[str, float] = Field(min_length=1, description="Room label -> minimum Mbit/s to the gateway")

    @field_validator("rooms")
    @classmethod
    def _positive(cls, rooms: dict[str, float]) -> dict[str, float]:
        for label, mbps in rooms.items():
            if not label.strip() or len(label) > 64:
                raise ValueError("room labels must be 1-64 characters")
            if mbps <= 0:
                raise ValueError(f"room {label!r}: minimum must be above 0 Mbit/s")
        return rooms


class TariffReductionPromise(PromiseBase):
    kind: Literal["tariff_reduction"] = "tariff_reduction"
    percent: float = Field(gt=0, lt=100, description="Promised reduction of the charge, in percent")
    reference_period: str = Field(description="YYYY-MM billed before (e.g. the end of last year)")
    period: str = Field(description="YYYY-MM whose charge must be lower by `percent`")
    products: list[str] | None = Field(default=None, description="Billing products compared; null = all")

    _p1 = field_validator("reference_period", "period")(lambda v: _period(v))

    def due_at(self, zone: tzinfo) -> datetime:
        after = period_end(self.period) + timedelta(days=1)  # the period's bill exists only after it ends
        return max(self.effective_at(zone), datetime.combine(after, time(0), zone))

    @model_validator(mode="after")
    def _order(self) -> TariffReductionPromise:
        if parse_period(self.period) <= parse_period(self.reference_period):
            raise ValueError("period must come after reference_period")
        return self


class ServiceContinuityPromise(PromiseBase):
    kind: Literal["service_continuity"] = "service_continuity"
    start: date = Field(description="First local day the line must not be suspended")
    end: date = Field(description="Last local day of the protection (inclusive)")

    def due_at(self, zone: tzinfo) -> datetime:
        return datetime.combine(self.start, time(0), zone)

    def window(self, zone: tzinfo) -> tuple[datetime, datetime]:
        return (datetime.combine(self.start, time(0), zone),
                datetime.combine(self.end + timedelta(days=1), time(0), zone))

    @model_validator(mode="after")
    def _order(self) -> ServiceContinuityPromise:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self


class FeeWaiverPromise(PromiseBase):
    kind: Literal["fee_waiver"] = "fee_waiver"
    months: float = Field(gt=0, le=24, description="Months of rent to be waived")
    first_period: str = Field(description="YYYY-MM: waivers count from this period")
    last_period: str = Field(description="YYYY-MM: ... up to and including this one")
    products: list[str] | None = Field(default=None, description="Billing products whose rent is waived; null = all")

    _p2 = field_validator("first_period", "last_period")(lambda v: _period(v))

    def due_at(self, zone: tzinfo) -> datetime:
        after = period_end(self.last_period) + timedelta(days=1)
        return max(self.effective_at(zone), datetime.combine(after, time(0), zone))

    @model_validator(mode="after")
    def _order(self) -> FeeWaiverPromise:
        if parse_period(self.last_period) < parse_period(self.first_period):
            raise ValueError("last_period must not come before first_period")
        return self


Promise = Annotated[
    SpeedPromise | WifiCoveragePromise | TariffReductionPromise | ServiceContinuityPromise | FeeWaiverPromise,
    Field(discriminator="kind"),
]
PROMISE_ADAPTER: TypeAdapter[Promise] = TypeAdapter(Promise)
KINDS = ("speed", "wifi_coverage", "tariff_reduction", "service_continuity", "fee_waiver")
