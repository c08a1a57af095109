"""The agent's config file (YAML), as typed models. See config/agent.example.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from agent.checks import REGISTRY
from agent.checks.base import CheckConfig
from agent.heartbeat import HeartbeatConfig
from agent.lan.settings import LanTestConfig
from linecheck.addresses import parse_address
from linecheck.configfile import Strict, load_model
from linecheck.wire import ID_PATTERN


class LineConfig(Strict):
    wan_interface: str = Field(default="auto", description="'auto' = the interface of the default route")
    lan_interfaces: list[str] = Field(default_factory=list)
    plan_down_mbps: float | None = Field(default=None, gt=0, description="What the customer pays for, down")
    plan_up_mbps: float | None = Field(default=None, gt=0)
    test_server: str | None = Field(default=None, description="host[:port] of the carrier's linecheck-testserver")


class TLSConfig(Strict):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


class MQTTConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    brokers: list[str] = Field(
        default_factory=list, max_length=32,
        description="Nodes of a clustered broker as host:port, tried in turn when one is lost or unreachable; "
                    "when set, host and port are not used")
    username: str | None = None
    password_file: Path | None = Field(default=None, description="File holding the password (not the password)")
    tls: TLSConfig | None = None
    keepalive_s: int = Field(default=60, ge=5, le=3600)
    max_inflight: int = Field(default=20, ge=1, le=1000,
                              description="Results published and not yet receipted by the collector, at most")
    resend_after_s: float = Field(default=60.0, gt=0, description="Re-publish a result not receipted by then")
    resend_max_s: float = Field(default=3600.0, gt=0,
                                description="The re-send wait doubles per attempt up to this (collector down for long)")
    reconnect_min_s: float = Field(default=1.0, gt=0, description="First reconnect wait ceiling (full jitter)")
    reconnect_max_s: float = Field(default=300.0, gt=0, description="Reconnect wait ceiling after repeated failures")
    max_payload_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Must not exceed the broker's message_size_limit"
    )
    subscribe_qos: Literal[0, 1] = Field(
        default=1, description="QoS of the receipts and commands subscriptions: 1 (Mosquitto), or 0 on a NATS "
                               "cluster, where each QoS 1 subscription is a replicated consumer of its own "
                               "(~0.8 MB per agent, docs/scaling.md); a lost receipt only means a re-send")

    @field_validator("brokers")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        for value in values:
            parse_address(value)
        return values

    def addresses(self) -> list[tuple[str, int]]:
        """Where to connect, in order: the brokers list, else host and port."""
        return [parse_address(b) for b in self.brokers] or [(self.host, self.port)]


class GateConfig(Strict):
    """Cross-traffic gate: automatic throughput tests wait while the office uses the line."""

    enabled: bool = True
    threshold_kbps: float = Field(default=200.0, gt=0, description="Other WAN traffic (down+up) above this: defer")
    sample_s: float = Field(default=2.0, gt=0, le=60, description="Window over which the WAN rate is measured")
    retry_s: float = Field(default=30.0, gt=0, le=3600, description="Wait between measurements while deferred")
    max_wait_s: float = Field(default=600.0, ge=0, description="Give up after this long: throughput is skipped")


class SpoolConfig(Strict):
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024,
                           description="Result bytes held for the collector; beyond, healthy results are "
                                       "compacted to summaries first, then the least valuable dropped")
    max_age_days: float = Field(default=90.0, gt=0, description="Unsent results older than this are dropped")
    min_free_bytes: int = Field(default=1024 * 1024, ge=0,
                                description="Leave this much free on the spool's filesystem; the spool shrinks "
                                            "to keep it")


class ScheduleConfig(Strict):
    interval_s: float = Field(default=3600.0, ge=10, description="Mean time between scheduled checks")
    jitter_s: float = Field(default=600.0, ge=0, description="Random extra delay so a fleet never runs in lockstep")
    first_delay_s: float = Field(default=120.0, ge=0, description="Quiet period after start before the first check")
    windows: list[str] = Field(default_factory=list,
                               description="Local-time windows 'HH:MM-HH:MM' for scheduled checks; empty = any time")
    throughput_kinds: list[str] = Field(default_factory=lambda: ["throughput"],
                                        description="Data-heavy check kinds: gated, budgeted, run less often")
    throughput_interval_s: float = Field(default=86400.0, ge=0,
                                         description="At most one scheduled throughput test per this long")
    daily_data_budget_mb: float | None = Field(default=2000.0, gt=0,
                                               description="Throughput data per local day; null = no limit")
    gate: GateConfig = Field(default_factory=GateConfig)

    @field_validator("windows")
    @classmethod
    def _windows(cls, windows: list[str]) -> list[str]:
        from agent.scheduler import parse_window  # the scheduler owns the window format

        for w in windows:
            parse_window(w)
        return windows


class IdleConfig(Strict):
    """Long-idle detection: the office stood empty, so check the line the moment it comes back."""

    enabled: bool = True
    period_s: float = Field(default=3 * 86400.0, ge=60, description="Quiet this long = idle")
    wan_threshold_kbps: float = Field(default=200.0, gt=0, description="WAN traffic below this is quiet")
    lan_threshold_kbps: float = Field(default=200.0, gt=0,
                                      description="LAN traffic (line.lan_interfaces) below this is quiet")
    sample_s: float = Field(default=60.0, ge=1, le=3600, description="Traffic sampling interval")
    min_power_off_s: float = Field(default=300.0, ge=0,
                                   description="A reboot after a quiet period resumes only if off this long")
    resume_delay_s: float = Field(default=60.0, ge=0, description="Settle time before the resume check")
    watchdog_interval_s: float = Field(default=86400.0, ge=60, description="Light check this often while idle")
    watchdog_checks: list[str] = Field(default_factory=lambda: ["link", "ping"],
                                       description="Kinds the watchdog runs (those configured under checks)")
    pause_schedule: bool = Field(default=True, description="No scheduled checks while idle (the watchdog runs)")


class CommandsConfig(Strict):
    """Remote-triggered checks received on the agent's own command topic."""

    enabled: bool = True
    max_ttl_s: float = Field(default=86400.0, gt=0,
                             description="Refuse commands that claim to stay valid longer than this")


