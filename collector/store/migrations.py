"""Schema migrations, in order. Each brings the database from version i to i+1 with its OWN frozen DDL.

A migration must never read collector/store/schema.py: that module describes the schema as it is now,
and a migration written against it would build a different schema tomorrow. tests/test_store_schema.py
migrates an empty database on SQLite and PostgreSQL and compares the result with schema.py
(alembic's compare_metadata), so a forgotten migration or a drifted definition fails a test.

Alembic's `Operations` does the dialect work (SQLite cannot ALTER a column: batch mode rebuilds the
table). To change the schema: append a function here, register it in store.MIGRATIONS, change
schema.py to match. Never edit a landed migration.
"""

from __future__ import annotations

import logging

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Float,
    ForeignKeyConstraint,
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
from sqlalchemy import ForeignKey as FK
from sqlalchemy.exc import DBAPIError


def ops(conn: Connection) -> Operations:
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines say nothing to an operator
    return Operations(MigrationContext.configure(conn))


def _ts(name: str, nullable: bool = True) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def v1_foundation(conn: Connection) -> None:
    """Results, checks, metrics, findings, agents, quarantine (the foundation's tables, frozen)."""
    md = MetaData()
    Table("agents", md,
          Column("agent_id", String(64), primary_key=True),
          Column("line_id", String(64), nullable=False),
          Column("site_id", String(64), nullable=False),
          _ts("first_seen", False), _ts("last_seen", False),
          Column("max_seq", BigInteger, nullable=False),
          Column("result_count", BigInteger, nullable=False),
          Column("status", String(16)), _ts("status_at"))
    Table("results", md,
          Column("agent_id", String(64), nullable=False),
          Column("result_id", String(36), nullable=False),
          Column("seq", BigInteger, nullable=False),
          Column("line_id", String(64), nullable=False),
          Column("site_id", String(64), nullable=False),
          Column("trigger", String(32), nullable=False),
          _ts("started_at", False), _ts("ended_at", False), _ts("received_at", False),
          Column("verdict", String(16), nullable=False),
          Column("clock_synced", Integer),
          Column("agent_version", String(40), nullable=False),
          Column("payload", Text, nullable=False),
          PrimaryKeyConstraint("agent_id", "result_id"),
          Index("ix_results_line_started", "line_id", "started_at"),
          Index("ix_results_agent_seq", "agent_id", "seq"),
          Index("ix_results_received", "received_at"))
    Table("checks", md,
          Column("agent_id", String(64), nullable=False),
          Column("result_id", String(36), nullable=False),
          Column("idx", Integer, nullable=False),
          Column("line_id", String(64), nullable=False),
          _ts("started_at", False),
          Column("kind", String(40), nullable=False),
          Column("target", String(255)),
          Column("status", String(16), nullable=False),
          Column("reason", Text),
          Column("duration_s", Float, nullable=False),
          PrimaryKeyConstraint("agent_id", "result_id", "idx"),
          ForeignKeyConstraint(["agent_id", "result_id"], ["results.agent_id", "results.result_id"],
                               ondelete="CASCADE"),
          Index("ix_checks_line_kind_started", "line_id", "kind", "started_at"))
    Table("metrics", md,
          Column("agent_id", String(64), nullable=False),
          Column("result_id", String(36), nullable=False),
          Column("idx", Integer, nullable=False),
          Column("name", String(64), nullable=False),
          Column("value", Float),
          PrimaryKeyConstraint("agent_id", "result_id", "idx", "name"),
          ForeignKeyConstraint(["agent_id", "result_id", "idx"],
                               ["checks.agent_id", "checks.result_id", "checks.idx"], ondelete="CASCADE"))
    Table("findings", md,
          Column("agent_id", String(64), nullable=False),
          Column("result_id", String(36), nullable=False),
          Column("idx", Integer, nullable=False),
          Column("line_id", String(64), nullable=False),
          _ts("started_at", False),
          Column("code", String(64), nullable=False),
          Column("severity", String(16), nullable=False),
          Column("check_kind", String(40)),
          Column("location", String(40)),
          Column("message", Text, nullable=False),
          PrimaryKeyConstraint("agent_id", "result_id", "idx"),
          ForeignKeyConstraint(["agent_id", "result_id"], ["results.agent_id", "results.result_id"],
                               ondelete="CASCADE"),
          Index("ix_findings_line_code", "line_id", "code", "started_at"))
    Table("quarantine", md,
          Column("id", Integer, primary_key=True, autoincrement=True),
          _ts("received_at", False),
          Column("topic", String(255), nullable=False),
          Column("agent_id", String(64)),
          Column("reason", Text, nullable=False),
          Column("payload", LargeBinary, nullable=False),
          Column("payload_bytes", Integer, nullable=False),
          Index("ix_quarantine_received", "received_at"))
    md.create_all(conn)


