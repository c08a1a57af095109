"""The collector's tables as they are NOW, one definition for SQLite and PostgreSQL (SQLAlchemy Core).

Queries use these definitions. Migrations (collector/migrations.py) build the same shape step by
step with their own frozen DDL; tests/test_store_schema.py fails when the two drift apart.

Results are keyed by (agent_id, result_id), so a re-sent result inserts nothing the second time,
whichever collector receives it. Checks, metrics and findings hang off that key, so one batch
needs no round trip to learn generated ids.

The fleet registry: tenants (carriers and enterprises; an enterprise's parent is its carrier) own
sites and lines; an agent is an enrolled identity on one line. Tenants are the isolation unit:
a carrier sees its own lines and those of its enterprise customers (`registry.tenant_scope`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

tenants = Table(
    "tenants", metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # carrier | enterprise
    Column("parent_id", String(64), ForeignKey("tenants.tenant_id")),  # an enterprise's carrier
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_tenants_parent", "parent_id"),
)

sites = Table(
    "sites", metadata,
    Column("site_id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.tenant_id"), nullable=False),
    Column("name", String(200)),
    Column("address", Text),
    Column("district", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_sites_tenant", "tenant_id"),
)

lines = Table(
    "lines", metadata,
    Column("line_id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.tenant_id"), nullable=False),
    Column("site_id", String(64), ForeignKey("sites.site_id"), nullable=False),
    Column("name", String(200)),
    Column("district", String(64)),  # carriers report per district and segment
    Column("segment", String(64)),  # e.g. sme, retail, dedicated
    Column("plan_down_mbps", Float),  # the subscribed rate now in force; rules compare against it
    Column("plan_up_mbps", Float),
    Column("account_since", Date),  # upload promises rise with account age
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_lines_tenant", "tenant_id"),
    Index("ix_lines_site", "site_id"),
    Index("ix_lines_district_segment", "district", "segment"),
)

# Agents appear here when they first report (ingest) or when the registry enrols them, whichever
# comes first; so first_seen/last_seen are null for an enrolled agent that never reported.
agents = Table(
    "agents", metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("line_id", String(64), nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("first_seen", DateTime(timezone=True)),
    Column("last_seen", DateTime(timezone=True)),
    Column("max_seq", BigInteger, nullable=False, default=0),
    Column("result_count", BigInteger, nullable=False, default=0),
    Column("status", String(16)),  # online / offline, from the agent's retained status topic
    Column("status_at", DateTime(timezone=True)),
    Column("enrolled_at", DateTime(timezone=True)),  # set by the registry; null = only seen reporting
    Column("report_interval_s", Integer),  # the agent's schedule; silence past it means agent_offline
    Index("ix_agents_line", "line_id"),
)

results = Table(
    "results", metadata,
    Column("agent_id", String(64), nullable=False),
    Column("result_id", String(36), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("clock_synced", Integer),
    Column("agent_version", String(40), nullable=False),
    Column("payload", Text, nullable=False),  # the envelope as received, for evidence and re-processing
    Column("clock_flag", String(24)),  # future / unset_clock / ends_before_start: see collector/timeflags.py
    PrimaryKeyConstraint("agent_id", "result_id"),
    Index("ix_results_line_started", "line_id", "started_at"),
    Index("ix_results_agent_seq", "agent_id", "seq"),
    Index("ix_results_received", "received_at"),
)

checks = Table(
    "checks", metadata,
    Column("agent_id", String(64), nullable=False),
    Column("result_id", String(36), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("target", String(255)),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("duration_s", Float, nullable=False),
    PrimaryKeyConstraint("agent_id", "result_id", "idx"),
    ForeignKeyConstraint(["agent_id", "result_id"], ["results.agent_id", "results.result_id"],
                         ondelete="CASCADE"),
    Index("ix_checks_line_kind_started", "line_id", "kind", "started_at"),
)

metrics = Table(
    "metrics", metadata,
    Column("agent_id", String(64), nullable=False),
    Column("result_id", String(36), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("name", String(64), nullable=False),
    Column("value", Float),  # null = not measured (never stored as 0)
    PrimaryKeyConstraint("agent_id", "result_id", "idx", "name"),
    ForeignKeyConstraint(["agent_id", "result_id", "idx"], ["checks.agent_id", "checks.result_id", "checks.idx"],
                         ondelete="CASCADE"),
)

findings = Table(
    "findings", metadata,
    Column("agent_id", String(64), nullable=False),
    Column("result_id", String(36), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("code", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("check_kind", String(40)),
    Column("location", String(40)),
    Column("message", Text, nullable=False),
    PrimaryKeyConstraint("agent_id", "result_id", "idx"),
    ForeignKeyConstraint(["agent_id", "result_id"], ["results.agent_id", "results.result_id"],
                         ondelete="CASCADE"),
    Index("ix_findings_line_code", "line_id", "code", "started_at"),
)

quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("agent_id", String(64)),  # from the topic, when it names a valid agent
    Column("reason", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),  # kept as received (truncated past the size limit)
    Column("payload_bytes", Integer, nullable=False),
    Index("ix_quarantine_received", "received_at"),
)

# --- enrolment and agent identity (security) ----------------------------------------------------

enrolment_tokens = Table(
    "enrolment_tokens", metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 of the token; the token itself is never stored
    Column("agent_id", String(64), nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("created_by", String(64)),
)

agent_certificates = Table(
    "agent_certificates", metadata,
    Column("serial", String(40), primary_key=True),  # hex: serials exceed 64-bit integers
    Column("agent_id", String(64), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("not_after", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_reason", Text),
    Index("ix_agent_certificates_agent", "agent_id"),
)

# --- console and API access (collector/api/accounts.py) -------------------------------------------
# A user belongs to one tenant (null = the collector's operator, who sees every tenant) and has
# one role. Secrets are never stored: passwords as scrypt hashes, tokens as SHA-256 of their
# random part (tokens have 256 bits of entropy, so a fast hash is enough; passwords do not).

users = Table(
    "users", metadata,
    Column("user_id", String(64), primary_key=True),  # the login name
    Column("display_name", String(200)),
    Column("role", String(24), nullable=False),  # carrier_admin | carrier_viewer | technician | enterprise
    Column("tenant_id", String(64), ForeignKey("tenants.tenant_id")),  # null = the operator (all tenants)
    Column("password_hash", Text),  # null: token-only (service) account, cannot log in to the console
    Column("language", String(8)),  # zh-CN | en; null = from the browser
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True)),
    Index("ix_users_tenant", "tenant_id"),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("token_id", String(24), primary_key=True),  # the public part, shown in listings
    Column("user_id", String(64), ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # api | session (console login)
    Column("name", String(200)),
    Column("secret_hash", String(64), nullable=False),  # sha256 hex of the secret part
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Index("ix_api_tokens_user", "user_id"),
)

# Which lines a technician works on (the lines of their tickets are added by the tickets' assignee).
user_lines = Table(
    "user_lines", metadata,
    Column("user_id", String(64), ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("assigned_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("user_id", "line_id"),
    Index("ix_user_lines_line", "line_id"),
)
