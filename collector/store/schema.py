"""The collector's tables as they are NOW, one definition for SQLite and PostgreSQL (SQLAlchemy Core).

Queries use these definitions. Migrations (collector/store/migrations.py) build the same shape step by
step with their own frozen DDL; tests/test_store_schema.py fails when the two drift apart.

Results are keyed by (agent_id, result_id), so a re-sent result inserts nothing the second time,
whichever collector receives it. One row per result: checks, metrics and findings are inside its
document and read through views of the old tables' shape (docs/storage.md "Result layout").

The fleet registry: tenants (carriers and enterprises; an enterprise's parent is its carrier) own
sites and lines; an agent is an enrolled identity on one line. Tenants are the isolation unit:
a carrier sees its own lines and those of its enterprise customers (`registry.tenant_scope`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from collector.store.types import Document, UtcDateTime

metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", UtcDateTime(), nullable=False),
)

tenants = Table(
    "tenants", metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # carrier | enterprise
    Column("parent_id", String(64), ForeignKey("tenants.tenant_id")),  # an enterprise's carrier
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_tenants_parent", "parent_id"),
)

sites = Table(
    "sites", metadata,
    Column("site_id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.tenant_id"), nullable=False),
    Column("name", String(200)),
    Column("address", Text),
    Column("district", String(64)),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
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
    Column("access_path", String(512)),  # 'district/CO/OLT/PON/splitter' as imported (collector/incidents/topology.py)
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_lines_tenant", "tenant_id"),
    Index("ix_lines_site", "site_id"),
    Index("ix_lines_district_segment", "district", "segment"),
    # The fleet list's substring search (?q=): trigram GIN on PostgreSQL (migration v9), plain elsewhere.
    Index("ix_lines_search", "line_id", "name", "site_id", postgresql_using="gin",
          postgresql_ops={"line_id": "gin_trgm_ops", "name": "gin_trgm_ops", "site_id": "gin_trgm_ops"}),
)

# Agents appear here when they first report (ingest) or when the registry enrols them, whichever
# comes first; so first_seen/last_seen are null for an enrolled agent that never reported.
agents = Table(
    "agents", metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("line_id", String(64), nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("first_seen", UtcDateTime()),
    Column("last_seen", UtcDateTime()),
    Column("max_seq", BigInteger, nullable=False, default=0),
    Column("result_count", BigInteger, nullable=False, default=0),
    Column("status", String(16)),  # online / offline, from the agent's retained status topic
    Column("status_at", UtcDateTime()),
    Column("enrolled_at", UtcDateTime()),  # set by the registry; null = only seen reporting
    Column("report_interval_s", Integer),  # the agent's schedule; silence past it means agent_offline
    Column("spool_backlog", BigInteger),  # as reported in the newest result (max_seq), kept at ingest
    Index("ix_agents_line", "line_id"),
)

# One row per result (migration 13): the typed columns every query filters, sorts or joins on, and the
# rest of the envelope as one compact document (collector/store/documents.py; JSONB on PostgreSQL).
# On PostgreSQL the table is partitioned by day of started_at (collector/store/partitions.py), so
# retention drops a day instead of deleting its rows, and its primary key includes started_at (a
# partitioned table's unique keys must); SQLite keeps (agent_id, result_id).
results = Table(
    "results", metadata,
    Column("agent_id", String(64), nullable=False),
    Column("result_id", String(36), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("ended_at", UtcDateTime(), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("clock_synced", Integer),
    Column("agent_version", String(40), nullable=False),
    Column("clock_flag", String(24)),  # future / unset_clock / ends_before_start: see collector/store/timeflags.py
    Column("doc", Document, nullable=False),  # checks, metrics, findings, clock: collector/store/documents.py
    PrimaryKeyConstraint("agent_id", "result_id"),
    Index("ix_results_line_started", "line_id", "started_at"),
    Index("ix_results_agent_seq", "agent_id", "seq"),
    Index("ix_results_received", "received_at", postgresql_using="brin"),  # received_at follows insert order
)

# One row per line the collector knows: every registered line (tenant and district copied from the
# registry when it is imported) and every line that reports without being registered (tenant null),
# with its newest result (by started_at, then result_id: a late result with an older start does not
# replace it; null = no result yet). Written by the registry import and the ingest transaction
# (collector/store/line_state.py). The fleet list, its health filter and the overview's counts read one
# narrow row per line here instead of the registry, the agents and every line's newest result.
line_state = Table(
    "line_state", metadata,
    Column("line_id", String(64), primary_key=True),
    Column("tenant_id", String(64)),  # the registry's; null = not registered (only the operator sees it)
    Column("district", String(64)),
    Column("agent_id", String(64)),
    Column("result_id", String(36)),
    Column("site_id", String(64)),
    Column("started_at", UtcDateTime()),
    Column("verdict", String(16)),  # null = no result (health "no_data")
    Index("ix_line_state_verdict_line", "verdict", "line_id"),
    Index("ix_line_state_tenant", "tenant_id", "district", "verdict"),
)

# Results received per hour (UTC, by the collector's clock) and tenant of their line at ingest ('' = not
# registered), counted in the ingest transaction (collector/store/line_state.py): the overview's "results in
# 24 h" sums 24 rows per tenant instead of counting every result. `shard` is the writing collector's
# (random per process), so collectors do not queue on one hot row; readers sum over it.
results_hourly = Table(
    "results_hourly", metadata,
    Column("hour", UtcDateTime(), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("shard", Integer, nullable=False),
    Column("results", BigInteger, nullable=False),
    PrimaryKeyConstraint("hour", "tenant_id", "shard"),
)

# Agents and agents online per tenant of their line ('' = not registered), recomputed every
# AGENT_COUNTS_EVERY_S by each collector (collector/api/fleet_summary.py): "online" depends on the
# clock (an agent without a status message counts as online for 2 h after its last report), so it
# cannot be kept at write time. The overview reads it while fresh and counts live otherwise.
agent_counts = Table(
    "agent_counts", metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("agents", BigInteger, nullable=False),
    Column("agents_online", BigInteger, nullable=False),
    Column("computed_at", UtcDateTime(), nullable=False),
)

# Checks, metrics and findings are VIEWS over results.doc since migration 13 (one row per check, per
# metric, per finding, with the same columns the tables had, so readers and the Grafana panels' SQL are
# unchanged). They live in `views`, not `metadata`: nothing creates or writes them as tables, and the
# schema comparison (tests/test_store_schema.py) sees tables only. idx is the position in the envelope.
views = MetaData()

checks = Table(
    "checks", views,
    Column("agent_id", String(64), nullable=False),
    Column("result_id", String(36), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("target", String(255)),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("duration_s", Float, nullable=False),
    # the check's metrics as one JSON object (migration 15): a check with its metrics without joining the
    # metrics view (each view expands the documents it reads; a join of two expanded them twice)
    Column("metrics", Document),
)

metrics = Table(
    "metrics", views,
    Column("agent_id", String(64), nullable=False),
    Column("result_id", String(36), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("name", String(64), nullable=False),
    Column("value", Float),  # null = not measured (never stored as 0)
    # The result's line and start, so a query needs no join to checks for them (and a join to checks
    # includes started_at: the day partition of the other side, docs/storage.md "Result layout").
    Column("line_id", String(64), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
)

findings = Table(
    "findings", views,
    Column("agent_id", String(64), nullable=False),
    Column("result_id", String(36), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("code", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("check_kind", String(40)),
    Column("location", String(40)),
    Column("message", Text, nullable=False),
)

quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", UtcDateTime(), nullable=False),
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
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("used_at", UtcDateTime()),
    Column("created_by", String(64)),
)

agent_certificates = Table(
    "agent_certificates", metadata,
    Column("serial", String(40), primary_key=True),  # hex: serials exceed 64-bit integers
    Column("agent_id", String(64), nullable=False),
    Column("issued_at", UtcDateTime(), nullable=False),
    Column("not_after", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime()),
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
    Column("created_at", UtcDateTime(), nullable=False),
    Column("disabled_at", UtcDateTime()),
    Index("ix_users_tenant", "tenant_id"),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("token_id", String(24), primary_key=True),  # the public part, shown in listings
    Column("user_id", String(64), ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # api | session (console login)
    Column("name", String(200)),
    Column("secret_hash", String(64), nullable=False),  # sha256 hex of the secret part
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime()),
    Column("last_used_at", UtcDateTime()),
    Column("revoked_at", UtcDateTime()),
    Index("ix_api_tokens_user", "user_id"),
)

# Which lines a technician works on (the lines of their tickets are added by the tickets' assignee).
user_lines = Table(
    "user_lines", metadata,
    Column("user_id", String(64), ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("assigned_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("user_id", "line_id"),
    Index("ix_user_lines_line", "line_id"),
)

# --- rules, tickets, remote commands, notifications (collector/rules/, collector/tickets/, collector/notify/) ----

# States a ticket can be "open" in: at most one such ticket per line and fault class, enforced by
# the partial unique index below, so two collectors evaluating the same line cannot both open one.
OPEN_STATES = ("open", "acknowledged", "dispatched")
_OPEN = "state IN ('open', 'acknowledged', 'dispatched')"
OPEN_PREDICATE = text(_OPEN)  # literal: PostgreSQL infers a partial index for ON CONFLICT only from literals

tickets = Table(
    "tickets", metadata,
    Column("ticket_id", Integer, primary_key=True, autoincrement=True),
    Column("line_id", String(64), nullable=False),
    Column("fault_class", String(40), nullable=False),
    Column("state", String(16), nullable=False),  # open → acknowledged → dispatched → resolved → verified
    Column("severity", String(16), nullable=False),  # warning | critical
    Column("location", String(40)),  # wan | cpe | lan | wifi | dns | service | agent
    Column("summary", Text, nullable=False),
    Column("tenant_id", String(64)),  # copied from the registry when opened: tenant scoping without a join
    Column("site_id", String(64)),
    Column("agent_id", String(64)),
    Column("opened_by", String(64), nullable=False),  # rule | promise | a user id
    Column("assignee", String(64)),  # a technician's user id (console)
    Column("detail", Text),  # JSON: rule, thresholds, window, re-test outcome
    Column("opened_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("acknowledged_at", UtcDateTime()),
    Column("dispatched_at", UtcDateTime()),
    Column("resolved_at", UtcDateTime()),
    Column("verified_at", UtcDateTime()),
    Index("uq_tickets_open_line_class", "line_id", "fault_class", unique=True,
          sqlite_where=text(_OPEN), postgresql_where=text(_OPEN)),
    Index("ix_tickets_tenant_state", "tenant_id", "state", "opened_at"),
    Index("ix_tickets_line_opened", "line_id", "opened_at"),
    Index("ix_tickets_state_opened", "state", "opened_at"),
)

ticket_events = Table(
    "ticket_events", metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("ticket_id", Integer, ForeignKey("tickets.ticket_id", ondelete="CASCADE"), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("kind", String(24), nullable=False),  # opened | acknowledged | dispatched | resolved | verified | note
    Column("from_state", String(16)),
    Column("to_state", String(16)),
    Column("actor", String(64), nullable=False),  # rule | promise | sweep | a user id
    Column("note", Text),
    Column("result_id", String(36)),
    Column("said", Text),  # JSON phrases of a system event (linecheck/i18n/phrases.py); null for people's notes
    Index("ix_ticket_events_ticket", "ticket_id", "event_id"),
    Index("ix_ticket_events_kind_at", "kind", "at"),
)

# The results a ticket rests on. No foreign key: retention keeps these results, but a ticket's
# evidence list must survive even an operator's manual purge.
ticket_evidence = Table(
    "ticket_evidence", metadata,
    Column("ticket_id", Integer, ForeignKey("tickets.ticket_id", ondelete="CASCADE"), nullable=False),
    Column("agent_id", String(64), nullable=False),
    Column("result_id", String(36), nullable=False),
    Column("role", String(16), nullable=False),  # trigger | retest | resolve | verify | attached
    Column("added_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("ticket_id", "agent_id", "result_id", "role"),
    Index("ix_ticket_evidence_result", "agent_id", "result_id"),
)

# Remote commands to agents (an outbox: written in the deciding transaction, published after it).
# A re-test is tied to the line and fault class that asked for it; at most one is outstanding.
_OUTSTANDING = "state IN ('pending', 'sent')"
OUTSTANDING_PREDICATE = text(_OUTSTANDING)
commands = Table(
    "commands", metadata,
    Column("command_id", String(64), primary_key=True),
    Column("agent_id", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # check_now | retest (linecheck.wire.Command)
    Column("checks", Text),  # JSON list of check kinds; null = all
    Column("reason", Text),
    Column("line_id", String(64)),
    Column("fault_class", String(40)),  # for a re-test: which rule is waiting on it
    Column("state", String(16), nullable=False),  # pending → sent → confirmed | refuted | expired
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime()),
    Column("answered_at", UtcDateTime()),  # when the answering result was taken (agent clock)
    Column("answer_result_id", String(36)),
    Index("uq_commands_outstanding_retest", "line_id", "fault_class", unique=True,
          sqlite_where=text(_OUTSTANDING), postgresql_where=text(_OUTSTANDING)),
    Index("ix_commands_state_created", "state", "created_at"),
)

# One row per ticket event and notification target; the unique key makes fan-out idempotent
# across collectors. Attempts are logged in notification_attempts (the delivery log).
notifications = Table(
    "notifications", metadata,
    Column("notification_id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", Integer, ForeignKey("ticket_events.event_id", ondelete="CASCADE"), nullable=False),
    Column("target", String(100), nullable=False),  # webhook:<name> | mail:<name>
    Column("state", String(16), nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("delivered_at", UtcDateTime()),
    Column("last_error", Text),
    UniqueConstraint("event_id", "target", name="uq_notifications_event_target"),
    Index("ix_notifications_due", "state", "next_attempt_at"),
)

notification_attempts = Table(
    "notification_attempts", metadata,
    Column("attempt_id", Integer, primary_key=True, autoincrement=True),
    Column("notification_id", Integer, ForeignKey("notifications.notification_id", ondelete="CASCADE"),
           nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("outcome", String(16), nullable=False),  # delivered | retry | dead
    Column("status_code", Integer),  # HTTP status or SMTP reply code
    Column("error", Text),
    Column("duration_ms", Float),
    Index("ix_notification_attempts_notification", "notification_id", "attempt_id"),
)

# Retention: raw results older than retention.raw_days are folded into these daily figures per
# line, check kind and metric (then deleted, unless a ticket cites them as evidence).
daily_metrics = Table(
    "daily_metrics", metadata,
    Column("day", Date, nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("name", String(64), nullable=False),
    Column("samples", Integer, nullable=False),  # non-null values
    Column("total", Float, nullable=False),  # sum, so averages merge across batches
    Column("minimum", Float),
    Column("maximum", Float),
    Column("results", Integer, nullable=False),  # results carrying this check kind that day
    Column("failed", Integer, nullable=False),  # of those, how many with the check failed
    PrimaryKeyConstraint("day", "line_id", "kind", "name"),
)

# Ranges of an agent's seq numbers not received (yet): opened when a result arrives past a hole,
# narrowed or closed when a late result fills it. Maintained in the ingest transaction (delivery.py).
seq_gaps = Table(
    "seq_gaps", metadata,
    Column("agent_id", String(64), nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("detected_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("agent_id", "first_seq"),
)

# --- promise ledger (collector/promises) ---------------------------------------------------------

promises = Table(
    "promises", metadata,
    Column("promise_id", String(64), primary_key=True),
    Column("line_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),  # speed, wifi_coverage, tariff_reduction, ...
    Column("effective", Date, nullable=False),
    Column("grace_days", Integer),  # null = the policy's default for the kind
    Column("terms", Text, nullable=False),  # the whole promise as JSON (collector.promises.model)
    Column("note", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_promises_line", "line_id"),
)

billing_records = Table(
    "billing_records", metadata,
    Column("line_id", String(64), nullable=False),
    Column("period", String(7), nullable=False),  # YYYY-MM
    Column("product", String(64), nullable=False),
    Column("amount", Float, nullable=False),  # charge at the tariff in force, before waivers
    Column("waived", Float, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("source", String(255)),  # the imported file
    Column("imported_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("line_id", "period", "product"),
)

# The latest verdict per promise; `outcome_since` says how long it has stood.
promise_verdicts = Table(
    "promise_verdicts", metadata,
    Column("promise_id", String(64), primary_key=True),
    Column("line_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("in_grace", Boolean, nullable=False),
    Column("summary", Text, nullable=False),
    Column("detail", Text, nullable=False),  # JSON evidence (collector.promises.verdict.PromiseVerdict.as_dict)
    Column("delivered_ratio", Float),
    Column("evaluated_at", UtcDateTime(), nullable=False),
    Column("judgeable_from", UtcDateTime(), nullable=False),
    Column("outcome_since", UtcDateTime(), nullable=False),
    Column("ticket_id", Integer),  # the ticket the verdict opened, if any
    Index("ix_promise_verdicts_line", "line_id"),
    Index("ix_promise_verdicts_kind_outcome", "kind", "outcome"),
)

# Remote commands people sent (API, console, CLI), counted by the rate limits (collector/commands/limits.py).
command_log = Table(
    "command_log", metadata,
    Column("command_id", String(64), primary_key=True),
    Column("agent_id", String(64), nullable=False),
    Column("line_id", String(64)),
    Column("requested_by", String(128)),  # user id, "cli:<login>", or null when the caller did not say
    Column("action", String(16), nullable=False),
    Column("sent_at", UtcDateTime(), nullable=False),
    Index("ix_command_log_agent_sent", "agent_id", "sent_at"),
    Index("ix_command_log_user_sent", "requested_by", "sent_at"),
    Index("ix_command_log_sent", "sent_at"),
)


# --- access topology and area incidents (collector/incidents/) ----------------------------------------------------

# One row per line and depth of its access path: node = the path up to that depth ('d/co/olt'), so the
# lines behind a node are one index look-up.
access_nodes = Table(
    "access_nodes", metadata,
    Column("line_id", String(64), nullable=False),
    Column("depth", Integer, nullable=False),  # 0 = district
    Column("level", String(32), nullable=False),  # district | central_office | olt | pon_port | splitter | ...
    Column("node", String(512), nullable=False),
    PrimaryKeyConstraint("line_id", "depth"),
    Index("ix_access_nodes_node", "node"),
)

# One fault of many lines behind one node; its ticket (line_id 'incident:<id>') carries the dispatch state,
# the audit trail and the notifications.
incidents = Table(
    "incidents", metadata,
    Column("incident_id", Integer, primary_key=True, autoincrement=True),
    Column("node", String(512), nullable=False),
    Column("level", String(32), nullable=False),
    Column("district", String(64)),
    Column("fault_class", String(40), nullable=False),
    Column("state", String(16), nullable=False),  # open | resolved
    Column("ticket_id", Integer),
    Column("lines_reporting", Integer, nullable=False),  # lines behind the node that reported in the window
    Column("opened_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("resolved_at", UtcDateTime()),
    Index("ix_incidents_state_opened", "state", "opened_at"),
    Index("ix_incidents_node_class", "node", "fault_class"),
)

incident_members = Table(
    "incident_members", metadata,
    Column("incident_id", Integer, ForeignKey("incidents.incident_id", ondelete="CASCADE"), nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("joined_at", UtcDateTime(), nullable=False),
    Column("recovered_at", UtcDateTime()),  # null while the line still shows the fault
    Column("ticket_id", Integer),  # the line's own ticket when its fault outlasted the incident
    Column("outcome", Text),  # JSON: the rules' newest ticket fields for the line, for a straggler's ticket
    PrimaryKeyConstraint("incident_id", "line_id"),
    Index("ix_incident_members_line", "line_id"),
)

# A fault the rules would have ticketed, held while the correlator decides: incident member or own ticket.
held_faults = Table(
    "held_faults", metadata,
    Column("line_id", String(64), nullable=False),
    Column("fault_class", String(40), nullable=False),
    Column("first_at", UtcDateTime(), nullable=False),
    Column("last_at", UtcDateTime(), nullable=False),
    Column("recovered_at", UtcDateTime()),
    Column("outcome", Text, nullable=False),  # JSON: what open_ticket would have been given
    PrimaryKeyConstraint("line_id", "fault_class"),
    Index("ix_held_faults_first", "first_at"),
)
