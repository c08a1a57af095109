"""A stored result as one compact document: the envelope minus what the `results` row already types.

The `results` row keeps agent, result id, seq, line, site, trigger, times, verdict and agent version
as typed columns (indexed, filtered, joined); `doc` keeps the rest — checks with their metrics,
findings, trigger info, clock — without the values a validated envelope would fill in again
(null reasons and targets, empty lists and dicts, schema 1). JSONB on PostgreSQL, JSON text on
SQLite; the views `checks`, `metrics` and `findings` (migration 13) expand it for SQL readers.

`pack` and `envelope` are inverse up to validation: `envelope(row)` equals the envelope `pack` was
given (tests/test_store_layout.py), so re-processing, evidence and duplicate detection read it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from linecheck.wire import ResultEnvelope

# Envelope fields that are typed columns of `results` (same names), so not repeated in `doc`.
TYPED = ("result_id", "agent_id", "seq", "line_id", "site_id", "trigger", "started_at", "ended_at",
         "agent_version", "verdict")
# Keys dropped when they hold what validation fills in anyway (their model default).
_EMPTY: tuple[Any, ...] = (None, [], {})
_CHECK_OPTIONAL = ("reason", "reason_parts", "target")
_FINDING_OPTIONAL = ("check", "where", "detail")


def _prune(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not (k in keys and v in _EMPTY)}


def pack(e: ResultEnvelope) -> dict[str, Any]:
    """The document stored for one result (JSON-ready)."""
    return pack_dict(e.model_dump(mode="json", by_alias=True))


def pack_dict(d: Mapping[str, Any]) -> dict[str, Any]:
    """Same as `pack` for an envelope already in JSON form (e.g. an old row's payload being migrated)."""
    doc: dict[str, Any] = {}
    for key, value in d.items():
        default = (key == "schema" and value == 1) or (key in ("trigger_info", "findings") and value in _EMPTY)
        if key in TYPED or default:
            continue
        if key == "clock":
            value = {k: v for k, v in value.items() if v is not None}
            if not value:
                continue
        elif key == "checks":
            value = [_prune(c, _CHECK_OPTIONAL) for c in value]
        elif key == "findings":
            value = [_prune(f, _FINDING_OPTIONAL) for f in value]
        doc[key] = value
    return doc


def unpack(row: Mapping[str, Any]) -> dict[str, Any]:
    """The envelope as a JSON-ready dict from a `results` row (typed columns + doc)."""
    doc = row["doc"]
    out = dict(json.loads(doc) if isinstance(doc, str | bytes) else doc)
    for key in TYPED:
        value = row[key]
        out[key] = value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value
    return out


def envelope(row: Mapping[str, Any]) -> ResultEnvelope:
    """The stored result as an envelope (raises ValueError when it no longer validates)."""
    return ResultEnvelope.model_validate(unpack(row))


def payload_json(row: Mapping[str, Any]) -> str:
    """The stored result as envelope JSON (what the `payload` column held before migration 13)."""
    return json.dumps(unpack(row), separators=(",", ":"))


def envelope_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """The stored result as the envelope's JSON form with every default filled in (what the old `payload`
    parsed to); a row that no longer validates (stored before a bound was added) comes back as stored."""
    try:
        return envelope(row).model_dump(mode="json", by_alias=True)
    except ValueError:
        return unpack(row)


def metric_values(metrics: Any) -> dict[str, float | None]:
    """A check's metrics (the checks view's `metrics` JSON) as the metrics view gives them: numbers as float,
    true/false as 1.0/0.0, anything else as None (not measured)."""
    if isinstance(metrics, str | bytes):
        metrics = json.loads(metrics)
    if not isinstance(metrics, dict):
        return {}
    out: dict[str, float | None] = {}
    for name, value in metrics.items():
        if isinstance(value, bool):
            out[name] = 1.0 if value else 0.0
        elif isinstance(value, int | float):
            out[name] = float(value)
        else:
            out[name] = None
    return out