def v2_registry(conn: Connection) -> None:
    """The fleet registry: tenants, sites, lines; agents may be enrolled before they report."""
    op = ops(conn)
    op.create_table("tenants",
                    Column("tenant_id", String(64), primary_key=True),
                    Column("name", String(200), nullable=False),
                    Column("kind", String(16), nullable=False),
                    Column("parent_id", String(64), FK("tenants.tenant_id")),
                    _ts("created_at", False), _ts("updated_at", False))
    op.create_index("ix_tenants_parent", "tenants", ["parent_id"])
    op.create_table("sites",
                    Column("site_id", String(64), primary_key=True),
                    Column("tenant_id", String(64), FK("tenants.tenant_id"), nullable=False),
                    Column("name", String(200)),
                    Column("address", Text),
                    Column("district", String(64)),
                    _ts("created_at", False), _ts("updated_at", False))
    op.create_index("ix_sites_tenant", "sites", ["tenant_id"])
    op.create_table("lines",
                    Column("line_id", String(64), primary_key=True),
                    Column("tenant_id", String(64), FK("tenants.tenant_id"), nullable=False),
                    Column("site_id", String(64), FK("sites.site_id"), nullable=False),
                    Column("name", String(200)),
                    Column("district", String(64)),
                    Column("segment", String(64)),
                    Column("plan_down_mbps", Float),
                    Column("plan_up_mbps", Float),
                    Column("account_since", Date),
                    _ts("created_at", False), _ts("updated_at", False))
    op.create_index("ix_lines_tenant", "lines", ["tenant_id"])
    op.create_index("ix_lines_site", "lines", ["site_id"])
    op.create_index("ix_lines_district_segment", "lines", ["district", "segment"])
    with op.batch_alter_table("agents") as batch:
        batch.alter_column("first_seen", existing_type=DateTime(timezone=True), nullable=True)
        batch.alter_column("last_seen", existing_type=DateTime(timezone=True), nullable=True)
        batch.add_column(_ts("enrolled_at"))
        batch.add_column(Column("report_interval_s", Integer))
    op.create_index("ix_agents_line", "agents", ["line_id"])


def v3_enrolment(conn: Connection) -> None:
    """One-time enrolment tokens (hashed) and the certificates issued to agents (for revocation)."""
    op = ops(conn)
    op.create_table("enrolment_tokens",
                    Column("token_hash", String(64), primary_key=True),
                    Column("agent_id", String(64), nullable=False),
                    Column("line_id", String(64), nullable=False),
                    Column("site_id", String(64), nullable=False),
                    _ts("created_at", False), _ts("expires_at", False), _ts("used_at"),
                    Column("created_by", String(64)))
    op.create_table("agent_certificates",
                    Column("serial", String(40), primary_key=True),
                    Column("agent_id", String(64), nullable=False),
                    _ts("issued_at", False), _ts("not_after", False), _ts("revoked_at"),
                    Column("revoked_reason", Text))
    op.create_index("ix_agent_certificates_agent", "agent_certificates", ["agent_id"])


def v4_console_access(conn: Connection) -> None:
    """Console and API access: users with a role and tenant, hashed API tokens and sessions, assignments."""
    op = ops(conn)
    op.create_table("users",
                    Column("user_id", String(64), primary_key=True),
                    Column("display_name", String(200)),
                    Column("role", String(24), nullable=False),
                    Column("tenant_id", String(64), FK("tenants.tenant_id")),
                    Column("password_hash", Text),
                    Column("language", String(8)),
                    _ts("created_at", False), _ts("disabled_at"))
    op.create_index("ix_users_tenant", "users", ["tenant_id"])
    op.create_table("api_tokens",
                    Column("token_id", String(24), primary_key=True),
                    Column("user_id", String(64), FK("users.user_id", ondelete="CASCADE"), nullable=False),
                    Column("kind", String(16), nullable=False),
                    Column("name", String(200)),
                    Column("secret_hash", String(64), nullable=False),
                    _ts("created_at", False), _ts("expires_at"), _ts("last_used_at"), _ts("revoked_at"))
    op.create_index("ix_api_tokens_user", "api_tokens", ["user_id"])
    op.create_table("user_lines",
                    Column("user_id", String(64), FK("users.user_id", ondelete="CASCADE"), nullable=False),
                    Column("line_id", String(64), nullable=False),
                    _ts("assigned_at", False),
                    PrimaryKeyConstraint("user_id", "line_id"))
    op.create_index("ix_user_lines_line", "user_lines", ["line_id"])


