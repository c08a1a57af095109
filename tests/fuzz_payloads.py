"""Generators of hostile and broken MQTT payloads, shared by the fuzz tests and bench/fuzz_ingest.py.

Three families: raw bytes, arbitrary JSON, and valid envelopes with one or more mutations (a key
dropped, a value of the wrong type, an extra key, absurd sizes, another agent's id). Every
payload comes with whether it *could* be valid, so the caller can check the collector's answer.
"""

from __future__ import annotations

import json
import random
from typing import Any

from linecheck.wire import ResultEnvelope, new_result_id

JSON_SCALARS: list[Any] = [None, True, False, 0, -1, 2**63, 1e308, -0.0, "", "x" * 10_000, "\u0000", "é中🙂",
                           "NaN", [], {}]
KEYS = ["schema", "result_id", "agent_id", "seq", "line_id", "site_id", "trigger", "trigger_info", "started_at",
        "ended_at", "clock", "agent_version", "checks", "verdict", "findings"]


def valid_envelope(agent_id: str, rng: random.Random) -> dict[str, Any]:
    return {
        "schema": 1, "result_id": new_result_id(), "agent_id": agent_id, "seq": rng.randint(1, 10**9),
        "line_id": "line-1", "site_id": "site-1", "trigger": rng.choice(["schedule", "manual", "retest"]),
        "started_at": "2026-11-22T01:00:00Z", "ended_at": "2026-11-22T01:00:05Z", "agent_version": "0.1.0",
        "checks": [{"kind": "ping", "status": "ok", "reason": None, "duration_s": 1.5,
                    "metrics": {"loss_pct": 0, "rtt_avg_ms": 12.5}}],
        "verdict": "healthy", "findings": [],
    }


def random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.5:
        return rng.choice(JSON_SCALARS)
    if roll < 0.75:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(KEYS + ["x", "", "$", "a" * 300]): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def mutate(env: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    env = json.loads(json.dumps(env))
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        key = rng.choice(KEYS)
        if op == 0:
            env.pop(key, None)
        elif op == 1:
            env[key] = random_json(rng)
        elif op == 2:
            env[rng.choice(["extra", "Agent_Id", "schema "])] = random_json(rng)
        elif op == 3 and env.get("checks"):
            check = env["checks"][0] if isinstance(env["checks"], list) and env["checks"] else {}
            if isinstance(check, dict):
                check[rng.choice(["kind", "status", "metrics", "duration_s", "reason"])] = random_json(rng)
        elif op == 4:
            checks = env.get("checks")
            env["checks"] = [checks[0] if isinstance(checks, list) and checks else {}] * 500
        else:
            env["agent_id"] = rng.choice(["someone-else", "a/b", "+", "#", ""])
    return env


def payload(rng: random.Random, agent_id: str) -> bytes:
    """One generated payload for `agent_id`'s results topic."""
    family = rng.random()
    if family < 0.15:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
    if family < 0.30:
        return json.dumps(random_json(rng)).encode()
    if family < 0.33:
        depth = rng.choice([50, 1000, 100_000])
        return b"[" * depth + b"]" * depth
    if family < 0.55:
        return json.dumps(valid_envelope(agent_id, rng)).encode()
    return json.dumps(mutate(valid_envelope(agent_id, rng), rng)).encode()


def is_valid_for(agent_id: str, data: bytes) -> bool:
    """The reference answer: does the wire model accept this payload for this agent?"""
    try:
        env = ResultEnvelope.from_json(data)
    except Exception:  # noqa: BLE001 - any refusal means invalid
        return False
    return env.agent_id == agent_id
