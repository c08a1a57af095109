"""`linecheck-collector`: serve (ingest), results (latest stored results), init-db, registry, tickets."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys

from sqlalchemy import select

from collector import config as collector_config
from collector.api import cli_users
from collector.api.fleet_summary import AGENT_COUNTS_EVERY_S
from collector.cli import promises as cli_promises
from collector.cli import registry as cli_registry
from collector.cli import tickets as cli_tickets
from collector.store import schema as t
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
    gaps = sub.add_parser("delivery", help="sequence gaps: results agents numbered that have not arrived")
    gaps.add_argument("--config", required=True)
    gaps.add_argument("--agent", metavar="ID", help="one agent in full (default: every agent with gaps)")
    cli_registry.add_parsers(sub)
    cli_tickets.add_parsers(sub)
    cli_promises.add_parsers(sub)
    _add_security_commands(sub)
    _add_command_parser(sub)
    cli_users.add_parsers(sub)
    return p


def _add_security_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bc = sub.add_parser("broker-config", help="generate Mosquitto config, ACL and certificates for the fleet")
    bc.add_argument("--config", required=True)
    bc.add_argument("--out", required=True, help="directory for mosquitto.conf, acl, certificates")
    bc.add_argument("--hostname", action="append", required=True,
                    help="name or address agents use to reach the broker (repeatable)")
    bc.add_argument("--port", type=int, default=8883)
    bc.add_argument("--bind", default="0.0.0.0")
    bc.add_argument("--collectors", type=int, default=1, help="collector identities to issue")
    bc.add_argument("--run-as", default="mosquitto", help="user mosquitto drops to")
    tok = sub.add_parser("enrol-token", help="issue a one-time enrolment token for a gateway")
    tok.add_argument("--config", required=True)
    tok.add_argument("--agent", required=True, help="the agent id the gateway will have")
    tok.add_argument("--line", required=True)
    tok.add_argument("--site", required=True)
    rv = sub.add_parser("revoke", help="revoke an agent's certificates and rewrite the CRL")
    rv.add_argument("--config", required=True)
    rv.add_argument("--agent", required=True)
    rv.add_argument("--reason", default="revoked by operator")
    rv.add_argument("--broker-dir", help="a broker-config output directory whose ACL to rewrite")


def _security(cfg: collector_config.CollectorConfig, args: argparse.Namespace) -> int:
    from datetime import timedelta

    from collector.fleet import broker_config as brokerconf
    from collector.fleet import enrolment
    from collector.fleet.pki import FleetCA
    from collector.store.database import Store

    ca = FleetCA.open_or_create(cfg.enrolment.ca_dir)
    store = Store(cfg.database)
    try:
        if args.command == "broker-config":
            files = brokerconf.generate(args.out, ca, args.hostname, port=args.port, bind=args.bind,
                                        revoked_serials=tuple(enrolment.revoked_serials(store.engine)),
                                        revoked_agents=tuple(enrolment.revoked_agents(store.engine)),
                                        collectors=args.collectors, run_as=args.run_as)
            print(f"wrote {files.config} and {files.acl}; collector identities: {', '.join(files.collectors)}; "
                  f"command identity: {brokerconf.COMMANDS_IDENTITY} (set commands.cert_file/key_file to "
                  f"{files.commands[0].name if files.commands else '-'} and its .key)")
        elif args.command == "enrol-token":
            issued = enrolment.issue_token(store.engine, args.agent, args.line, args.site,
                                           ttl=timedelta(hours=cfg.enrolment.token_ttl_h))
            print(issued.token)
            print(f"valid once, until {issued.expires_at:%Y-%m-%d %H:%M} UTC", file=sys.stderr)
        else:
            count = enrolment.revoke(store.engine, ca, args.agent, args.reason)
            print(f"revoked {count} certificate(s) of {args.agent}; CRL {ca.crl_path} rewritten")
            if args.broker_dir:
                acl = brokerconf.write_acl(args.broker_dir, sorted(enrolment.revoked_agents(store.engine)))
                print(f"ACL {acl} rewritten")
            print("reload the broker (kill -HUP <mosquitto pid>) so it reads the new CRL and ACL")
    except enrolment.EnrolmentError as exc:
        print(f"linecheck-collector: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def _add_command_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cmd = sub.add_parser("command", help="ask an agent to check its line now (remote-triggered check)")
    cmd.add_argument("--config", required=True)
    cmd.add_argument("--agent", required=True, metavar="ID", help="the agent's id")
    cmd.add_argument("action", choices=["check_now", "retest"])
    cmd.add_argument("--check", action="append", metavar="KIND", help="run only this check kind (repeatable)")
    cmd.add_argument("--ttl", type=float, default=3600.0, metavar="S",
                     help="the agent ignores the command after this many seconds (default 3600)")
    cmd.add_argument("--reason", help="free text recorded with the result, e.g. a ticket number")


def _command(cfg: collector_config.CollectorConfig, args: argparse.Namespace) -> int:
    import getpass

    from collector.api.remote import CommandDesk, own_connection
    from collector.commands.limits import RateLimited
    from collector.commands.publish import CommandError
    from collector.store.database import Store

    store = Store(cfg.database)  # the rate limits and the command log live in the database
    try:
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


def _serve(cfg: collector_config.CollectorConfig) -> int:
    from collector.ingest.worker import Ingestor
    from collector.promises.hook import PromiseHook
    from collector.rules.engine import RuleEngine
    from collector.service.background import Background
    from collector.store.database import Store

    # Ingest allocates thousands of short-lived objects per batch (parsed envelopes, rows) while the
    # rules' cache holds tens of thousands of long-lived ones: with CPython's default thresholds
    # (700, 10, 10) the collector spent about a fifth of its ingest CPU in the cyclic collector.
    gc.set_threshold(50_000, 20, 100)
    store = Store(cfg.database)
    rules = RuleEngine(cfg.rules)
    store.add_hook(rules.on_ingest)  # rules → tickets in the ingest transaction
    store.add_hook(PromiseHook(cfg.promises))  # new speed/WiFi tests → promise verdicts → tickets
    ingestor = Ingestor(cfg, store)
    http = _start_http(cfg, store, ingestor)
    background = Background(store, rules, ingestor.client)
    background.add_job("retention", cfg.retention.interval_s, lambda: _retention(store, cfg))
    background.add_job("agent_counts", AGENT_COUNTS_EVERY_S, lambda: _agent_counts(store))
    if cfg.notify.webhooks or cfg.notify.mail:
        from collector.notify.outbox import Notifier

        background.add_job("notify", 1.0, Notifier(store.engine, cfg.notify).run_once)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: ingestor.stop())
    background.start()
    try:
        ingestor.run()
    finally:
        background.stop()
        if http is not None:
            http.stop()
        store.close()
    return 0


def _agent_counts(store: object) -> None:
    from collector.api.fleet_summary import refresh_agent_counts

    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        refresh_agent_counts(conn)


def _retention(store: object, cfg: collector_config.CollectorConfig) -> None:
    from collector.store import retention

    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        retention.apply(conn, cfg.retention)


def _start_http(cfg: collector_config.CollectorConfig, store: object, ingestor: object) -> object | None:
    """The API, console and /metrics in this process (collector/api/server.py), unless disabled."""
    if not cfg.http.enabled:
        return None
    from collector.api.remote import broker_sender
    from collector.api.server import start_http
    from collector.service.metrics import CollectorMetrics

    metrics = CollectorMetrics(store.engine, ingest=ingestor)  # type: ignore[attr-defined,arg-type]  # /healthz
    ingestor.on_batch = metrics.observe_batch  # type: ignore[attr-defined]
    try:
        return start_http(cfg.http, store,  # type: ignore[arg-type]
                          # commands leave on ingest's own connection: never a second one as ingest
                          commands=broker_sender(cfg, store.engine, ingestor),  # type: ignore[attr-defined,arg-type]
                          metrics=metrics,
                          enrolment=cfg.enrolment, promises=cfg.promises)
    except RuntimeError as exc:
        # Ingest is what agents depend on (their spools wait for receipts): it keeps running.
        logging.getLogger("collector").error("HTTP API and console NOT available on %s:%s: %s",
                                             cfg.http.host, cfg.http.port, exc)
        return None


def _results(cfg: collector_config.CollectorConfig, limit: int) -> int:
    from collector.store.database import Store

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
    if args.command == "promises" and args.promises_command == "verify-report":
        return cli_promises.run(args, None)  # anyone holding a report can check it: no collector config
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
    if args.command == "tickets":
        return cli_tickets.run(args, cfg)
    if args.command == "promises":
        return cli_promises.run(args, cfg)
    if args.command in ("broker-config", "enrol-token", "revoke"):
        return _security(cfg, args)
    if args.command == "command":
        return _command(cfg, args)
    if args.command == "user":
        return cli_users.run(args, cfg)
    if args.command == "delivery":
        from collector.store.database import Store
        from collector.store.delivery import render

        store = Store(cfg.database)
        print(render(store.engine, args.agent))
        store.close()
        return 0
    if args.command == "init-db":
        from collector.store.database import Store

        Store(cfg.database).close()
        print(f"database ready: {cfg.database}")
        return 0
    return _results(cfg, args.limit)


if __name__ == "__main__":
    sys.exit(main())
