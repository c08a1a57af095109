"""`linecheck-collector registry import|export`: the fleet registry as YAML or CSV files."""

from __future__ import annotations

import argparse
import sys

from collector.config import CollectorConfig
from collector.fleet import registry
from linecheck.cliargs import add_config
from linecheck.configfile import ConfigError


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    reg = sub.add_parser("registry", help="import or export tenants, sites, lines and agents")
    rsub = reg.add_subparsers(dest="registry_command", required=True)
    imp = rsub.add_parser("import", help="add or update registry entries from YAML or CSV files")
    add_config(imp, "collector")
    imp.add_argument("files", nargs="+", help="YAML (all sections) or CSV (one section per file)")
    imp.add_argument("--section", choices=sorted(registry.SECTIONS),
                     help="the table a CSV file holds (default: guessed from its id column)")
    imp.add_argument("--dry-run", action="store_true", help="validate only")
    exp = rsub.add_parser("export", help="print the registry")
    add_config(exp, "collector")
    exp.add_argument("--format", choices=["yaml", "csv"], default="yaml", help="output format (default yaml)")
    exp.add_argument("--section", choices=sorted(registry.SECTIONS), help="required with --format csv")
    exp.add_argument("--tenant", help="only this tenant and the tenants below it")


def run(args: argparse.Namespace, cfg: CollectorConfig) -> int:
    from collector.store.database import Store

    store = Store(cfg.database)
    try:
        if args.registry_command == "import":
            return _import(store, args)
        return _export(store, args)
    finally:
        store.close()


def _import(store: object, args: argparse.Namespace) -> int:
    try:
        datasets = [(path, registry.load_file(path, args.section)) for path in args.files]
        totals: dict[str, int] = {}
        with store.engine.begin() as conn:  # type: ignore[attr-defined]
            for path, data in datasets:  # files in order: tenants.csv before lines.csv
                for k, n in registry.import_registry(conn, data, source=path).items():
                    totals[k] = totals.get(k, 0) + n
            if args.dry_run:
                conn.rollback()
    except ConfigError as exc:
        print(f"linecheck-collector: registry not imported\n{exc}", file=sys.stderr)
        return 2
    verb = "would import" if args.dry_run else "imported"
    print(f"{verb}: " + ", ".join(f"{n} {k}" for k, n in totals.items()))
    return 0


def _export(store: object, args: argparse.Namespace) -> int:
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        scope = registry.tenant_scope(conn, args.tenant) if args.tenant else None
        data = registry.export_registry(conn, scope)
    if args.format == "csv":
        if not args.section:
            print("linecheck-collector: --format csv needs --section (one table per CSV file)", file=sys.stderr)
            return 2
        sys.stdout.write(registry.to_csv(data, args.section))
    else:
        sys.stdout.write(registry.to_yaml(data))
    return 0
