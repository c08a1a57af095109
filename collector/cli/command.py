"""`linecheck-collector command`: ask one agent to check its line now, through the one command desk
(collector/commands/desk.py: bounded, rate-limited as `cli:<login>`, logged) on the command identity."""

from __future__ import annotations

import argparse
import sys

from collector.config import CollectorConfig
from linecheck.cliargs import add_config


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cmd = sub.add_parser("command", help="ask an agent to check its line now (remote-triggered check)")
    add_config(cmd, "collector")
    cmd.add_argument("--agent", required=True, metavar="ID", help="the agent's id")
    cmd.add_argument("action", choices=["check_now", "retest"],
                     help="check_now: a full check now; retest: a re-test of what a rule asks (with --check)")
    cmd.add_argument("--check", action="append", metavar="KIND", help="run only this check kind (repeatable)")
    cmd.add_argument("--ttl", type=float, default=3600.0, metavar="S",
                     help="the agent ignores the command after this many seconds (default 3600)")
    cmd.add_argument("--reason", help="free text recorded with the result, e.g. a ticket number")


def run(args: argparse.Namespace, cfg: CollectorConfig) -> int:
    import getpass

    from collector.commands.desk import CommandDesk, CommandError, RateLimited, own_connection
    from collector.store.database import Store

    store = Store(cfg.database)  # the rate limits and the command log live in the database
    try:
        if not _known(store, args.agent):
            print(f"linecheck-collector: no agent {args.agent!r} is known to this collector (never registered, "
                  "never reported); `linecheck-collector results` lists the agents that reported", file=sys.stderr)
            return 2
        desk = CommandDesk(cfg, store.engine, own_connection(cfg))
        command_id = desk(args.agent, args.action, args.check, args.reason, requested_by=f"cli:{getpass.getuser()}",
                          ttl_s=args.ttl)
    except RateLimited as exc:
        print(f"linecheck-collector: command not sent (rate limit): {exc}", file=sys.stderr)
        return 1
    except CommandError as exc:
        print(f"linecheck-collector: command not sent: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"sent {args.action} {command_id} to {args.agent}, valid for {args.ttl:g} s")
    return 0


def _known(store: object, agent_id: str) -> bool:
    """Registered or reported: a command to an id nobody has would wait, retained at the broker, for a
    gateway that may never exist (and one day be read by whoever enrols under that id)."""
    from sqlalchemy import select

    from collector.store import schema as t

    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        return conn.execute(select(t.agents.c.agent_id).where(t.agents.c.agent_id == agent_id)).first() is not None
