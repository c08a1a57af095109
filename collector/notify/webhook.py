"""Signed JSON webhooks.

Headers: `X-Linecheck-Event` (e.g. ticket.opened), `X-Linecheck-Delivery` (the notification id:
the same on every retry, so a receiver can drop repeats), `X-Linecheck-Timestamp` (Unix seconds) and
`X-Linecheck-Signature: sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` under the shared
secret. Signing the timestamp lets a receiver refuse replays of an old body (docs/rules.md shows a
verifier).
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx

from collector.notify.config import Webhook
from linecheck import __version__

SIGNATURE_HEADER = "X-Linecheck-Signature"
TIMESTAMP_HEADER = "X-Linecheck-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, max_age_s: float = 300,
           now: float | None = None) -> bool:
    """What a receiver does: constant-time compare, and refuse stale timestamps."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    return age <= max_age_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class Outcome:
    def __init__(self, ok: bool, retryable: bool, status_code: int | None, error: str | None):
        self.ok, self.retryable, self.status_code, self.error = ok, retryable, status_code, error


def post(target: Webhook, event: str, delivery_id: int, body: bytes) -> Outcome:
    secret = target.secret_file.read_text().strip().encode()
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": f"linecheck-collector/{__version__}",
               "X-Linecheck-Event": event, "X-Linecheck-Delivery": str(delivery_id), TIMESTAMP_HEADER: ts,
               SIGNATURE_HEADER: sign(secret, ts, body)}
    try:
        resp = httpx.post(str(target.url), content=body, headers=headers, timeout=target.timeout_s,
                          follow_redirects=False)
    except httpx.HTTPError as exc:
        return Outcome(False, True, None, f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= resp.status_code < 300:
        return Outcome(True, False, resp.status_code, None)
    # 408 / 429 / 5xx are the receiver's passing trouble; any other refusal will not change on retry.
    retryable = resp.status_code in (408, 429) or resp.status_code >= 500
    return Outcome(False, retryable, resp.status_code, f"HTTP {resp.status_code}: {resp.text[:200]}")