def v5_clock_flag(conn: Connection) -> None:
    """results.clock_flag: timestamps the collector found implausible (see collector/store/timeflags.py)."""
    with ops(conn).batch_alter_table("results") as batch:
        batch.add_column(Column("clock_flag", String(24)))


def v6_tickets(conn: Connection) -> None:
    """Tickets with events and evidence, remote commands (re-tests), notification outbox and log, daily metrics."""
    op = ops(conn)
    open_states = text("state IN ('open', 'acknowledged', 'dispatched')")
    outstanding = text("state IN ('pending', 'sent')")
    op.create_table("tickets",
                    Column("ticket_id", Integer, primary_key=True, autoincrement=True),
                    Column("line_id", String(64), nullable=False),
                    Column("fault_class", String(40), nullable=False),
                    Column("state", String(16), nullable=False),
                    Column("severity", String(16), nullable=False),
                    Column("location", String(40)),
                    Column("summary", Text, nullable=False),
                    Column("tenant_id", String(64)),
                    Column("site_id", String(64)),
                    Column("agent_id", String(64)),
                    Column("opened_by", String(64), nullable=False),
                    Column("assignee", String(64)),
                    Column("detail", Text),
                    _ts("opened_at", False), _ts("updated_at", False), _ts("acknowledged_at"),
                    _ts("dispatched_at"), _ts("resolved_at"), _ts("verified_at"))
    op.create_index("uq_tickets_open_line_class", "tickets", ["line_id", "fault_class"], unique=True,
                    sqlite_where=open_states, postgresql_where=open_states)
    op.create_index("ix_tickets_tenant_state", "tickets", ["tenant_id", "state", "opened_at"])
    op.create_index("ix_tickets_line_opened", "tickets", ["line_id", "opened_at"])
    op.create_index("ix_tickets_state_opened", "tickets", ["state", "opened_at"])
    op.create_table("ticket_events",
                    Column("event_id", Integer, primary_key=True, autoincrement=True),
                    Column("ticket_id", Integer, FK("tickets.ticket_id", ondelete="CASCADE"), nullable=False),
                    _ts("at", False),
                    Column("kind", String(24), nullable=False),
                    Column("from_state", String(16)),
                    Column("to_state", String(16)),
                    Column("actor", String(64), nullable=False),
                    Column("note", Text),
                    Column("result_id", String(36)))
    op.create_index("ix_ticket_events_ticket", "ticket_events", ["ticket_id", "event_id"])
    op.create_index("ix_ticket_events_kind_at", "ticket_events", ["kind", "at"])
    op.create_table("ticket_evidence",
                    Column("ticket_id", Integer, FK("tickets.ticket_id", ondelete="CASCADE"), nullable=False),
                    Column("agent_id", String(64), nullable=False),
                    Column("result_id", String(36), nullable=False),
                    Column("role", String(16), nullable=False),
                    _ts("added_at", False),
                    PrimaryKeyConstraint("ticket_id", "agent_id", "result_id", "role"))
    op.create_index("ix_ticket_evidence_result", "ticket_evidence", ["agent_id", "result_id"])
    op.create_table("commands",
                    Column("command_id", String(64), primary_key=True),
                    Column("agent_id", String(64), nullable=False),
                    Column("action", String(16), nullable=False),
                    Column("checks", Text),
                    Column("reason", Text),
                    Column("line_id", String(64)),
                    Column("fault_class", String(40)),
                    Column("state", String(16), nullable=False),
                    _ts("created_at", False), _ts("expires_at", False), _ts("sent_at"), _ts("answered_at"),
                    Column("answer_result_id", String(36)))
    op.create_index("uq_commands_outstanding_retest", "commands", ["line_id", "fault_class"], unique=True,
                    sqlite_where=outstanding, postgresql_where=outstanding)
    op.create_index("ix_commands_state_created", "commands", ["state", "created_at"])
    op.create_table("notifications",
                    Column("notification_id", Integer, primary_key=True, autoincrement=True),
                    Column("event_id", Integer, FK("ticket_events.event_id", ondelete="CASCADE"), nullable=False),
                    Column("target", String(100), nullable=False),
                    Column("state", String(16), nullable=False),
                    Column("attempts", Integer, nullable=False),
                    _ts("next_attempt_at", False), _ts("created_at", False), _ts("delivered_at"),
                    Column("last_error", Text),
                    UniqueConstraint("event_id", "target", name="uq_notifications_event_target"))
    op.create_index("ix_notifications_due", "notifications", ["state", "next_attempt_at"])
    op.create_table("notification_attempts",
                    Column("attempt_id", Integer, primary_key=True, autoincrement=True),
                    Column("notification_id", Integer, FK("notifications.notification_id", ondelete="CASCADE"),
                           nullable=False),
                    _ts("at", False),
                    Column("outcome", String(16), nullable=False),
                    Column("status_code", Integer),
                    Column("error", Text),
                    Column("duration_ms", Float))
    op.create_index("ix_notification_attempts_notification", "notification_attempts",
                    ["notification_id", "attempt_id"])
    op.create_table("daily_metrics",
                    Column("day", Date, nullable=False),
                    Column("line_id", String(64), nullable=False),
                    Column("kind", String(40), nullable=False),
                    Column("name", String(64), nullable=False),
                    Column("samples", Integer, nullable=False),
                    Column("total", Float, nullable=False),
                    Column("minimum", Float),
                    Column("maximum", Float),
                    Column("results", Integer, nullable=False),
                    Column("failed", Integer, nullable=False),
                    PrimaryKeyConstraint("day", "line_id", "kind", "name"))


