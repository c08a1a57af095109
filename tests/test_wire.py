"""The wire format: envelope rules, ids, topics, the shipped schema and the metric catalogue."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from linecheck import schema
from linecheck.catalogue import catalogue, unlisted
from linecheck.wire import (
    CheckResult,
    ResultEnvelope,
    Status,
    agent_from_topic,
    new_result_id,
    results_topic,
)


def envelope(**over: object) -> dict:
    base = {
        "schema": 1, "result_id": new_result_id(), "agent_id": "gw-1", "seq": 1, "line_id": "line-1",
        "site_id": "site-1", "trigger": "manual", "started_at": "2026-11-22T01:00:00Z",
        "ended_at": "2026-11-22T01:00:05Z", "agent_version": "0.1.0",
        "checks": [{"kind": "ping", "status": "failed", "reason": "no reply", "duration_s": 2.0,
                    "metrics": {"loss_pct": 100, "rtt_avg_ms": None}}],
    }
    base.update(over)
    return base


def test_valid_envelope_round_trips() -> None:
    env = ResultEnvelope.model_validate(envelope())
    again = ResultEnvelope.from_json(env.to_json())
    assert again == env
    assert json.loads(env.to_json())["schema"] == 1
    assert again.checks[0].metrics == {"loss_pct": 100, "rtt_avg_ms": None}


@pytest.mark.parametrize("change, message", [
    ({"schema": 2}, "schema"),
    ({"agent_id": "a/b"}, "agent_id"),
    ({"agent_id": "a+"}, "agent_id"),
    ({"seq": 0}, "seq"),
    ({"seq": 2**63}, "seq"),
    ({"trigger": "whenever"}, "trigger"),
    ({"started_at": "2026-11-22T01:00:00"}, "UTC offset"),
    ({"result_id": "not-a-uuid"}, "result_id"),
    ({"surprise": 1}, "surprise"),
    ({"checks": [{"kind": "ping", "status": "broken", "duration_s": 1}]}, "status"),
    ({"checks": [{"kind": "ping", "status": "ok", "duration_s": 1, "metrics": {"RTT": 1}}]}, "lower_snake_case"),
    ({"checks": [{"kind": "ping", "status": "ok", "duration_s": 1, "metrics": {"up_flag": True}}]}, "up_flag"),
])
def test_invalid_envelopes_are_refused_with_the_field_named(change: dict, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ResultEnvelope.model_validate(envelope(**change))
    assert message in str(exc.value)


def test_nan_metric_is_refused() -> None:
    with pytest.raises(ValidationError, match="use null"):
        CheckResult(kind="ping", status=Status.OK, duration_s=1, metrics={"rtt_avg_ms": float("nan")})


def test_result_ids_are_uuid7_and_sort_by_time() -> None:
    t0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    ids = [new_result_id(t0 + i) for i in range(100)]
    assert ids == sorted(ids)
    assert len(set(new_result_id(t0) for _ in range(1000))) == 1000
    assert all(i[14] == "7" for i in ids)
    assert ResultEnvelope.model_validate(envelope(result_id=ids[0])).result_id == ids[0]


def test_timestamps_are_normalised_to_utc() -> None:
    env = ResultEnvelope.model_validate(envelope(started_at="2026-11-22T09:00:00+08:00"))
    assert env.started_at == datetime(2026, 11, 22, 1, tzinfo=UTC)
    assert env.started_at.utcoffset() == timedelta(0)


def test_topic_identity() -> None:
    assert agent_from_topic(results_topic("gw-1")) == "gw-1"
    assert agent_from_topic("linecheck/v1/agents/gw+1/results") is None
    assert agent_from_topic("linecheck/v1/agents/gw-1/results/extra") is None
    assert agent_from_topic("other/v1/agents/gw-1/results") is None


@pytest.mark.parametrize("name", sorted(schema.GENERATED))
def test_generated_docs_are_in_sync(name: str) -> None:
    shipped = (schema.DOCS / name).read_text()
    assert shipped == schema.GENERATED[name](), f"docs/{name} is stale: run python -m linecheck.schema"


def test_catalogue_is_well_formed() -> None:
    units = {"ms", "%", "count", "flag", "bytes", "Mbit/s", "s", "dBm", "MHz", "hops", "ratio", "kB", "pct", "GHz",
             "number", "RPM"}
    for (kind, name), spec in catalogue().items():
        assert spec.meaning and spec.unit in units, f"{kind}.{name}: unit {spec.unit!r}"
        suffix = name.rsplit("_", 1)[-1]
        assert suffix in {"ms", "pct", "count", "flag", "bytes", "mbps", "s", "dbm", "mhz", "hops", "ratio",
                          "kb", "ghz", "num", "rpm"}, f"{kind}.{name} lacks a unit suffix"
    assert unlisted("ping", {"loss_pct", "bogus_ms"}) == ["bogus_ms"]
