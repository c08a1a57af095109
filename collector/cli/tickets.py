"""`linecheck-collector tickets list|show|ack|dispatch|resolve|verify|note`: the ticket lifecycle by hand."""

from __future__ import annotations

import argparse
import getpass
import sys
from zoneinfo import ZoneInfo

from collector.cli.times import display_zone, shown
from collector.config import CollectorConfig
from collector.fleet import registry
from collector.tickets import lifecycle as tickets
from linecheck.cliargs import add_config, positive_int

_MOVES = {"ack": "acknowledged", "dispatch": "dispatched", "resolve": "resolved"}


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tk = sub.add_parser("tickets", help="list tickets and move them through their lifecycle")
    tsub = tk.add_subparsers(dest="tickets_command", required=True)
    ls = tsub.add_parser("list", help="newest first")
    ls.add_argument("--state", action="append", choices=tickets.STATES, help="repeatable; default: open ones")
    ls.add_argument("--all", action="store_true", help="every state")
    ls.add_argument("--line", metavar="LINE_ID", help="only this line's tickets")
    ls.add_argument("--tenant", help="this tenant and the tenants below it")
    ls.add_argument("--limit", type=positive_int, default=50, help="at most this many, newest first (default 50)")
    show = tsub.add_parser("show", help="a ticket with its events and evidence")
    show.add_argument("ticket_id", type=int, help="the ticket's number (#N in `tickets list`)")
    for verb, state in _MOVES.items():
        p = tsub.add_parser(verb, help=f"move a ticket to {state}")
        p.add_argument("ticket_id", type=int, help="the ticket's number")
        p.add_argument("--note", help="free text recorded with the move in the event log")
    ver = tsub.add_parser("verify", help="close a resolved ticket with a post-repair check as evidence")
    ver.add_argument("ticket_id", type=int, help="the ticket's number")
    ver.add_argument("--agent", required=True, help="the agent that ran the check")
    ver.add_argument("--result", required=True, help="the result id of the check")
    ver.add_argument("--note", help="free text recorded with the move in the event log")
    nt = tsub.add_parser("note", help="add a note to the event log")
    nt.add_argument("ticket_id", type=int, help="the ticket's number")
    nt.add_argument("text", help="the note")
    for p in (ls, show, ver, nt, *(tsub.choices[v] for v in _MOVES)):
        add_config(p, "collector")
        p.add_argument("--actor", default=None, help="who acts (default: the login name)")


def run(args: argparse.Namespace, cfg: CollectorConfig) -> int:
    from collector.store.database import Store

    store = Store(cfg.database)
    actor = args.actor or getpass.getuser()
    zone = display_zone(cfg)
    try:
        with store.engine.begin() as conn:
            cmd = args.tickets_command
            if cmd == "list":
                scope = registry.tenant_scope(conn, args.tenant) if args.tenant else None
                states = None if args.all else (args.state or list(tickets.OPEN_STATES))
                rows = tickets.listing(conn, scope=scope, states=states, line_id=args.line, limit=args.limit)
                for r in rows:
                    # The whole summary: cut at a column count it ended mid-word (what a pipe reads too).
                    print(f"#{r.ticket_id:<6} {r.state:<12} {r.fault_class:<18} {r.line_id:<24} "
                          f"{shown(r.opened_at, zone, seconds=False)}  {r.summary}")
                if not rows:
                    print("no tickets")
            elif cmd == "show":
                _show(conn, args.ticket_id, zone)
            elif cmd in _MOVES:
                row = tickets.transition(conn, args.ticket_id, _MOVES[cmd], actor, args.note)
                print(f"ticket #{row.ticket_id} is now {row.state}")
            elif cmd == "verify":
                row = tickets.verify(conn, args.ticket_id, args.agent, args.result, actor, note=args.note)
                print(f"ticket #{row.ticket_id} is now {row.state}")
            elif cmd == "note":
                tickets.note(conn, args.ticket_id, actor, args.text)
                print(f"note added to ticket #{args.ticket_id}")
    except tickets.TicketError as exc:  # no such ticket, or a move its state does not allow: a refused request
        print(f"linecheck-collector: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def _show(conn: object, ticket_id: int, zone: ZoneInfo) -> None:
    r = tickets.get(conn, ticket_id)  # type: ignore[arg-type]
    print(f"ticket #{r.ticket_id}: {r.fault_class} on line {r.line_id} ({r.state}, {r.severity}, at {r.location})")
    print(f"  {r.summary}")
    print(f"  tenant {r.tenant_id}  site {r.site_id}  agent {r.agent_id}  opened by {r.opened_by}")
    print("events:")
    for ev in tickets.events(conn, ticket_id):  # type: ignore[arg-type]
        move = f"{ev.from_state or ''} → {ev.to_state}" if ev.to_state else ""
        print(f"  {shown(ev.at, zone)}  {ev.kind:<12} {ev.actor:<12} {move}  {ev.note or ''}")
    print("evidence:")
    for ev in tickets.evidence(conn, ticket_id):  # type: ignore[arg-type]
        print(f"  {ev.role:<8} {ev.agent_id} {ev.result_id}")
