"""`linecheck-collector broker-config|enrol-token|revoke`: the fleet's broker, its certificates and enrolment."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from collector.config import CollectorConfig

if TYPE_CHECKING:  # loaded when a handler runs: `--help` and the other subcommands stay quick
    from collector.fleet.pki import FleetCA
    from collector.store.database import Store

Work = Callable[["FleetCA", "Store", argparse.Namespace, CollectorConfig], None]
Handler = Callable[[argparse.Namespace, CollectorConfig], int]


def add_broker_config(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bc = sub.add_parser("broker-config", help="generate Mosquitto config, ACL and certificates for the fleet")
    bc.add_argument("--config", required=True)
    bc.add_argument("--out", required=True, help="directory for mosquitto.conf, acl, certificates")
    bc.add_argument("--hostname", action="append", required=True,
                    help="name or address agents use to reach the broker (repeatable)")
    bc.add_argument("--port", type=int, default=8883)
    bc.add_argument("--bind", default="0.0.0.0")
    bc.add_argument("--collectors", type=int, default=1, help="collector identities to issue")
    bc.add_argument("--run-as", default="mosquitto", help="user mosquitto drops to")


def add_enrol_token(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tok = sub.add_parser("enrol-token", help="issue a one-time enrolment token for a gateway")
    tok.add_argument("--config", required=True)
    tok.add_argument("--agent", required=True, help="the agent id the gateway will have")
    tok.add_argument("--line", required=True)
    tok.add_argument("--site", required=True)


def add_revoke(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rv = sub.add_parser("revoke", help="revoke an agent's certificates and rewrite the CRL")
    rv.add_argument("--config", required=True)
    rv.add_argument("--agent", required=True)
    rv.add_argument("--reason", default="revoked by operator")
    rv.add_argument("--broker-dir", help="a broker-config output directory whose ACL to rewrite")


def _with_ca_and_store(work: Work) -> Handler:
    """A handler that opens the fleet CA and the database, and reports an EnrolmentError as exit code 2."""

    def run(args: argparse.Namespace, cfg: CollectorConfig) -> int:
        from collector.fleet import enrolment
        from collector.fleet.pki import FleetCA
        from collector.store.database import Store

        ca = FleetCA.open_or_create(cfg.enrolment.ca_dir)
        store = Store(cfg.database)
        try:
            work(ca, store, args, cfg)
        except enrolment.EnrolmentError as exc:
            print(f"linecheck-collector: {exc}", file=sys.stderr)
            return 2
        finally:
            store.close()
        return 0

    return run


def _broker_config(ca: FleetCA, store: Store, args: argparse.Namespace, cfg: CollectorConfig) -> None:
    from collector.fleet import broker_config, enrolment

    engine = store.engine
    files = broker_config.generate(args.out, ca, args.hostname, port=args.port, bind=args.bind,
                                   revoked_serials=tuple(enrolment.revoked_serials(engine)),
                                   revoked_agents=tuple(enrolment.revoked_agents(engine)),
                                   collectors=args.collectors, run_as=args.run_as)
    print(f"wrote {files.config} and {files.acl}; collector identities: {', '.join(files.collectors)}; "
          f"command identity: {broker_config.COMMANDS_IDENTITY} (set commands.cert_file/key_file to "
          f"{files.commands[0].name if files.commands else '-'} and its .key)")


def _enrol_token(ca: FleetCA, store: Store, args: argparse.Namespace, cfg: CollectorConfig) -> None:
    from collector.fleet import enrolment

    issued = enrolment.issue_token(store.engine, args.agent, args.line, args.site,
                                   ttl=timedelta(hours=cfg.enrolment.token_ttl_h))
    print(issued.token)
    print(f"valid once, until {issued.expires_at:%Y-%m-%d %H:%M} UTC", file=sys.stderr)


def _revoke(ca: FleetCA, store: Store, args: argparse.Namespace, cfg: CollectorConfig) -> None:
    from collector.fleet import broker_config, enrolment

    engine = store.engine
    count = enrolment.revoke(engine, ca, args.agent, args.reason)
    print(f"revoked {count} certificate(s) of {args.agent}; CRL {ca.crl_path} rewritten")
    if args.broker_dir:
        acl = broker_config.write_acl(args.broker_dir, sorted(enrolment.revoked_agents(engine)))
        print(f"ACL {acl} rewritten")
    print("reload the broker (kill -HUP <mosquitto pid>) so it reads the new CRL and ACL")


run_broker_config = _with_ca_and_store(_broker_config)
run_enrol_token = _with_ca_and_store(_enrol_token)
run_revoke = _with_ca_and_store(_revoke)
