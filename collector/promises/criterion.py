"""The declared criterion a carrier's promises are judged by (the `promises:` section of the collector config).

Defaults follow the spirit of the FCC's Measuring Broadband America "80/80": a line delivers its
promised rate when at least 80% of valid tests reach at least 80% of that rate, with peak hours
(19-23 local) reported separately; a Wilson bound at 95% one-sided confidence decides whether the
tests are enough to say so. Ofcom's 30 days to fix a speed shortfall is the default grace window.
docs/promises.md explains each setting and how a carrier changes it.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from linecheck.configfile import Strict


class PeakHours(Strict):
    start_hour: int = Field(default=19, ge=0, le=23, description="First local hour of the peak period")
    end_hour: int = Field(default=23, ge=1, le=24, description="Local hour the peak ends (exclusive); "
                                                              "smaller than start_hour wraps past midnight")

    def contains(self, local: datetime) -> bool:
        h = local.hour
        if self.start_hour < self.end_hour:
            return self.start_hour <= h < self.end_hour
        return h >= self.start_hour or h < self.end_hour

    def label(self) -> str:
        return f"{self.start_hour:02d}:00-{self.end_hour % 24:02d}:00"


class SpeedCriterion(Strict):
    rate_fraction: float = Field(default=0.8, gt=0, le=1.5,
                                 description="A test passes when it reaches this share of the promised rate")
    required_share: float = Field(default=0.8, gt=0, lt=1,
                                  description="At least this share of valid tests must pass")
    confidence: float = Field(default=0.95, ge=0.5, lt=1,
                              description="One-sided confidence of the Wilson bound that decides the verdict")
    min_valid_tests: int = Field(default=10, ge=1, description="Below this many valid tests: inconclusive")
    window_days: float = Field(default=30, gt=0, description="Tests older than this are not considered")

    @property
    def fewest_deciding_tests(self) -> int:
        """min_valid_tests, or more when the confidence needs more all-passing tests (stats.fewest_deciding_tests)."""
        from collector.promises.stats import fewest_deciding_tests

        return fewest_deciding_tests(self.min_valid_tests, self.required_share, self.confidence)
    timezone: str = Field(default="Asia/Shanghai", description="IANA zone for peak hours and promise dates")
    peak_hours: PeakHours = Field(default_factory=PeakHours)
    decide_on: Literal["all", "peak"] = Field(
        default="all", description="Which tests decide the verdict; the other split is still reported")
    cpu_saturated_pct: float | None = Field(
        default=90, gt=0, le=100,
        description="Gateway CPU at or above this during a test excludes it; null: never (an agent on a "
                    "shared host, not the gateway, sees other work's CPU)")
    local_limit_share: float = Field(
        default=0.5, gt=0, le=1,
        description="When the valid tests cannot decide and at least this share of tests was excluded "
                    "for local equipment, the verdict is limited_by_local_equipment")
    wifi_rate_fraction: float = Field(
        default=1.0, gt=0, le=1.5, description="A room's WiFi test passes at this share of the room's minimum")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone such as Asia/Shanghai") from None
        return name

    @property
    def zone(self) -> tzinfo:
        return ZoneInfo(self.timezone)

    @property
    def threshold_label(self) -> str:
        return f"{self.required_share:.0%} of valid tests reach {self.rate_fraction:.0%} of the promised rate"


class ContinuityCriterion(Strict):
    max_silence_hours: float = Field(
        default=26, gt=0, description="A gap in the agent's reports longer than this leaves the window unproven")


class GraceDays(Strict):
    """Days after a promise is due before a breach counts (a promise may override its own)."""

    speed: int = Field(default=30, ge=0, le=365, description="Ofcom gives 30 days to fix a speed shortfall")
    wifi_coverage: int = Field(default=30, ge=0, le=365)
    tariff_reduction: int = Field(default=15, ge=0, le=365, description="Bills arrive after the period ends")
    service_continuity: int = Field(default=0, ge=0, le=365, description="A suspension is a breach at once")
    fee_waiver: int = Field(default=15, ge=0, le=365)

    def for_kind(self, kind: str) -> int:
        return int(getattr(self, kind))


class PromisePolicy(Strict):
    """Everything a carrier declares about judging promises."""

    speed: SpeedCriterion = Field(default_factory=SpeedCriterion)
    continuity: ContinuityCriterion = Field(default_factory=ContinuityCriterion)
    grace_days: GraceDays = Field(default_factory=GraceDays)
    open_tickets: bool = Field(default=True, description="Open tickets for not_delivered / local limits")
    signing_key_file: Path = Field(default=Path("acceptance-signing.key"),
                                   description="Ed25519 key that signs acceptance reports (created 0600 if absent)")