class AgentConfig(Strict):
    agent_id: str = Field(pattern=ID_PATTERN)
    line_id: str = Field(pattern=ID_PATTERN)
    site_id: str = Field(pattern=ID_PATTERN)
    data_dir: Path = Path("/var/lib/linecheck")
    line: LineConfig = Field(default_factory=LineConfig)
    mqtt: MQTTConfig = Field(default_factory=MQTTConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    idle: IdleConfig = Field(default_factory=IdleConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    lan_test: LanTestConfig = Field(default_factory=LanTestConfig, description="LAN/WiFi room speed tests")
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig,
                                       description="Light probes between checks: outages that come and go")
    checks: dict[str, CheckConfig] = Field(
        default_factory=lambda: {"link": REGISTRY["link"].config(), "ping": REGISTRY["ping"].config()},
        description="Check kind -> its settings; a kind that is absent does not run",
    )

    @field_validator("checks", mode="before")
    @classmethod
    def _typed_checks(cls, raw: Any) -> Any:
        """Validate each entry with its own kind's model, keeping the key path in errors."""
        if not isinstance(raw, dict):
            return raw
        typed: dict[str, CheckConfig] = {}
        errors: list[InitErrorDetails] = []
        for kind, settings in raw.items():
            spec = REGISTRY.get(kind)
            if spec is None:
                errors.append(InitErrorDetails(
                    type=PydanticCustomError("unknown_check", "unknown check kind; known kinds: {known}",
                                             {"known": ", ".join(sorted(REGISTRY))}),
                    loc=(kind,), input=kind))
                continue
            try:
                typed[kind] = spec.config.model_validate(settings or {})
            except ValidationError as exc:
                for err in exc.errors():
                    errors.append(InitErrorDetails(
                        type=PydanticCustomError(err["type"], err["msg"]),
                        loc=(kind, *err["loc"]), input=err.get("input")))
        if errors:
            raise ValidationError.from_exception_data("checks", errors)
        return typed

    @model_validator(mode="after")
    def _credentials_complete(self) -> AgentConfig:
        if self.mqtt.tls and (self.mqtt.tls.cert_file is None) != (self.mqtt.tls.key_file is None):
            raise ValueError("mqtt.tls: cert_file and key_file must be given together")
        if self.spool.max_bytes < 4 * self.mqtt.max_payload_bytes:
            raise ValueError(f"spool.max_bytes ({self.spool.max_bytes}) must hold at least 4 results of "
                             f"mqtt.max_payload_bytes ({self.mqtt.max_payload_bytes})")
        if self.mqtt.reconnect_max_s < self.mqtt.reconnect_min_s:
            raise ValueError("mqtt.reconnect_max_s must not be below mqtt.reconnect_min_s")
        return self


def load(path: Path | str) -> AgentConfig:
    return load_model(path, AgentConfig)