def v7_seq_gaps(conn: Connection) -> None:
    """Per-agent sequence gaps: ranges of seq numbers not (yet) received, kept up to date at ingest."""
    op = ops(conn)
    op.create_table("seq_gaps",
                    Column("agent_id", String(64), nullable=False),
                    Column("first_seq", BigInteger, nullable=False),
                    Column("last_seq", BigInteger, nullable=False),
                    _ts("detected_at", False),
                    PrimaryKeyConstraint("agent_id", "first_seq"))


def v8_promises(conn: Connection) -> None:
    """The promise ledger: promises per line, imported billing records, the latest verdict per promise."""
    op = ops(conn)
    op.create_table("promises",
                    Column("promise_id", String(64), primary_key=True),
                    Column("line_id", String(64), nullable=False),
                    Column("kind", String(32), nullable=False),
                    Column("effective", Date, nullable=False),
                    Column("grace_days", Integer),
                    Column("terms", Text, nullable=False),
                    Column("note", Text),
                    _ts("created_at", False), _ts("updated_at", False))
    op.create_index("ix_promises_line", "promises", ["line_id"])
    op.create_table("billing_records",
                    Column("line_id", String(64), nullable=False),
                    Column("period", String(7), nullable=False),
                    Column("product", String(64), nullable=False),
                    Column("amount", Float, nullable=False),
                    Column("waived", Float, nullable=False),
                    Column("currency", String(3), nullable=False),
                    Column("source", String(255)),
                    _ts("imported_at", False),
                    PrimaryKeyConstraint("line_id", "period", "product"))
    op.create_table("promise_verdicts",
                    Column("promise_id", String(64), primary_key=True),
                    Column("line_id", String(64), nullable=False),
                    Column("kind", String(32), nullable=False),
                    Column("outcome", String(32), nullable=False),
                    Column("in_grace", Boolean, nullable=False),
                    Column("summary", Text, nullable=False),
                    Column("detail", Text, nullable=False),
                    Column("delivered_ratio", Float),
                    _ts("evaluated_at", False), _ts("judgeable_from", False), _ts("outcome_since", False),
                    Column("ticket_id", Integer))
    op.create_index("ix_promise_verdicts_line", "promise_verdicts", ["line_id"])
    op.create_index("ix_promise_verdicts_kind_outcome", "promise_verdicts", ["kind", "outcome"])



