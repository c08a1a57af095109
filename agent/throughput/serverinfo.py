"""What the test server says about itself (GET /status) and about one test (GET /status?test=ID).

The engine asks after its test whether the server was saturated while serving it (the server marks
every test running while its link or CPU was full: linecheck/throughput/saturation.py); such a test
measured the server, not the line, and is reported `server_limited_flag` = 1 and never judged
against the plan. Server selection (select.py) asks an idle server whether it has a free slot.

The answer crosses a trust boundary: small (read_small_body's bound), JSON, and every figure taken
only when it has the expected type. An old server without these fields says nothing (None).
"""

from __future__ import annotations

import json
import time
from typing import Any

from agent.throughput.errors import MeasurementFailed
from agent.throughput.streams import connect, read_head, read_small_body
from linecheck.throughput import protocol as p

STATUS_TIMEOUT_S = 3.0


def status(host: str, port: int, token: str | None = None, test_id: str | None = None,
           timeout_s: float = STATUS_TIMEOUT_S) -> dict[str, Any] | None:
    """The server's /status document, or None when it did not give one."""
    target = p.STATUS + (f"?{p.TEST_PARAM}={test_id}" if test_id else "")
    try:
        sock = connect(host, port)
    except MeasurementFailed:
        return None
    try:
        sock.settimeout(timeout_s)
        deadline = time.monotonic() + timeout_s
        sock.sendall(p.raw_request("GET", target, host, p.auth_header(token)))
        buf = memoryview(bytearray(8192))
        code, headers, early = read_head(sock, buf, deadline)
        body = read_small_body(sock, buf, headers, early, deadline)
    except (OSError, MeasurementFailed):
        return None
    finally:
        sock.close()
    if code != p.OK:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def server_limited(host: str, port: int, token: str | None, test_id: str) -> tuple[int | None, list[str]]:
    """(1, why) when the server says it was saturated during this test, (0, []) when it says not,
    (None, []) when it does not say (an old server, or no answer)."""
    doc = status(host, port, token, test_id)
    test = doc.get("test") if doc else None
    if not isinstance(test, dict) or not isinstance(test.get("server_limited"), bool):
        return None, []
    why = test.get("server_limited_reasons")
    reasons = [str(r)[:80] for r in why[:4]] if isinstance(why, list) else []
    return (1 if test["server_limited"] else 0), reasons


def has_room(doc: dict[str, Any] | None) -> bool | None:
    """Whether a /status document says a new test would be admitted; None when it does not say."""
    if not doc:
        return None
    running, limits = doc.get("tests_running"), doc.get("limits")
    limit = limits.get("max_tests") if isinstance(limits, dict) else None
    if not isinstance(running, int) or not isinstance(limit, int) or isinstance(running, bool):
        return None
    return running < limit
