"""Response and request bodies of the HTTP API (they make the published OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from collector.api.accounts import USER_ID_PATTERN, Role


class Problem(BaseModel):
    """An error: a sentence, or one line per problem (a refused import lists every problem it found)."""

    detail: str | list[Any]


class Me(BaseModel):
    user_id: str
    role: Role
    tenant_id: str | None
    language: str | None


class LineRow(BaseModel):
    line_id: str
    tenant_id: str | None
    site_id: str | None
    name: str | None
    district: str | None
    segment: str | None
    plan_down_mbps: float | None
    plan_up_mbps: float | None
    health: str = Field(description="Verdict of the latest result: healthy, problems, unknown; no_data if none")
    last_result_at: datetime | None
    agents: int
    agents_online: int
    open_tickets: int
    promise: str | None = Field(description="Worst current verdict among the line's promises; null if none judged")


class TestServerRow(BaseModel):
    target: str = Field(description="The server as the agents' results name it (backend://host:port; untrusted, "
                                    "at most 100 characters)")
    tests: int = Field(description="Throughput tests that measured against it")
    busy: int = Field(description="Tests it refused: server busy")
    busy_pct: float | None = Field(description="Refusals as a share of every test asked of it")
    failed: int = Field(description="Other tests without a figure (unreachable, interrupted)")
    server_limited: int = Field(description="Tests it reported serving while saturated (not judged)")
    median_down_mbps: float | None
    median_up_mbps: float | None
    lines: int = Field(description="Lines that tested against it")


class AgentRow(BaseModel):
    agent_id: str
    line_id: str
    site_id: str
    online: bool
    status: str | None = Field(description="online/offline from the agent's status topic; null if never sent")
    status_at: datetime | None
    first_seen: datetime | None
    last_seen: datetime | None
    max_seq: int
    result_count: int
    missing: int | None = Field(description="Seq numbers below the agent's latest not stored here: in flight, "
                                            "evicted by its spool, or lost (collector.store.delivery)")
    spool_backlog: int | None = Field(description="Results waiting in the agent's spool, as it last reported")


class ResultRow(BaseModel):
    agent_id: str
    result_id: str
    seq: int
    line_id: str
    site_id: str
    trigger: str
    verdict: str
    agent_version: str
    started_at: datetime
    ended_at: datetime
    received_at: datetime
    clock_synced: bool | None


class ResultFull(ResultRow):
    checks: list[dict[str, Any]]
    findings: list[dict[str, Any]]


class FindingRow(BaseModel):
    agent_id: str
    result_id: str
    started_at: datetime
    code: str
    severity: str
    check_kind: str | None
    location: str | None
    message: str
    detail: dict[str, Any] = Field(default_factory=dict, description="The finding's parameters: its sentence in "
                                   "any language is rendered from the code and these (linecheck/i18n [findings])")


class LineDetail(BaseModel):
    line_id: str
    registered: bool
    tenant_id: str | None
    site_id: str | None
    name: str | None
    district: str | None
    segment: str | None
    plan_down_mbps: float | None
    plan_up_mbps: float | None
    health: str
    agents: list[AgentRow]
    latest: ResultFull | None
    open_tickets: list[dict[str, Any]]


class SeriesPoint(BaseModel):
    at: datetime
    value: float | None


class Series(BaseModel):
    line_id: str
    since: datetime
    series: dict[str, list[SeriesPoint]]


class Overview(BaseModel):
    lines: int
    health: dict[str, int]
    agents: int
    agents_online: int
    results_24h: int = Field(description="Results received since results_24h_since: counted in whole hours (23-24 h) "
                                         "for carriers and operators, from exactly 24 h ago for a technician")
    results_24h_since: datetime


class QuarantineRow(BaseModel):
    id: int
    received_at: datetime
    topic: str
    agent_id: str | None
    reason: str
    payload_bytes: int


class QuarantineItem(QuarantineRow):
    payload_text: str = Field(description="The payload as received, decoded as UTF-8 with replacements")


class CommandRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["check_now", "retest"] = "check_now"
    checks: list[str] | None = Field(default=None, max_length=20, description="Check kinds; null = all")
    reason: str | None = Field(default=None, max_length=500)


class CommandSent(BaseModel):
    line_id: str
    action: str
    commands: list[dict[str, str]] = Field(description="One per agent on the line: agent_id and command_id")


class TokenRow(BaseModel):
    token_id: str
    name: str | None
    kind: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    expires_in_days: int = Field(default=90, ge=1, le=3650,
                                 description="Capped by the collector's http.api_token_max_days (default 90); "
                                             "a token made with an API token expires no later than that one")


class TokenCreated(BaseModel):
    token_id: str
    token: str = Field(description="Shown once; only its hash is stored")
    expires_at: datetime | None


class UserRow(BaseModel):
    user_id: str
    display_name: str | None
    role: Role
    tenant_id: str | None
    created_at: datetime
    disabled_at: datetime | None


class UserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(pattern=USER_ID_PATTERN)
    role: Role
    tenant_id: str | None = Field(default=None, max_length=64)
    display_name: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, min_length=10, max_length=200)
    lines: list[str] = Field(default_factory=list, max_length=1000, description="A technician's assigned lines")