def v9_fleet_summary(conn: Connection) -> None:
    """The fleet's read model: line_state and results_hourly, filled from what is already stored.

    line_state: one row per line the collector knows (registered or reporting) with its tenant,
    district and newest result. results_hourly: results received per hour and tenant. agent_counts:
    agents and agents online per tenant, recomputed every few seconds (empty until then). The fleet
    list, its health filter and the overview read these instead of the registry, the agents and
    every line's results.
    """
    op = ops(conn)
    op.create_table("line_state",
                    Column("line_id", String(64), primary_key=True),
                    Column("tenant_id", String(64)),
                    Column("district", String(64)),
                    Column("agent_id", String(64)),
                    Column("result_id", String(36)),
                    Column("site_id", String(64)),
                    _ts("started_at"),
                    Column("verdict", String(16)))
    op.create_index("ix_line_state_verdict_line", "line_state", ["verdict", "line_id"])
    op.create_index("ix_line_state_tenant", "line_state", ["tenant_id", "district", "verdict"])
    newest = ("(SELECT line_id, agent_id, result_id, site_id, started_at, verdict FROM ("
              " SELECT line_id, agent_id, result_id, site_id, started_at, verdict, ROW_NUMBER() OVER ("
              "  PARTITION BY line_id ORDER BY started_at DESC, result_id DESC) AS newest FROM results) ranked"
              " WHERE newest = 1)")
    columns = "line_id, tenant_id, district, agent_id, result_id, site_id, started_at, verdict"
    conn.execute(text(
        f"INSERT INTO line_state ({columns}) SELECT l.line_id, l.tenant_id, l.district, r.agent_id, r.result_id, "
        f"r.site_id, r.started_at, r.verdict FROM lines l LEFT JOIN {newest} r ON r.line_id = l.line_id"))
    conn.execute(text(
        f"INSERT INTO line_state ({columns}) SELECT r.line_id, NULL, NULL, r.agent_id, r.result_id, r.site_id, "
        f"r.started_at, r.verdict FROM {newest} r WHERE r.line_id NOT IN (SELECT line_id FROM lines)"))
    conn.execute(text(
        "INSERT INTO line_state (line_id, site_id) SELECT line_id, MIN(site_id) FROM agents "
        "WHERE line_id NOT IN (SELECT line_id FROM line_state) GROUP BY line_id"))
    op.create_table("results_hourly",
                    _ts("hour", False),
                    Column("tenant_id", String(64), nullable=False),
                    Column("shard", Integer, nullable=False),
                    Column("results", BigInteger, nullable=False),
                    PrimaryKeyConstraint("hour", "tenant_id", "shard"))
    if conn.dialect.name == "postgresql":
        hour = "date_trunc('hour', r.received_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        since = "now() - interval '2 days'"
    else:
        hour = "strftime('%Y-%m-%d %H:00:00.000000', r.received_at)"
        since = "strftime('%Y-%m-%d %H:%M:%f', 'now', '-2 days')"
    conn.execute(text(
        f"INSERT INTO results_hourly (hour, tenant_id, shard, results) SELECT {hour}, COALESCE(s.tenant_id, ''), 0, "
        f"COUNT(*) FROM results r LEFT JOIN line_state s ON s.line_id = r.line_id WHERE r.received_at >= {since} "
        f"GROUP BY {hour}, COALESCE(s.tenant_id, '')"))
    op.create_table("agent_counts",
                    Column("tenant_id", String(64), primary_key=True),
                    Column("agents", BigInteger, nullable=False),
                    Column("agents_online", BigInteger, nullable=False),
                    _ts("computed_at", False))
    # Substring search of the fleet list (?q= on line id, name, site): trigram index on PostgreSQL
    # (pg_trgm ships with PostgreSQL and is a trusted extension). Where it cannot be installed, and on
    # SQLite, an ordinary index of the same name and columns keeps the schema's shape; search scans.
    if conn.dialect.name == "postgresql":
        try:
            with conn.begin_nested():
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
                conn.execute(text("CREATE INDEX ix_lines_search ON lines USING gin "
                                  "(line_id gin_trgm_ops, name gin_trgm_ops, site_id gin_trgm_ops)"))
            return
        except DBAPIError as exc:
            logging.getLogger(__name__).warning("pg_trgm unavailable (%s): line search will scan the registry",
                                                str(exc.orig).strip().splitlines()[0])
    op.create_index("ix_lines_search", "lines", ["line_id", "name", "site_id"])


