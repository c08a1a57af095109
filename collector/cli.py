"""`linecheck-collector`: serve (ingest), results (latest stored results), init-db, registry."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from sqlalchemy import select

from collector import cli_registry
from collector import config as collector_config
from collector import schema as t
from linecheck.configfile import ConfigError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linecheck-collector", description="Carrier-side linecheck collector.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="ingest results from the broker into the database")
    serve.add_argument("--config", required=True)
    serve.add_argument("--log-level", default="INFO")
    init = sub.add_parser("init-db", help="create or migrate the database and exit")
    init.add_argument("--config", required=True)
    res = sub.add_parser("results", help="print the latest stored results")
    res.add_argument("--config", required=True)
    res.add_argument("--limit", type=int, default=20)
    cli_registry.add_parsers(sub)
    return p


def _serve(cfg: collector_config.CollectorConfig) -> int:
    from collector.ingest import Ingestor
    from collector.store import Store

    store = Store(cfg.database)
    ingestor = Ingestor(cfg, store)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: ingestor.stop())
    ingestor.run()
    store.close()
    return 0


def _results(cfg: collector_config.CollectorConfig, limit: int) -> int:
    from collector.store import Store

    store = Store(cfg.database)
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.results.c.received_at, t.results.c.agent_id, t.results.c.seq,
                                   t.results.c.trigger, t.results.c.verdict)
                            .order_by(t.results.c.received_at.desc()).limit(limit)).all()
    for r in rows:
        print(f"{r.received_at:%Y-%m-%d %H:%M:%S}  {r.agent_id:<20} seq={r.seq:<6} {r.trigger:<18} {r.verdict}")
    if not rows:
        print("no results stored yet")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = collector_config.load(args.config)
    except ConfigError as exc:
        print(f"linecheck-collector: invalid config\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(args, "log_level", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        return _serve(cfg)
    if args.command == "registry":
        return cli_registry.run(args, cfg)
    if args.command == "init-db":
        from collector.store import Store

        Store(cfg.database).close()
        print(f"database ready: {cfg.database}")
        return 0
    return _results(cfg, args.limit)


if __name__ == "__main__":
    sys.exit(main())
