"""Write the Grafana dashboards (dashboards/*.json) from the panel definitions below.

    python dashboards/generate.py        # rewrite the JSON files
    python dashboards/generate.py --check  # exit 1 if a JSON file differs (tests run this)

Panels are SQL against the collector's PostgreSQL schema; tests/test_dashboards.py runs every
panel's query (Grafana macros expanded) on a migrated database with fixture data, so a schema
change that breaks a panel fails the suite. Filters: $district and $tenant (multi-value, "All" =
'__all'). Lines that report but are not registered have no district or tenant: they count under
"All" only. `collector-metrics.json` is PromQL over the collectors' own /metrics; the test checks
every metric it queries is exported by a running collector.

No dashboard names a data source uid. Every panel, target and query variable refers to
`${DS_LINECHECK_PG}` (or `${DS_PROMETHEUS}`), declared in `__inputs`: importing the JSON through
Grafana's UI (Dashboards > New > Import) asks which data source to use and writes it in. A file
provisioned dashboard is not imported, so each also has a data source variable of that same name
(the picker at its top): Grafana resolves `${DS_...}` through it to the first data source of the
type, or the one picked (grafana/grafana#10786 is why both are needed).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GRAFANA_MIN = "10.0.0"  # the PostgreSQL plugin id grafana-postgresql-datasource and schemaVersion 39


@dataclass(frozen=True)
class Source:
    """A data source input: named in __inputs, picked on import or through the same-named variable."""

    input: str
    plugin: str
    plugin_name: str
    label: str
    description: str

    @property
    def ref(self) -> dict[str, str]:
        return {"type": self.plugin, "uid": "${" + self.input + "}"}


PG = Source("DS_LINECHECK_PG", "grafana-postgresql-datasource", "PostgreSQL", "linecheck PostgreSQL",
            "The collector's PostgreSQL database (a read-only role: docs/console.md)")
PROMETHEUS = Source("DS_PROMETHEUS", "prometheus", "Prometheus", "Prometheus",
                    "The Prometheus that scrapes the collectors' /metrics")
DATASOURCE = PG.ref

# A line's registry row (may be missing) with the dashboard's filters.
LINE_FILTER = ("('__all' IN ($district) OR l.district IN ($district)) "
               "AND ('__all' IN ($tenant) OR l.tenant_id IN ($tenant))")
LATEST = ("SELECT DISTINCT ON (r.line_id) r.line_id, r.verdict, r.started_at FROM results r "
          "ORDER BY r.line_id, r.started_at DESC")


def variables() -> list[dict[str, Any]]:
    def var(name: str, label: str, sql: str) -> dict[str, Any]:
        return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE, "query": sql,
                "definition": sql, "multi": True, "includeAll": True, "allValue": "'__all'",
                "current": {"text": "All", "value": "$__all"}, "refresh": 1, "sort": 1}

    return [var("district", "District", "SELECT DISTINCT district FROM lines WHERE district IS NOT NULL"),
            var("tenant", "Tenant", "SELECT tenant_id FROM tenants ORDER BY tenant_id")]


def datasource_variable(src: Source) -> dict[str, Any]:
    """The picker that resolves ${DS_...} when the dashboard is provisioned from a file."""
    return {"name": src.input, "label": "Data source", "type": "datasource", "query": src.plugin,
            "description": src.description, "current": {}, "hide": 0, "includeAll": False, "multi": False,
            "options": [], "refresh": 1, "regex": ""}


def panel(title: str, kind: str, sql: str, x: int, y: int, w: int = 12, h: int = 8, fmt: str | None = None,
          unit: str | None = None, description: str = "") -> dict[str, Any]:
    fmt = fmt or ("time_series" if kind == "timeseries" else "table")
    return _panel(title, kind, PG, [{"refId": "A", "datasource": DATASOURCE, "rawQuery": True, "editorMode": "code",
                                     "format": fmt, "rawSql": " ".join(sql.split())}], x, y, w, h, unit, description)


def prom_panel(title: str, kind: str, queries: dict[str, str], x: int, y: int, w: int = 12, h: int = 8,
               unit: str | None = None, description: str = "") -> dict[str, Any]:
    """PromQL panel: legend -> expression (one target each)."""
    targets = [{"refId": chr(ord("A") + i), "datasource": PROMETHEUS.ref, "editorMode": "code", "range": True,
                "expr": " ".join(expr.split()), "legendFormat": legend}
               for i, (legend, expr) in enumerate(queries.items())]
    return _panel(title, kind, PROMETHEUS, targets, x, y, w, h, unit, description)


def _panel(title: str, kind: str, src: Source, targets: list[dict[str, Any]], x: int, y: int, w: int, h: int,
           unit: str | None, description: str) -> dict[str, Any]:
    p: dict[str, Any] = {
        "type": kind, "title": title, "description": description, "datasource": src.ref,
        "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
        "options": {},
    }
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "none"}
    return p


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]], src: Source = PG,
              filters: list[dict[str, Any]] | None = None, time_from: str = "now-7d",
              refresh: str = "5m") -> dict[str, Any]:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    requires = [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_MIN},
                {"type": "datasource", "id": src.plugin, "name": src.plugin_name, "version": "1.0.0"}]
    requires += [{"type": "panel", "id": kind, "name": kind, "version": ""}
                 for kind in sorted({p["type"] for p in panels})]
    return {"__inputs": [{"name": src.input, "label": src.label, "description": src.description, "type": "datasource",
                          "pluginId": src.plugin, "pluginName": src.plugin_name}],
            "__requires": requires, "id": None,
            "uid": uid, "title": title, "description": description, "tags": ["linecheck"], "editable": True,
            "schemaVersion": 39, "version": 1, "time": {"from": time_from, "to": "now"}, "timezone": "browser",
            "refresh": refresh,
            "templating": {"list": [datasource_variable(src), *(variables() if filters is None else filters)]},
            "annotations": {"list": []}, "panels": panels}


def fleet_health() -> dict[str, Any]:
    return dashboard("linecheck-fleet-health", "linecheck · Fleet health",
                     "Health of every line from its latest result, faults found, throughput against plan.", [
        panel("Lines by health of their latest result", "piechart", f"""
            SELECT coalesce(x.verdict, 'no data') AS health, count(*) AS lines
            FROM (SELECT line_id FROM lines UNION SELECT line_id FROM agents) ids
            LEFT JOIN lines l ON l.line_id = ids.line_id
            LEFT JOIN ({LATEST}) x ON x.line_id = ids.line_id
            WHERE {LINE_FILTER} GROUP BY 1 ORDER BY 1""", 0, 0, 8),
        panel("Open tickets by fault class", "barchart", f"""
            SELECT k.fault_class, count(*) AS tickets FROM tickets k LEFT JOIN lines l ON l.line_id = k.line_id
            WHERE k.state IN ('open', 'acknowledged', 'dispatched') AND {LINE_FILTER}
            GROUP BY 1 ORDER BY 2 DESC""", 0, 27, 12, 8),
        panel("Agents online", "stat", """
            SELECT count(*) FILTER (WHERE status = 'online') AS online, count(*) AS agents FROM agents""",
              8, 0, 4),
        panel("Results per hour by verdict", "timeseries", f"""
            SELECT $__timeGroupAlias(r.started_at, 1h), r.verdict AS metric, count(*) AS value
            FROM results r LEFT JOIN lines l ON l.line_id = r.line_id
            WHERE $__timeFilter(r.started_at) AND {LINE_FILTER}
            GROUP BY 1, 2 ORDER BY 1""", 12, 0),
        panel("Lines with problems now", "table", f"""
            SELECT x.line_id AS line, l.tenant_id AS tenant, l.district, x.started_at AS "last result",
                   string_agg(DISTINCT f.code, ', ') AS findings
            FROM ({LATEST}) x LEFT JOIN lines l ON l.line_id = x.line_id
            LEFT JOIN findings f ON f.line_id = x.line_id AND f.started_at = x.started_at
            WHERE x.verdict = 'problems' AND {LINE_FILTER}
            GROUP BY 1, 2, 3, 4 ORDER BY 4 DESC LIMIT 200""", 0, 8, 12, 10),
        panel("Findings by code", "barchart", f"""
            SELECT f.code, count(*) AS findings FROM findings f LEFT JOIN lines l ON l.line_id = f.line_id
            WHERE $__timeFilter(f.started_at) AND {LINE_FILTER} GROUP BY 1 ORDER BY 2 DESC LIMIT 20""",
              12, 8, 12, 10),
        panel("Measured download as a share of plan (median per day, by district)", "timeseries", f"""
            SELECT $__timeGroupAlias(m.started_at, 1d), coalesce(l.district, '(none)') AS metric,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY m.value / l.plan_down_mbps) AS value
            FROM metrics m JOIN lines l ON l.line_id = m.line_id
            WHERE m.name = 'down_mbps' AND m.value IS NOT NULL AND l.plan_down_mbps > 0
              AND $__timeFilter(m.started_at) AND {LINE_FILTER}
            GROUP BY 1, 2 ORDER BY 1""", 0, 18, 24, 9, unit="percentunit"),
    ])


def reopening_wave() -> dict[str, Any]:
    return dashboard("linecheck-reopening", "linecheck · Reopening wave",
                     "Lines checked when an office came back after a long idle period, and the faults found.", [
        panel("Lines checked after idle, per day", "timeseries", f"""
            SELECT $__timeGroupAlias(r.started_at, 1d), 'lines checked' AS metric,
                   count(DISTINCT r.line_id) AS value
            FROM results r LEFT JOIN lines l ON l.line_id = r.line_id
            WHERE r.trigger IN ('resume_after_idle', 'idle_watchdog') AND $__timeFilter(r.started_at)
              AND {LINE_FILTER}
            GROUP BY 1 ORDER BY 1""", 0, 0),
        panel("Faults found on reopening, per day", "timeseries", f"""
            SELECT $__timeGroupAlias(r.started_at, 1d), 'lines with problems' AS metric,
                   count(DISTINCT r.line_id) AS value
            FROM results r LEFT JOIN lines l ON l.line_id = r.line_id
            WHERE r.trigger IN ('resume_after_idle', 'idle_watchdog') AND r.verdict = 'problems'
              AND $__timeFilter(r.started_at) AND {LINE_FILTER}
            GROUP BY 1 ORDER BY 1""", 12, 0),
        panel("Share of reopened lines with problems, by district", "barchart", f"""
            SELECT coalesce(l.district, '(none)') AS district,
                   count(DISTINCT r.line_id) FILTER (WHERE r.verdict = 'problems')::float
                     / nullif(count(DISTINCT r.line_id), 0) AS share
            FROM results r LEFT JOIN lines l ON l.line_id = r.line_id
            WHERE r.trigger IN ('resume_after_idle', 'idle_watchdog') AND $__timeFilter(r.started_at)
              AND {LINE_FILTER}
            GROUP BY 1 ORDER BY 2 DESC""", 0, 8, unit="percentunit"),
        panel("What was wrong on reopening", "table", f"""
            SELECT f.code, f.location AS "where", count(DISTINCT f.line_id) AS lines
            FROM findings f JOIN results r ON r.agent_id = f.agent_id AND r.result_id = f.result_id
              AND r.started_at = f.started_at
            LEFT JOIN lines l ON l.line_id = f.line_id
            WHERE r.trigger IN ('resume_after_idle', 'idle_watchdog') AND $__timeFilter(f.started_at)
              AND $__timeFilter(r.started_at)
              AND {LINE_FILTER}
            GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 50""", 12, 8),
    ])


def promise_compliance() -> dict[str, Any]:
    return dashboard("linecheck-promises", "linecheck · Promise compliance",
                     "Are promised upgrades delivered? The latest verdict of every promise, from the promise ledger.", [
        panel("Promises by outcome", "piechart", f"""
            SELECT v.outcome, count(*) AS promises FROM promise_verdicts v LEFT JOIN lines l ON l.line_id = v.line_id
            WHERE {LINE_FILTER} GROUP BY 1 ORDER BY 1""", 0, 0, 8),
        # Judged = delivered or not delivered, past the grace window (collector/promises/model.py DECISIVE):
        # a district with nothing judged has no share (NULL, no bar), never a 0 % bar.
        panel("Share delivered by district (judged promises)", "barchart", f"""
            SELECT coalesce(l.district, '(none)') AS district,
                   count(*) FILTER (WHERE v.outcome = 'delivered')::float
                     / NULLIF(count(*) FILTER (WHERE v.outcome IN ('delivered', 'not_delivered')), 0) AS delivered
            FROM promise_verdicts v LEFT JOIN lines l ON l.line_id = v.line_id
            WHERE NOT v.in_grace AND {LINE_FILTER} GROUP BY 1 ORDER BY 2""", 8, 0, 8, unit="percentunit"),
        panel("Median measured / promised by district and kind", "table", f"""
            SELECT coalesce(l.district, '(none)') AS district, v.kind,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY v.delivered_ratio) AS "median ratio",
                   count(*) AS promises
            FROM promise_verdicts v LEFT JOIN lines l ON l.line_id = v.line_id
            WHERE v.delivered_ratio IS NOT NULL AND {LINE_FILTER} GROUP BY 1, 2 ORDER BY 1, 2""", 16, 0, 8),
        panel("Promises not delivered", "table", f"""
            SELECT v.line_id AS line, l.tenant_id AS tenant, l.district, v.kind, v.outcome_since AS since,
                   v.ticket_id AS ticket, v.summary
            FROM promise_verdicts v LEFT JOIN lines l ON l.line_id = v.line_id
            WHERE v.outcome IN ('not_delivered', 'limited_by_local_equipment') AND {LINE_FILTER}
            ORDER BY v.outcome_since LIMIT 200""", 0, 8, 24, 10),
    ])


def ingest_health() -> dict[str, Any]:
    return dashboard("linecheck-ingest", "linecheck · Ingest health",
                     "What reached the collector, how late, what was refused, which agents miss results.", [
        panel("Results received per hour", "timeseries", """
            SELECT $__timeGroupAlias(received_at, 1h), 'results' AS metric, count(*) AS value
            FROM results WHERE $__timeFilter(received_at) GROUP BY 1 ORDER BY 1""", 0, 0),
        panel("Delivery delay (end of check → stored), p50 and p95", "timeseries", """
            SELECT $__timeGroupAlias(received_at, 1h),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - ended_at)) AS p50,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - ended_at)) AS p95
            FROM results WHERE $__timeFilter(received_at) GROUP BY 1 ORDER BY 1""", 12, 0, unit="s",
              description="Large delays are results that waited in an agent's spool (offline, broker down)."),
        panel("Quarantined messages per hour", "timeseries", """
            SELECT $__timeGroupAlias(received_at, 1h), split_part(reason, ':', 1) AS metric, count(*) AS value
            FROM quarantine WHERE $__timeFilter(received_at) GROUP BY 1, 2 ORDER BY 1""", 0, 8),
        panel("Agents by status", "piechart", """
            SELECT coalesce(status, 'never reported status') AS status, count(*) AS agents
            FROM agents GROUP BY 1 ORDER BY 1""", 12, 8, 6),
        panel("Results with an unsynchronised clock", "stat", """
            SELECT count(*) FILTER (WHERE clock_synced = 0)::float / nullif(count(*), 0) AS share
            FROM results WHERE $__timeFilter(received_at)""", 18, 8, 6, unit="percentunit"),
        panel("Agents missing results (sequence gaps)", "table", """
            SELECT agent_id, line_id, max_seq AS "highest seq", result_count AS "stored",
                   max_seq - result_count AS missing, last_seen AS "last seen"
            FROM agents WHERE max_seq > result_count ORDER BY missing DESC LIMIT 100""", 0, 16, 24, 8,
              description="Numbered by the agent but not stored here: still spooled, or lost."),
    ])


def collector_metrics() -> dict[str, Any]:
    """The collectors themselves, from their /metrics (collector/service/metrics.py). Counters and the
    latency histogram are per collector (sum them); database gauges are fleet-wide (max)."""
    sel = '{instance=~"$instance"}'
    instance = {"name": "instance", "label": "Collector", "type": "query", "datasource": PROMETHEUS.ref,
                "query": {"query": "label_values(linecheck_database_up, instance)", "refId": "instance"},
                "definition": "label_values(linecheck_database_up, instance)", "multi": True, "includeAll": True,
                "current": {"text": "All", "value": "$__all"}, "refresh": 2, "sort": 1}
    return dashboard("linecheck-collector", "linecheck · Collectors (Prometheus)",
                     "The collectors' own health from /metrics: broker connection, ingest rate and delay, "
                     "receipts, quarantine, agents, open tickets.", [
        prom_panel("Broker connected", "stat", {"{{instance}}": f"linecheck_broker_connected{sel}"}, 0, 0, 6, 4,
                   description="1 = ingest is connected to the broker; 0 = nothing arrives (see /healthz)."),
        prom_panel("Ingest stalled", "stat", {"{{instance}}": f"linecheck_ingest_stalled{sel}"}, 6, 0, 6, 4,
                   description="1 = the oldest message taken from the broker waits too long for its commit."),
        prom_panel("Database readable", "stat", {"{{instance}}": f"linecheck_database_up{sel}"}, 12, 0, 6, 4),
        prom_panel("Broker connect failures (1 h)", "stat",
                   {"{{instance}}": f"increase(linecheck_broker_connect_failures_total{sel}[1h])"}, 18, 0, 6, 4),
        prom_panel("Messages handled per second", "timeseries", {
            "{{outcome}}": f"sum by (outcome) (rate(linecheck_ingest_messages_total{sel}[$__rate_interval]))"},
                   0, 4, 12, 8, unit="reqps"),
        prom_panel("Receipt latency (arrival → receipt published)", "timeseries", {
            q: f"histogram_quantile({v}, sum by (le) (rate(linecheck_receipt_latency_seconds_bucket{sel}"
               "[$__rate_interval])))" for q, v in (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99"))},
                   12, 4, 12, 8, unit="s"),
        prom_panel("Ingest backlog", "timeseries", {
            "pending {{instance}}": f"linecheck_ingest_pending_messages{sel}",
            "oldest un-acked (s) {{instance}}": f"linecheck_ingest_oldest_unacked_seconds{sel}",
            "without broker (s) {{instance}}": f"linecheck_broker_down_seconds{sel}"}, 0, 12, 12, 8),
        prom_panel("Agents by state", "timeseries", {"{{state}}": f"max by (state) (linecheck_agents{sel})"},
                   12, 12, 12, 8),
        prom_panel("Open tickets by fault class", "timeseries", {
            "{{fault_class}}": f"max by (fault_class) (linecheck_tickets_open{sel})"}, 0, 20, 12, 8),
        prom_panel("Quarantine and missing results", "timeseries", {
            "quarantined messages": f"max(linecheck_quarantine_messages{sel})",
            "missing results (seq gaps)": f"max(linecheck_results_missing{sel})",
            "agents with gaps": f"max(linecheck_agents_with_gaps{sel})"}, 12, 20, 12, 8),
        prom_panel("Results stored", "timeseries", {"stored": f"max(linecheck_results_stored{sel})",
                                                     "online agents": f"max(linecheck_agents_online{sel})"},
                   0, 28, 12, 8),
        prom_panel("Database outages waited out by ingest", "timeseries", {
            "{{instance}}": f"linecheck_ingest_db_retries{sel}"}, 12, 28, 12, 8),
    ], src=PROMETHEUS, filters=[instance], time_from="now-6h", refresh="1m")


DASHBOARDS = {"fleet-health.json": fleet_health, "reopening-wave.json": reopening_wave,
              "promise-compliance.json": promise_compliance, "ingest-health.json": ingest_health,
              "collector-metrics.json": collector_metrics}


def render() -> dict[str, str]:
    return {name: json.dumps(make(), indent=2, ensure_ascii=False) + "\n" for name, make in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    stale = []
    for name, text in render().items():
        path = HERE / name
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)} (run python dashboards/generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