def v10_command_log(conn: Connection) -> None:
    """Remote commands people sent (API, console, CLI): who asked, for which agent, when. The rate limits
    of collector/commands/limits.py count these rows, so every collector process shares them."""
    op = ops(conn)
    op.create_table("command_log",
                    Column("command_id", String(64), primary_key=True),
                    Column("agent_id", String(64), nullable=False),
                    Column("line_id", String(64)),
                    Column("requested_by", String(128)),
                    Column("action", String(16), nullable=False),
                    _ts("sent_at", False))
    op.create_index("ix_command_log_agent_sent", "command_log", ["agent_id", "sent_at"])
    op.create_index("ix_command_log_user_sent", "command_log", ["requested_by", "sent_at"])
    op.create_index("ix_command_log_sent", "command_log", ["sent_at"])


def v11_ticket_event_phrases(conn: Connection) -> None:
    """ticket_events.said: what the system wrote on a ticket (its summary when opened, why a rule or the promise
    ledger resolved it) as phrases (linecheck/i18n/phrases.py, JSON), so the console shows it in the reader's
    language; `note` keeps the English text (and people's notes, which are theirs)."""
    with ops(conn).batch_alter_table("ticket_events") as batch:
        batch.add_column(Column("said", Text))


def v12_access_incidents(conn: Connection) -> None:
    """Access topology and area incidents (issue 24): lines.access_path as imported ('district/CO/OLT/PON/
    splitter'), one access_nodes row per line and depth (lines behind a node by index), incidents with their
    member lines, and faults held back from a ticket while the correlator decides (collector/incidents/)."""
    o = ops(conn)
    with o.batch_alter_table("lines") as batch:
        batch.add_column(Column("access_path", String(512)))
    o.create_table("access_nodes",
                   Column("line_id", String(64), nullable=False),
                   Column("depth", Integer, nullable=False),
                   Column("level", String(32), nullable=False),
                   Column("node", String(512), nullable=False),
                   PrimaryKeyConstraint("line_id", "depth"))
    o.create_index("ix_access_nodes_node", "access_nodes", ["node"])
    o.create_table("incidents",
                   Column("incident_id", Integer, primary_key=True, autoincrement=True),
                   Column("node", String(512), nullable=False),
                   Column("level", String(32), nullable=False),
                   Column("district", String(64)),
                   Column("fault_class", String(40), nullable=False),
                   Column("state", String(16), nullable=False),
                   Column("ticket_id", Integer),
                   Column("lines_reporting", Integer, nullable=False),
                   _ts("opened_at", False), _ts("updated_at", False), _ts("resolved_at"))
    o.create_index("ix_incidents_state_opened", "incidents", ["state", "opened_at"])
    o.create_index("ix_incidents_node_class", "incidents", ["node", "fault_class"])
    o.create_table("incident_members",
                   Column("incident_id", Integer, FK("incidents.incident_id", ondelete="CASCADE"), nullable=False),
                   Column("line_id", String(64), nullable=False),
                   _ts("joined_at", False), _ts("recovered_at"),
                   Column("ticket_id", Integer),
                   Column("outcome", Text),
                   PrimaryKeyConstraint("incident_id", "line_id"))
    o.create_index("ix_incident_members_line", "incident_members", ["line_id"])
    o.create_table("held_faults",
                   Column("line_id", String(64), nullable=False),
                   Column("fault_class", String(40), nullable=False),
                   _ts("first_at", False), _ts("last_at", False), _ts("recovered_at"),
                   Column("outcome", Text, nullable=False),
                   PrimaryKeyConstraint("line_id", "fault_class"))
    o.create_index("ix_held_faults_first", "held_faults", ["first_at"])


# --- migration 13: one row per result, partitioned by day on PostgreSQL ---------------------------------

_V13_COLUMNS = ("agent_id varchar(64) NOT NULL, result_id varchar(36) NOT NULL, seq bigint NOT NULL, "
                "line_id varchar(64) NOT NULL, site_id varchar(64) NOT NULL, trigger varchar(32) NOT NULL, "
                "started_at timestamptz NOT NULL, ended_at timestamptz NOT NULL, received_at timestamptz NOT NULL, "
                "verdict varchar(16) NOT NULL, clock_synced integer, agent_version varchar(40) NOT NULL, "
                "clock_flag varchar(24), doc jsonb NOT NULL")


