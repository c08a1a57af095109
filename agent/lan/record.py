"""Turn what a LAN/WiFi client measured into a `wifi_throughput` result: one envelope per room
test, judged against the room's target and localised from the station's radio figures."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent import envelope as envelopes
from agent.findings import finding
from agent.lan.settings import valid_room
from agent.lan.station import StationView
from agent.localise import localise
from agent.reasons import because, reason_fields
from linecheck.catalogue import WIFI_THROUGHPUT
from linecheck.wire import CheckResult, Finding, MetricValue, Status, Trigger, Verdict

KIND = WIFI_THROUGHPUT


class ClientResult(BaseModel):
    """What the page or the CLI posts to /api/result. A client whose test failed says why in `error`."""

    model_config = ConfigDict(extra="forbid")
    room: str
    down_mbps: float | None = Field(default=None, ge=0, le=100_000)
    up_mbps: float | None = Field(default=None, ge=0, le=100_000)
    latency_ms: float | None = Field(default=None, ge=0, le=60_000)
    jitter_ms: float | None = Field(default=None, ge=0, le=60_000)
    down_bytes: int | None = Field(default=None, ge=0)
    up_bytes: int | None = Field(default=None, ge=0)
    duration_s: float | None = Field(default=None, ge=0, le=3600)
    client: str = Field(default="unknown", max_length=40, description="browser | cli | ...")
    error: str | None = Field(default=None, max_length=500)

    @field_validator("room")
    @classmethod
    def _room(cls, room: str) -> str:
        return valid_room(room)

    @field_validator("down_mbps", "up_mbps", "latency_ms", "jitter_ms", "duration_s")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number or null")
        return value


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def judge(result: ClientResult, view: StationView, target_mbps: float | None) -> tuple[CheckResult, list[Finding]]:
    metrics: dict[str, MetricValue] = {
        "down_mbps": _r(result.down_mbps), "up_mbps": _r(result.up_mbps), "latency_ms": _r(result.latency_ms),
        "jitter_ms": _r(result.jitter_ms), "down_bytes": result.down_bytes, "up_bytes": result.up_bytes,
        "target_mbps": target_mbps, **view.metrics}
    if result.error or (result.down_mbps is None and result.up_mbps is None):
        reason = because("room_test_failed", room=result.room, diagnostic=result.error[:500]) if result.error \
            else because("room_test_no_figure", room=result.room)
        # a failed test is a record with a reason and null figures, never a zero
        metrics.update(down_mbps=None, up_mbps=None)
        return CheckResult(kind=KIND, status=Status.FAILED, **reason_fields(reason), metrics=metrics, duration_s=0.0,
                           target=result.room), []
    measured = min(v for v in (result.down_mbps, result.up_mbps) if v is not None)
    if target_mbps is None or measured >= target_mbps:
        return CheckResult(kind=KIND, status=Status.OK, metrics=metrics, duration_s=result.duration_s or 0.0,
                           target=result.room), []
    wifi = view.metrics.get("station_found_flag") == 1
    detail: dict[str, MetricValue | str] = {"room": result.room, "measured_mbps": round(measured, 1),
                                            "target_mbps": target_mbps, "client": view.ip}
    if view.mac:
        detail["station"] = view.mac
    code = "wifi_throughput_low" if wifi else "lan_throughput_low"
    slow = finding(code, "warning", KIND,
                   f"The test from {result.room} reached {measured:g} Mbit/s, below its {target_mbps:g} Mbit/s target.",
                   detail)
    below = because("room_test_slow", measured_mbps=measured, target_mbps=target_mbps)
    return CheckResult(kind=KIND, status=Status.DEGRADED, **reason_fields(below), metrics=metrics,
                       duration_s=result.duration_s or 0.0, target=result.room), [slow]


def envelope(agent_id: str, line_id: str, site_id: str, result: ClientResult, view: StationView,
             target_mbps: float | None, wifi_cfg: object | None = None) -> envelopes.Draft:
    """One envelope per room test: a draft (agent/envelope.py) the spool numbers when it stores it."""
    check, findings = judge(result, view, target_mbps)
    findings = localise([check], findings, wifi_cfg)  # type: ignore[arg-type]
    verdict = Verdict.PROBLEMS if findings or check.status is not Status.OK else Verdict.HEALTHY
    return envelopes.draft(agent_id=agent_id, line_id=line_id, site_id=site_id, trigger=Trigger.MANUAL,
                           trigger_info={"source": "lan_test", "room": result.room, "client": result.client},
                           checks=[check], verdict=verdict, findings=findings)
