"""Judge promises as their evidence arrives: an ingest hook for `linecheck-collector serve`.

Runs inside the ingest transaction (collector/store/database.py), so a ticket for a broken promise commits
with the result that proves it. Only lines whose new results carry a throughput or WiFi test are
re-judged; billing and continuity promises wait for `promises evaluate` (cron).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection

from collector.promises.consequences import run_ledger
from collector.promises.criterion import PromisePolicy
from collector.promises.ledger import WIFI_KINDS
from linecheck.catalogue import THROUGHPUT
from linecheck.wire import ResultEnvelope

MEASURED = {THROUGHPUT, *WIFI_KINDS}


class PromiseHook:
    def __init__(self, policy: PromisePolicy):
        self.policy = policy

    def __call__(self, conn: Connection, fresh: Sequence[ResultEnvelope], now: datetime) -> None:
        lines = sorted({e.line_id for e in fresh if any(c.kind in MEASURED for c in e.checks)})
        if lines:
            run_ledger(conn, self.policy, now, lines)