def v13_pg_views(j: str = "jsonb") -> dict[str, str]:
    """The views' SQL on PostgreSQL for a `jsonb` document (what migration 13 creates) or a `json` one
    (bench/layout_queries.py --doc json measures that alternative): values are read as text, then cast."""
    checks = (f"FROM results r CROSS JOIN LATERAL {j}_array_elements(r.doc->'checks') WITH ORDINALITY c(item, ord)")
    return {
        "checks": "SELECT r.agent_id, r.result_id, (c.ord - 1)::integer AS idx, r.line_id, r.started_at, "
                  "c.item->>'kind' AS kind, c.item->>'target' AS target, c.item->>'status' AS status, "
                  f"c.item->>'reason' AS reason, (c.item->>'duration_s')::float8 AS duration_s {checks}",
        "metrics": "SELECT r.agent_id, r.result_id, (c.ord - 1)::integer AS idx, m.key AS name, "
                   f"CASE {j}_typeof(m.value) WHEN 'number' THEN (m.value #>> '{{}}')::float8 "
                   "WHEN 'boolean' THEN CASE WHEN (m.value #>> '{}')::boolean THEN 1.0 ELSE 0.0 END END AS value, "
                   f"r.line_id, r.started_at {checks} CROSS JOIN LATERAL {j}_each(c.item->'metrics') m(key, value)",
        "findings": "SELECT r.agent_id, r.result_id, (f.ord - 1)::integer AS idx, r.line_id, r.started_at, "
                    "f.item->>'code' AS code, f.item->>'severity' AS severity, f.item->>'check' AS check_kind, "
                    "f.item->>'where' AS location, f.item->>'message' AS message FROM results r CROSS JOIN LATERAL "
                    f"{j}_array_elements(r.doc->'findings') WITH ORDINALITY f(item, ord)",
    }


# The old tables' shape, expanded from the document (idx = position in the envelope, as before).
_V13_VIEWS = {
    "postgresql": v13_pg_views("jsonb"),
    "sqlite": {
        "checks": "SELECT r.agent_id, r.result_id, CAST(c.key AS INTEGER) AS idx, r.line_id, r.started_at, "
                  "json_extract(c.value, '$.kind') AS kind, json_extract(c.value, '$.target') AS target, "
                  "json_extract(c.value, '$.status') AS status, json_extract(c.value, '$.reason') AS reason, "
                  "CAST(json_extract(c.value, '$.duration_s') AS REAL) AS duration_s "
                  "FROM results r, json_each(r.doc, '$.checks') c",
        "metrics": "SELECT r.agent_id, r.result_id, CAST(c.key AS INTEGER) AS idx, m.key AS name, "
                   "CASE WHEN m.type IN ('integer', 'real', 'true', 'false') THEN CAST(m.atom AS REAL) END AS value, "
                   "r.line_id, r.started_at "
                   "FROM results r, json_each(r.doc, '$.checks') c, json_each(c.value, '$.metrics') m",
        "findings": "SELECT r.agent_id, r.result_id, CAST(f.key AS INTEGER) AS idx, r.line_id, r.started_at, "
                    "json_extract(f.value, '$.code') AS code, json_extract(f.value, '$.severity') AS severity, "
                    "json_extract(f.value, '$.check') AS check_kind, json_extract(f.value, '$.where') AS location, "
                    "json_extract(f.value, '$.message') AS message "
                    "FROM results r, json_each(r.doc, '$.findings') f",
    },
}

LEGACY_RESULTS = "results_v12"  # migration 13 keeps a non-empty old table under this name (collector/store/relayout.py)


