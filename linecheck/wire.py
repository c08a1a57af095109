"""The wire format: what an agent publishes and what the collector answers.

Both sides import this module; nothing else defines message shapes. Version 1 of the
result envelope is `schema: 1`. A change that old collectors cannot read bumps the number.
`docs/result.schema.json` is generated from `ResultEnvelope` (see `linecheck.schema`) and a
test keeps it in sync.
"""

from __future__ import annotations

import math
import os
import re
import time
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

SCHEMA_VERSION = 1
# The kind of the agent's own pseudo-check (spool and delivery counters), not a check of the line.
AGENT_CHECK = "agent"

# Mosquitto rejects '+' and '#' in usernames but not '/', which would let an id escape its
# topic subtree; so ids are restricted at enrolment and again on every message.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_ID_RE = re.compile(ID_PATTERN)

# Metric names carry their unit as a suffix (rtt_avg_ms, down_mbps); see linecheck/metrics.csv.
METRIC_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
_METRIC_NAME_RE = re.compile(METRIC_NAME_PATTERN)  # compiled once: every metric of every result passes here
_GOOD_METRIC_NAMES: set[str] = set()  # names already checked (a fleet uses a few dozen; ingest checks millions)

Ident = Annotated[str, Field(pattern=ID_PATTERN)]


def valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


class Status(StrEnum):
    """Outcome of one check. Ordered from best to worst by `Status.rank`."""

    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"
    ERROR = "error"  # the check itself broke (bug, missing tool): says nothing about the line
    SKIPPED = "skipped"  # not run: not applicable, not permitted, deferred by a gate

    @property
    def rank(self) -> int:
        return {"ok": 0, "skipped": 0, "degraded": 1, "error": 1, "failed": 2}[self.value]


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    RESUME_AFTER_IDLE = "resume_after_idle"
    IDLE_WATCHDOG = "idle_watchdog"
    MANUAL = "manual"
    REMOTE = "remote"
    RETEST = "retest"


class Verdict(StrEnum):
    HEALTHY = "healthy"
    PROBLEMS = "problems"
    UNKNOWN = "unknown"  # nothing could be measured (every check errored or was skipped)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# Bounds of what the wire accepts: every value that passes is one the store, the charts and the console can
# handle (a 440-byte message with an out-of-range date once stopped ingest for the whole fleet).
# Numbers: finite and |x| <= 1e15 (a day of 10 Gbit/s is ~1e14 bytes; past 2**53 a float stops counting
# in ones, and the charts' axes must stay computable). Tiny magnitudes (1e-12) are fine to store.
NUMBER_BOUND = 1e15
# Timestamps: from 1970 (a gateway without a real-time clock boots at the epoch: flagged `unset_clock`,
# kept as evidence) to 2100 (nothing plausible is later; far-future years overflowed offset arithmetic).
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)
SHORT_TEXT = 1000  # free-text values inside trigger_info and finding details (as long as a finding message)
SMALL_DICT = 32  # entries of trigger_info and of a finding's detail
METRICS_MAX = 200  # metrics of one check

# Strict: a boolean or a numeric string is a bug in the check, not a number; NaN and Infinity are refused
# (JSON has no such numbers; Python's json module writes them anyway).
Number = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-NUMBER_BOUND, le=NUMBER_BOUND)]
Integer = Annotated[int, Strict(), Field(ge=-int(NUMBER_BOUND), le=int(NUMBER_BOUND))]
MetricValue = Number | Integer | None
ShortText = Annotated[str, Field(max_length=SHORT_TEXT)]
InfoKey = Annotated[str, Field(min_length=1, max_length=64)]


REASON_PARTS_MAX = 8  # phrases of one check's reason


class ReasonPart(_Strict):
    """One phrase of a check's reason: a key of linecheck/i18n [reasons] and the values its template names.
    Readers render it in their language (linecheck/i18n/phrases.py); `reason` is the same in English."""

    key: str = Field(pattern=METRIC_NAME_PATTERN, max_length=64)
    args: dict[InfoKey, MetricValue | ShortText] = Field(default_factory=dict, max_length=SMALL_DICT)


class CheckResult(_Strict):
    """One check's outcome. A metric the check could not measure is null, never zero."""

    kind: str = Field(pattern=METRIC_NAME_PATTERN, max_length=40)
    status: Status
    reason: str | None = Field(default=None, max_length=2000, description="Human text (English); null when ok")
    reason_parts: list[ReasonPart] = Field(
        default_factory=list, max_length=REASON_PARTS_MAX,
        description="The reason as catalogued phrases (linecheck/i18n [reasons]), for readers in other languages; "
                    "empty when the reason is not catalogued (readers show `reason`)")
    metrics: dict[str, MetricValue] = Field(default_factory=dict, max_length=METRICS_MAX)
    duration_s: Number = Field(ge=0)
    target: str | None = Field(default=None, max_length=255, description="What was probed, if one thing")

    @field_validator("metrics", mode="before")
    @classmethod
    def _no_nan(cls, metrics: object) -> object:
        # Before the type check, so the agent's author reads what to do instead of a union's errors.
        for name, value in metrics.items() if isinstance(metrics, dict) else ():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"metric {name!r} is {value}; use null for what was not measured")
        return metrics

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, metrics: dict[str, MetricValue]) -> dict[str, MetricValue]:
        for name in metrics:
            if name not in _GOOD_METRIC_NAMES:
                if not _METRIC_NAME_RE.match(name) or len(name) > 64:
                    raise ValueError(f"metric name {name!r} must be lower_snake_case with a unit suffix")
                if len(_GOOD_METRIC_NAMES) < 10_000:  # bounded: names come from agents
                    _GOOD_METRIC_NAMES.add(name)
        return metrics


