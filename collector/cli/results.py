"""`linecheck-collector results`: the latest stored results; `delivery`: sequence gaps per agent."""

from __future__ import annotations

import argparse

from collector.config import CollectorConfig
from linecheck.cliargs import add_config, positive_int


def add_results(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    res = sub.add_parser("results", help="print the latest stored results")
    add_config(res, "collector")
    res.add_argument("--limit", type=positive_int, default=20, help="how many, newest first (default 20)")


def add_delivery(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    gaps = sub.add_parser("delivery", help="sequence gaps: results agents numbered that have not arrived")
    add_config(gaps, "collector")
    gaps.add_argument("--agent", metavar="ID", help="one agent in full (default: every agent with gaps)")


def run_results(args: argparse.Namespace, cfg: CollectorConfig) -> int:
    from sqlalchemy import select

    from collector.cli.times import display_zone, shown
    from collector.store import schema as t
    from collector.store.database import Store

    store = Store(cfg.database)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(select(t.results.c.received_at, t.results.c.agent_id, t.results.c.seq,
                                       t.results.c.trigger, t.results.c.verdict)
                                .order_by(t.results.c.received_at.desc()).limit(args.limit)).all()
    finally:
        store.close()
    zone = display_zone(cfg)
    for r in rows:
        print(f"{shown(r.received_at, zone)}  {r.agent_id:<20} seq={r.seq:<6} {r.trigger:<18} {r.verdict}")
    if not rows:
        print("no results stored yet")
    return 0


def run_delivery(args: argparse.Namespace, cfg: CollectorConfig) -> int:
    from collector.store.database import Store
    from collector.store.delivery import render

    store = Store(cfg.database)
    try:
        print(render(store.engine, args.agent))
    finally:
        store.close()
    return 0
