"""The collector's config file (YAML), as typed models. See config/collector.example.yaml."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from collector.commands.config import RemoteCommandsConfig
from collector.incidents.decide import IncidentConfig
from collector.notify.config import NotifyConfig
from collector.promises.criterion import PromisePolicy
from collector.rules.engine import RulesConfig
from collector.store.retention import RetentionConfig
from linecheck.addresses import parse_address
from linecheck.configfile import Strict, anchor_paths, load_model


class MQTTConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    brokers: list[str] = Field(
        default_factory=list, max_length=32,
        description="Nodes of a clustered broker as host:port, tried in turn; when set, host and port are not used")
    client_id: str = Field(default="linecheck-collector", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = Field(default=60, ge=5, le=3600)
    shared_group: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Join this $share group so several collectors split the fleet's results")
    session_expiry_s: int | None = Field(
        default=None, ge=1, le=4294967294,
        description="Connect with MQTT 5 and let the broker drop this collector's session (and its place "
                    "in the $share group) after this many seconds away; default: MQTT 3.1.1, kept for ever")

    @field_validator("brokers")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        for value in values:
            parse_address(value)
        return values

    def addresses(self) -> list[tuple[str, int]]:
        """Where to connect, in order: the brokers list, else host and port."""
        return [parse_address(b) for b in self.brokers] or [(self.host, self.port)]


class NatsConfig(Strict):
    """Results from a NATS JetStream cluster (broker.kind: nats; collector/ingest/jetstream.py, docs/scaling.md)."""

    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1, max_length=32,
                               description="The cluster's NATS client URLs (nats://host:port), tried in turn")
    username: str | None = None
    password_file: Path | None = Field(default=None, description="File holding the password (not the password)")
    stream: str = Field(default="LINECHECK_RESULTS", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                        description="JetStream stream holding results until a collector acks them")
    subject_prefix: str = Field(default="lcr", pattern=r"^[A-Za-z0-9_-]{1,32}$",
                                description="The cluster maps each agent's results to <prefix>.<partition>.<agent>")
    partitions: int = Field(default=8, ge=1, le=1024,
                            description="Partitions of the results (the cluster's mapping must use the same "
                                        "number: broker-config --broker nats writes both)")
    replicas: int = Field(default=3, ge=1, le=5, description="Copies of the stream and leases on the cluster")
    ack_wait_s: float = Field(default=30.0, ge=1, le=3600,
                              description="A result taken and not acked this long is given to whoever holds its "
                                          "partition then (a collector that died mid-batch)")
    lease_s: float = Field(default=6.0, ge=1, le=600,
                           description="A collector that stops renewing its partitions loses them after this long")
    max_age_days: float = Field(default=14.0, gt=0,
                                description="Results nobody acked are dropped after this long (agents still "
                                            "hold them in their spools and re-send)")

    @field_validator("servers")
    @classmethod
    def _urls(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.startswith(("nats://", "tls://")) or not value.split("://", 1)[1]:
                raise ValueError(f"{value!r}: expected a URL such as nats://10.0.0.5:4222")
        return values


class BrokerConfig(Strict):
    kind: Literal["mqtt", "nats"] = Field(
        default="mqtt",
        description="mqtt: results arrive on MQTT subscriptions (Mosquitto, or any MQTT 5 broker with $share); "
                    "nats: from a NATS JetStream cluster's stream, receipts still over its MQTT listener")
    nats: NatsConfig = Field(default_factory=NatsConfig)


class IngestConfig(Strict):
    batch_max: int = Field(default=500, ge=1, le=10000, description="Messages committed in one transaction")
    batch_wait_s: float = Field(default=0.05, ge=0, le=5, description="Wait this long to fill a batch")
    batch_target_s: float = Field(
        default=0.1, gt=0, le=10,
        description="Aim for batches that take about this long: the batch size follows the measured cost per "
                    "message (at most batch_max), so one batch never holds the fleet's results for long")
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024, description="Larger messages are quarantined")
    queue_max: int = Field(default=20000, ge=100, description="Messages received but not yet committed")
    # An enrolled agent speaks only for the line and site it was enrolled on (collector/store/database.py binding).
    unenrolled: Literal["bind_first", "quarantine"] = Field(
        default="bind_first",
        description="Results of agents that were never enrolled: bind_first = the first stored result binds the "
                    "agent to its line and site (trust on first use); quarantine = refuse them all")


class EnrolmentConfig(Strict):
    ca_dir: Path = Field(default=Path("ca"), description="Fleet CA key and certificate (keep it owner-only)")
    broker_host: str = Field(default="127.0.0.1", description="Broker address given to enrolled agents")
    broker_port: int = Field(default=8883, ge=1, le=65535, description="The broker's TLS listener")
    token_ttl_h: float = Field(default=24, gt=0, le=24 * 30, description="How long an enrolment token stays valid")
class HTTPConfig(Strict):
    """The HTTP API, console and /metrics, served by `linecheck-collector serve` beside ingest."""

    enabled: bool = True
    host: str = Field(default="127.0.0.1", description="Listen address; 0.0.0.0 only behind a TLS proxy")
    port: int = Field(default=8080, ge=0, le=65535, description="0 = any free port (logged at start)")
    timezone: str = Field(default="Asia/Shanghai", description="Time zone the console shows times in")
    secure_cookies: bool = Field(default=False, description="Set when the console is served over HTTPS")
    metrics_token_file: Path | None = Field(default=None, description="If set, /metrics wants this bearer token")
    trusted_proxies: list[str] = Field(
        default_factory=list, max_length=100,
        description="Addresses or networks of the reverse proxies in front of the console (e.g. 10.0.0.5, "
                    "10.0.0.0/24): X-Forwarded-For is believed from these peers only; default none")
    api_token_max_days: int = Field(default=90, ge=1, le=3650,
                                    description="The longest an API token may live; every token expires")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        import ipaddress

        for value in values:
            try:
                ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{value!r}: expected an IP address or network such as 10.0.0.5 or "
                                 "10.0.0.0/24") from None
        return values

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone name such as Asia/Shanghai or UTC") from None
        return name


class CollectorConfig(Strict):
    database: str = Field(default="sqlite:///linecheck.db",
                          description="SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://user@host/db")
    database_read: str | None = Field(
        default=None,
        description="A PostgreSQL streaming replica of `database` the API, console and Grafana read from; "
                    "writes and a user's reads right after their own writes stay on the primary "
                    "(collector/store/replica.py, docs/storage.md \"Read replica\")")
    mqtt: MQTTConfig = Field(default_factory=MQTTConfig)
    broker: BrokerConfig = Field(default_factory=BrokerConfig,
                                 description="Where results come from: MQTT subscriptions or a NATS JetStream cluster")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    incidents: IncidentConfig = Field(default_factory=IncidentConfig,
                                      description="Area incidents: lines behind one access node (docs/incidents.md)")
    promises: PromisePolicy = Field(default_factory=PromisePolicy,
                                    description="How promises are judged (collector/promises, docs/promises.md)")
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    enrolment: EnrolmentConfig = Field(default_factory=EnrolmentConfig)
    http: HTTPConfig = Field(default_factory=HTTPConfig)
    commands: RemoteCommandsConfig = Field(default_factory=RemoteCommandsConfig,
                                           description="Remote commands: their broker identity and rate limits")

    @field_validator("database")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not url.startswith(("sqlite:///", "postgresql+psycopg://", "postgresql://")):
            raise ValueError("expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        return url.replace("postgresql://", "postgresql+psycopg://", 1)

    @field_validator("database_read")
    @classmethod
    def _replica_of_postgresql(cls, url: str | None, info: ValidationInfo) -> str | None:
        if url is None:
            return None
        if not url.startswith(("postgresql+psycopg://", "postgresql://")):
            raise ValueError("expected the URL of a PostgreSQL streaming replica, "
                             "postgresql+psycopg://USER@REPLICA-HOST/DB")
        if not str(info.data.get("database", "")).startswith("postgresql"):
            raise ValueError("a read replica needs `database:` on PostgreSQL (SQLite has no replicas); "
                             "remove `database_read:` or move `database:` to PostgreSQL")
        return url.replace("postgresql://", "postgresql+psycopg://", 1)


def load(path: Path | str) -> CollectorConfig:
    """The config file as a model. Relative paths in it (the CA, keys, an SQLite file) are relative to the
    file's own directory, not to where a command is started (docs/security.md)."""
    cfg = load_model(path, CollectorConfig)
    base = Path(os.path.abspath(path)).parent  # abspath: no '..' left in the paths messages show
    anchor_paths(cfg, base)
    cfg.database = anchor_sqlite(cfg.database, base)
    return cfg


def anchor_sqlite(url: str, base: Path) -> str:
    """sqlite:///RELATIVE as sqlite:///BASE/RELATIVE; other URLs unchanged."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/") or url[len(prefix):].startswith(":memory:"):
        return url
    return prefix + str(base / url[len(prefix):])
