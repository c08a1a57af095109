"""`linecheck-collector user add|passwd|token|assign|list`: console logins and API tokens.

Passwords come from a file or an interactive prompt, never from the command line (other users
of the machine can read a process's arguments).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import timedelta
from pathlib import Path

from collector.api.accounts import AccountError, Accounts, Role
from collector.config import CollectorConfig
from linecheck.cliargs import add_config


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    user = sub.add_parser("user", help="console users and API tokens")
    usub = user.add_subparsers(dest="user_command", required=True)
    add = usub.add_parser("add", help="create a user")
    add_config(add, "collector")
    add.add_argument("user_id", help="the login name")
    add.add_argument("--role", required=True, choices=[r.value for r in Role], help="what the user may see and do")
    add.add_argument("--tenant", help="the user's tenant; omit for the operator (all tenants, carrier roles only)")
    add.add_argument("--password-file", type=Path, help="file holding the console password (else prompted; "
                                                        "without either the user is API-only)")
    add.add_argument("--name", help="display name")
    add.add_argument("--line", action="append", default=[], help="assign a line (technicians; repeatable)")
    pw = usub.add_parser("passwd", help="set a user's console password")
    add_config(pw, "collector")
    pw.add_argument("user_id", help="the login name")
    pw.add_argument("--password-file", type=Path, help="file holding the new password (else prompted)")
    tok = usub.add_parser("token", help="issue an API token (printed once)")
    add_config(tok, "collector")
    tok.add_argument("user_id", help="the user the token acts as")
    tok.add_argument("--name", required=True, help="what the token is for, e.g. ci or grafana (shown in lists)")
    tok.add_argument("--days", type=int, default=90, help="validity in days; 0 = no expiry")
    asg = usub.add_parser("assign", help="assign lines to a technician")
    add_config(asg, "collector")
    asg.add_argument("user_id", help="the technician's login name")
    asg.add_argument("lines", nargs="+", metavar="LINE_ID", help="lines to assign")
    lst = usub.add_parser("list", help="list users")
    add_config(lst, "collector")


def _password(path: Path | None, prompt: bool) -> str | None:
    if path is not None:
        return path.read_text(encoding="utf-8").strip()
    if prompt and sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise AccountError("the passwords differ")
        return first
    return None


def run(args: argparse.Namespace, cfg: CollectorConfig) -> int:
    from sqlalchemy import select

    from collector.store import schema as t
    from collector.store.database import Store

    store = Store(cfg.database)
    accounts = Accounts(store.engine)
    try:
        if args.user_command == "add":
            accounts.create_user(args.user_id, args.role, args.tenant, _password(args.password_file, True),
                                 display_name=args.name)
            for line_id in args.line:
                accounts.assign_line(args.user_id, line_id)
            print(f"user {args.user_id} created ({args.role}, {args.tenant or 'all tenants'})")
        elif args.user_command == "passwd":
            password = _password(args.password_file, True)
            if password is None:
                raise AccountError("give --password-file or run in a terminal")
            accounts.set_password(args.user_id, password)
            print(f"password of {args.user_id} set")
        elif args.user_command == "token":
            ttl = timedelta(days=args.days) if args.days else None
            print(accounts.issue_token(args.user_id, name=args.name, ttl=ttl)[1])
        elif args.user_command == "assign":
            if accounts.user(args.user_id) is None:
                raise AccountError(f"no user {args.user_id!r}")
            for line_id in args.lines:
                accounts.assign_line(args.user_id, line_id)
            print(f"{len(args.lines)} line(s) assigned to {args.user_id}")
        else:
            with store.engine.connect() as conn:
                for u in conn.execute(select(t.users).order_by(t.users.c.user_id)).mappings():
                    login = "console+api" if u["password_hash"] else "api only"
                    print(f"{u['user_id']:<24} {u['role']:<15} {u['tenant_id'] or '(all tenants)':<20} {login}")
    except (AccountError, OSError) as exc:
        print(f"linecheck-collector: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0