class Finding(_Strict):
    """A problem the agent concluded from its checks, with a stable code the collector's rules use."""

    code: str = Field(pattern=METRIC_NAME_PATTERN, max_length=64)
    severity: Literal["warning", "critical"]
    check: str | None = Field(default=None, max_length=40)
    where: str | None = Field(
        default=None, max_length=40, description="Localisation: wan, cpe, lan, wifi, dns, service, agent"
    )
    message: str = Field(max_length=1000, description="One plain-language sentence (English)")
    detail: dict[InfoKey, MetricValue | ShortText] = Field(default_factory=dict, max_length=SMALL_DICT)


class ClockState(_Strict):
    """Whether the agent's clock can be trusted (kernel NTP state via adjtimex)."""

    synced: bool | None = None
    source: str | None = Field(default=None, max_length=64)
    max_error_ms: Number | None = None


class ResultEnvelope(_Strict):
    schema_: Literal[1] = Field(default=1, alias="schema")
    result_id: str = Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
    agent_id: Ident
    # Bounded to a signed 64-bit integer: every database stores it as BIGINT (found by fuzzing).
    seq: Annotated[int, Strict()] = Field(ge=1, lt=2**63,
                                          description="Per-agent, strictly increasing, survives restarts")
    line_id: Ident
    site_id: Ident
    trigger: Trigger
    trigger_info: dict[InfoKey, MetricValue | ShortText] = Field(
        default_factory=dict, max_length=SMALL_DICT,
        description="e.g. idle_s for resume_after_idle, command_id for remote"
    )
    started_at: datetime
    ended_at: datetime
    clock: ClockState = Field(default_factory=ClockState)
    agent_version: str = Field(max_length=40)
    checks: list[CheckResult] = Field(max_length=200)
    verdict: Verdict = Verdict.UNKNOWN
    findings: list[Finding] = Field(default_factory=list, max_length=200)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("started_at", "ended_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamps must carry a UTC offset")
        try:
            utc = value.astimezone(UTC)
        except OverflowError:  # year 9999 with a negative offset is past datetime.max in UTC
            raise ValueError("timestamp out of range") from None
        if not EARLIEST_TIMESTAMP <= utc < LATEST_TIMESTAMP:
            raise ValueError(f"timestamp must lie between {EARLIEST_TIMESTAMP:%Y} and {LATEST_TIMESTAMP:%Y}")
        return utc

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> ResultEnvelope:
        return cls.model_validate_json(payload)


class Receipt(_Strict):
    """Sent by the collector on the agent's receipt topic only after the database commit."""

    schema_: Literal[1] = Field(default=1, alias="schema")
    result_ids: list[str] = Field(max_length=1000)
    status: Literal["stored", "duplicate", "quarantined"] = "stored"
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Command(_Strict):
    """A remote request to an agent (check now, retest). Expired commands are ignored."""

    schema_: Literal[1] = Field(default=1, alias="schema")
    command_id: str = Field(max_length=64)
    action: Literal["check_now", "retest"]
    checks: list[str] | None = None
    expires_at: datetime
    reason: str | None = Field(default=None, max_length=500)
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- topics -------------------------------------------------------------------------------------
# Every agent's topics live under its own id, so a broker ACL pattern (%u / %c) can confine it.
TOPIC_ROOT = "linecheck/v1"


def results_topic(agent_id: str) -> str:
    return f"{TOPIC_ROOT}/agents/{agent_id}/results"


def receipts_topic(agent_id: str) -> str:
    return f"{TOPIC_ROOT}/agents/{agent_id}/receipts"


def status_topic(agent_id: str) -> str:
    return f"{TOPIC_ROOT}/agents/{agent_id}/status"


def commands_topic(agent_id: str) -> str:
    return f"{TOPIC_ROOT}/agents/{agent_id}/commands"


ALL_RESULTS = f"{TOPIC_ROOT}/agents/+/results"
ALL_STATUS = f"{TOPIC_ROOT}/agents/+/status"


def agent_from_topic(topic: str) -> str | None:
    """The agent id a topic belongs to, or None if the topic is not an agent topic."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[0] + "/" + parts[1] == TOPIC_ROOT and parts[2] == "agents":
        return parts[3] if valid_id(parts[3]) else None
    return None


# --- ids ----------------------------------------------------------------------------------------


def new_result_id(now_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds then randomness, so ids sort by time."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a (12 bits)
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    return str(uuid.UUID(int=value))


def utcnow() -> datetime:
    return datetime.now(UTC)
