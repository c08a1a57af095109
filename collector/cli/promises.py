"""`linecheck-collector promises ...`: import promises and billing, judge them, report, acceptance reports."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collector.config import CollectorConfig
from linecheck.cliargs import add_config
from linecheck.configfile import ConfigError


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("promises", help="the promise ledger: import, evaluate, report, acceptance reports")
    ps = p.add_subparsers(dest="promises_command", required=True)

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        c = ps.add_parser(name, help=help_)
        add_config(c, "collector")
        return c

    imp = cmd("import", "add or update promises from YAML or CSV files (config/promises.example.yaml)")
    imp.add_argument("files", nargs="+", metavar="FILE", help="promise files (YAML or CSV)")
    imp.add_argument("--dry-run", action="store_true", help="validate only")
    bil = cmd("billing-import", "add or update billing records from CSV files (config/billing.example.csv)")
    bil.add_argument("files", nargs="+", metavar="FILE", help="billing record files (CSV)")
    bil.add_argument("--dry-run", action="store_true", help="validate only")
    ev = cmd("evaluate", "judge promises from the stored evidence, keep the verdicts, open/resolve tickets")
    ev.add_argument("--line", action="append", help="only this line (repeatable)")
    ev.add_argument("--at", help="judge as of this ISO time (default: now)")
    ev.add_argument("--no-tickets", action="store_true", help="keep verdicts but open no tickets")
    show = cmd("show", "the verdicts of one line with their evidence summary")
    show.add_argument("line", metavar="LINE_ID", help="the line whose verdicts to show")
    rep = cmd("report", "fleet-wide: share delivered / not / inconclusive per tenant, district or segment")
    rep.add_argument("--by", choices=["tenant", "district", "segment"], default="district",
                     help="how to group the lines (default district)")
    rep.add_argument("--kind", help="only this promise kind (speed, wifi_coverage, ...)")
    rep.add_argument("--tenant", help="only this tenant and the tenants below it")
    rep.add_argument("--csv", type=Path, help="write the table as CSV to this file")
    exp = cmd("export", "every latest verdict as CSV (one row per promise)")
    exp.add_argument("--tenant", help="only this tenant and the tenants below it")
    exp.add_argument("--out", type=Path, help="file to write (default: stdout)")
    acc = cmd("acceptance", "a technician's signed acceptance report (HTML and PDF) for one promise")
    acc.add_argument("promise_id", help="the promise to report on (`promises show LINE_ID` lists them)")
    acc.add_argument("--technician", required=True, help="name (and id) of the technician signing")
    acc.add_argument("--customer", help="name of the customer's representative")
    acc.add_argument("--out", type=Path, default=Path("."), help="directory for the report files")
    acc.add_argument("--no-pdf", action="store_true", help="HTML only")
    acc.add_argument("--stored", action="store_true",
                     help="use the stored verdict instead of judging the promise again now")
    ver = ps.add_parser("verify-report", help="check the signature of an acceptance report (HTML)")
    ver.add_argument("file", type=Path, help="the report's HTML file")


def run(args: argparse.Namespace, cfg: CollectorConfig | None) -> int:
    if args.promises_command == "verify-report":
        return _verify(args.file)
    assert cfg is not None
    from collector.store.database import Store

    store = Store(cfg.database)
    try:
        handler = {"import": _import, "billing-import": _billing, "evaluate": _evaluate, "show": _show,
                   "report": _report, "export": _export, "acceptance": _acceptance}[args.promises_command]
        return handler(store, cfg, args)
    except ConfigError as exc:
        print(f"linecheck-collector: promises {args.promises_command} refused\n{exc}", file=sys.stderr)
        return 2
    finally:
        store.close()


def _import(store: Any, cfg: CollectorConfig, args: argparse.Namespace) -> int:
    from collector.promises import files, ledger

    loaded = [(path, files.load_file(path)) for path in args.files]
    with store.engine.begin() as conn:
        total = sum(ledger.import_promises(conn, promises, path) for path, promises in loaded)
        if args.dry_run:
            conn.rollback()
    print(f"{'would import' if args.dry_run else 'imported'}: {total} promise(s)")
    return 0


def _billing(store: Any, cfg: CollectorConfig, args: argparse.Namespace) -> int:
    from collector.promises import billing, ledger

    loaded = [(path, billing.load_billing_csv(path)) for path in args.files]
    with store.engine.begin() as conn:
        total = sum(ledger.import_billing(conn, records, path) for path, records in loaded)
        if args.dry_run:
            conn.rollback()
    print(f"{'would import' if args.dry_run else 'imported'}: {total} billing record(s)")
    return 0


def _at(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError("--at", [f"expected an ISO time such as 2022-09-30T12:00+08:00 (got {text!r})"]) from None
    if at.tzinfo is None:
        raise ConfigError("--at", ["the time needs a UTC offset, e.g. +08:00"])
    return at


def _evaluate(store: Any, cfg: CollectorConfig, args: argparse.Namespace) -> int:
    from collector.promises.consequences import run_ledger

    policy = cfg.promises.model_copy(update={"open_tickets": cfg.promises.open_tickets and not args.no_tickets})
    with store.engine.begin() as conn:
        result = run_ledger(conn, policy, _at(args.at), args.line)
    counts: dict[str, int] = {}
    for v in result.verdicts:
        counts[v.outcome.value] = counts.get(v.outcome.value, 0) + 1
    print(f"judged {len(result.verdicts)} promise(s): "
          + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none stored"))
    print(f"tickets: {len(result.opened)} opened, {len(result.refreshed)} still open (evidence added), "
          f"{len(result.resolved)} resolved")
    return 0


def _show(store: Any, cfg: CollectorConfig, args: argparse.Namespace) -> int:
    from collector.cli.times import display_zone, shown
    from collector.promises import ledger

    with store.engine.connect() as conn:
        rows = ledger.verdict_rows(conn, line_ids=[args.line])
        if not rows:
            print(f"no verdicts for line {args.line!r} (import promises, then run `promises evaluate`)")
            return 1
        zone = display_zone(cfg)  # the console's zone; the promise's own zone only decides its peak hours
        for r in rows:
            grace = " (provisional: in grace)" if r["in_grace"] else ""
            ticket = f", ticket #{r['ticket_id']}" if r["ticket_id"] else ""
            print(f"{r['promise_id']} [{r['kind']}] {r['outcome'].value}{grace}{ticket}, "
                  f"since {shown(r['outcome_since'], zone, seconds=False)}")
            print(f"  {r['summary']}")
    return 0


def _scope(store: Any, tenant: str | None) -> set[str] | None:
    if tenant is None:
        return None
    from collector.fleet.registry import tenant_scope

    with store.engine.connect() as conn:
        return tenant_scope(conn, tenant)


def _report(store: Any, cfg: CollectorConfig, args: argparse.Namespace) -> int:
    from collector.promises import ledger, reports

    with store.engine.connect() as conn:
        rows = ledger.verdict_rows(conn, scope=_scope(store, args.tenant))
    groups = reports.fleet(rows, args.by, args.kind)
    print(reports.fleet_text(groups, args.by))
    if args.csv:
        args.csv.write_text(reports.fleet_csv(groups), encoding="utf-8")
        print(f"written: {args.csv}")
    return 0


def _export(store: Any, cfg: CollectorConfig, args: argparse.Namespace) -> int:
    from collector.promises import ledger, reports

    with store.engine.connect() as conn:
        text = reports.verdicts_csv(ledger.verdict_rows(conn, scope=_scope(store, args.tenant)))
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"written: {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _acceptance(store: Any, cfg: CollectorConfig, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from collector.promises import acceptance, ledger
    from collector.promises.consequences import run_ledger
    from collector.store import schema as t

    with store.engine.begin() as conn:
        if not args.stored:
            line = conn.execute(select(t.promises.c.line_id)
                                .where(t.promises.c.promise_id == args.promise_id)).scalar()
            if line is None:
                raise ConfigError("promise_id", [f"no promise {args.promise_id!r} (import it first)"])
            run_ledger(conn, cfg.promises, datetime.now(UTC), [line])
        verdict = ledger.stored_verdict(conn, args.promise_id)
        if verdict is None:
            raise ConfigError("promise_id", [f"no verdict for {args.promise_id!r}: run `promises evaluate` first"])
        key_file = cfg.promises.signing_key_file
        created = not key_file.exists()
        key = acceptance.load_or_create_key(key_file)
        if created:
            print(f"created the acceptance signing key {key_file} (0600; promises.signing_key_file): keep it, "
                  "reports it signed verify with its public key", file=sys.stderr)
        try:
            html_path, pdf_path, signed = acceptance.write_report(
                conn, verdict, args.out, key, cfg.promises.speed.zone, args.technician, args.customer,
                pdf=not args.no_pdf)
        except acceptance.ReportError as exc:
            print(f"linecheck-collector: acceptance report: {exc}", file=sys.stderr)
            return 1
    print(f"verdict: {verdict.outcome.value} — {verdict.summary}")
    print(f"written: {html_path}" + (f" and {pdf_path}" if pdf_path else ""))
    print(f"signed: sha256 {signed.digest}, key {signed.fingerprint}")
    return 0


def _verify(path: Path) -> int:
    from collector.promises.acceptance import ReportError, verify

    try:
        report = verify(path.read_text(encoding="utf-8"))
    except (OSError, ReportError) as exc:
        print(f"NOT VALID: {path}: {exc}", file=sys.stderr)
        return 1
    p = report.payload
    print(f"valid: report {p['report_id']} for line {p['line']['line_id']}, promise {p['promise']['id']}: "
          f"{p['verdict']['outcome']}; key {report.fingerprint}")
    return 0
