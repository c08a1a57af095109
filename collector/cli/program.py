"""`linecheck-collector`: the table of subcommands, the config loading they share, and the dispatch.

Each subcommand's parser and handler live in its module (collector/cli/*.py); this table is the one
list of them (tests/test_cli_table.py checks it against the docs and runs every `--help`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from collector import config as collector_config
from collector.cli import command, promises, registry, results, security, serve, tickets, users
from collector.store import unavailable
from linecheck.cliargs import add_version
from linecheck.configfile import ConfigError

AddParser = Callable[[argparse._SubParsersAction], None]  # type: ignore[type-arg]


def _always(_args: argparse.Namespace) -> bool:
    return True


@dataclass(frozen=True)
class Subcommand:
    add_parser: AddParser
    run: Callable[..., int]  # (args, cfg) -> exit code; cfg is None when needs_config says no
    needs_config: Callable[[argparse.Namespace], bool] = _always


SUBCOMMANDS: dict[str, Subcommand] = {
    "serve": Subcommand(serve.add_serve, serve.run_serve),
    "init-db": Subcommand(serve.add_init_db, serve.run_init_db),
    "results": Subcommand(results.add_results, results.run_results),
    "delivery": Subcommand(results.add_delivery, results.run_delivery),
    "registry": Subcommand(registry.add_parsers, registry.run),
    "tickets": Subcommand(tickets.add_parsers, tickets.run),
    # Anyone holding an acceptance report can check its signature: no collector config for that one.
    "promises": Subcommand(promises.add_parsers, promises.run,
                           needs_config=lambda args: args.promises_command != "verify-report"),
    "ca": Subcommand(security.add_ca, security.run_ca),
    "broker-config": Subcommand(security.add_broker_config, security.run_broker_config),
    "enrol-token": Subcommand(security.add_enrol_token, security.run_enrol_token),
    "revoke": Subcommand(security.add_revoke, security.run_revoke),
    "command": Subcommand(command.add_parsers, command.run),
    "user": Subcommand(users.add_parsers, users.run),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linecheck-collector", description="Carrier-side linecheck collector.")
    add_version(p)
    sub = p.add_subparsers(dest="command", required=True)
    for subcommand in SUBCOMMANDS.values():
        subcommand.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    subcommand = SUBCOMMANDS[args.command]
    if not subcommand.needs_config(args):
        return subcommand.run(args, None)
    try:
        cfg = collector_config.load(args.config)
    except ConfigError as exc:
        print(f"linecheck-collector: invalid config\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(args, "log_level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic (its operations run the migrations) announces each of its plugins at INFO on every start.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        return subcommand.run(args, cfg)
    except Exception as exc:
        if not unavailable.is_unavailable(exc):
            raise
        # One line, not SQLAlchemy's traceback (collector/store/unavailable.py).
        print(f"linecheck-collector: {unavailable.explain(cfg.database, exc, args.config)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