def v13_compact_results(conn: Connection) -> None:
    """One row per result: typed columns plus a compact document (collector/store/documents.py); checks,
    metrics and findings become views of the same columns over it. On PostgreSQL `results` is partitioned
    by day of started_at with a default partition (collector/store/partitions.py creates the days).

    The schema step is instant on any size: the old checks/metrics/findings (derived from the payload at
    ingest) are dropped, a non-empty old `results` is kept as `results_v12` and copied over online in
    batches afterwards (collector/store/relayout.py); an empty one is dropped.
    """
    pg = conn.dialect.name == "postgresql"
    for name in ("metrics", "findings", "checks"):
        conn.execute(text(f"DROP TABLE {name}"))
    for name in ("ix_results_line_started", "ix_results_agent_seq", "ix_results_received"):
        conn.execute(text(f"DROP INDEX {name}"))
    if conn.execute(text("SELECT 1 FROM results LIMIT 1")).first() is None:
        conn.execute(text("DROP TABLE results"))
    else:
        conn.execute(text(f"ALTER TABLE results RENAME TO {LEGACY_RESULTS}"))
        if pg:
            conn.execute(text(f"ALTER TABLE {LEGACY_RESULTS} RENAME CONSTRAINT results_pkey TO {LEGACY_RESULTS}_pkey"))
    if pg:
        conn.execute(text(f"CREATE TABLE results ({_V13_COLUMNS}, CONSTRAINT results_pkey "
                          "PRIMARY KEY (agent_id, result_id, started_at)) PARTITION BY RANGE (started_at)"))
        conn.execute(text("CREATE TABLE results_default PARTITION OF results DEFAULT"))
    else:
        columns = _V13_COLUMNS.replace("jsonb", "JSON").replace("timestamptz", "DATETIME")
        conn.execute(text(f"CREATE TABLE results ({columns}, PRIMARY KEY (agent_id, result_id))"))
    conn.execute(text("CREATE INDEX ix_results_line_started ON results (line_id, started_at)"))
    conn.execute(text("CREATE INDEX ix_results_agent_seq ON results (agent_id, seq)"))
    # received_at grows with the insert order inside each day, so a BRIN index (a few bytes per 128 pages)
    # finds the last hour's rows as well as a B-tree (~25 bytes per result) did.
    conn.execute(text(f"CREATE INDEX ix_results_received ON results {'USING brin ' if pg else ''}(received_at)"))
    for name, body in _V13_VIEWS["postgresql" if pg else "sqlite"].items():
        conn.execute(text(f"CREATE VIEW {name} AS {body}"))
    if pg:
        _jit_off(conn)


def _jit_off(conn: Connection) -> None:
    """The planner guesses 100 rows for every jsonb_array_elements/jsonb_each call, so a query joining the
    views looks 10^4 times dearer than it is, crosses jit_above_cost and spends seconds compiling code for
    milliseconds of work (measured: 7 s instead of 20 ms). JIT off for every session of this database
    (the collectors' and Grafana's); where the role may not alter the database, the collector's own
    sessions still turn it off (database.make_engine) and a warning says what to set."""
    try:
        with conn.begin_nested():
            conn.execute(text("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET jit = off', current_database()); "
                              "END $$"))
    except DBAPIError as exc:
        logging.getLogger(__name__).warning(
            "cannot set jit = off on this database (%s): set it for the role Grafana uses "
            "(ALTER ROLE ... SET jit = off)",
            str(exc.orig).strip().splitlines()[0])


def v14_agent_spool_backlog(conn: Connection) -> None:
    """agents.spool_backlog: the spool backlog the agent reported in its newest result, kept at ingest. The
    agents page and line detail read it from here; before, they found each agent's newest result by (agent,
    seq) in every day partition and expanded its document (100-150 ms for a page of 50 agents at 10M
    results). Agents migrated from an earlier version show it from their next result."""
    with ops(conn).batch_alter_table("agents") as batch:
        batch.add_column(Column("spool_backlog", BigInteger))


# Migration 15's checks view: the version 13 columns plus `metrics`, the check's metrics as one JSON object.
_V15_CHECKS = {
    "postgresql": v13_pg_views("jsonb")["checks"].replace(
        " FROM results r", ", c.item->'metrics' AS metrics FROM results r", 1),
    "sqlite": _V13_VIEWS["sqlite"]["checks"].replace(
        " FROM results r", ", json_extract(c.value, '$.metrics') AS metrics FROM results r", 1),
}


def v15_check_metrics_column(conn: Connection) -> None:
    """The checks view gains `metrics` (the check's metrics, one JSON object), appended after the old columns
    (the Grafana panels' SQL is unchanged). Readers that want a check with its metrics read this one view
    instead of joining checks to metrics: each of those views expands every document of the rows it reads,
    so the join expanded them twice and matched in a hash (line series 50 ms -> 2 ms, the promise ledger's
    evidence and the outage timeline likewise, at 10M results)."""
    pg = conn.dialect.name == "postgresql"
    if pg:
        conn.execute(text(f"CREATE OR REPLACE VIEW checks AS {_V15_CHECKS['postgresql']}"))
    else:
        conn.execute(text("DROP VIEW checks"))
        conn.execute(text(f"CREATE VIEW checks AS {_V15_CHECKS['sqlite']}"))

