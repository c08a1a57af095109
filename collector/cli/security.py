"""`linecheck-collector ca|broker-config|enrol-token|revoke`: the fleet CA, the broker, its certificates and
enrolment. Only `ca init` creates a CA; the others open the one in enrolment.ca_dir or say how to make it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from collector.config import CollectorConfig
from linecheck.cliargs import add_config, port

if TYPE_CHECKING:  # loaded when a handler runs: `--help` and the other subcommands stay quick
    from collector.fleet.pki import FleetCA
    from collector.store.database import Store

Work = Callable[["FleetCA", "Store", argparse.Namespace, CollectorConfig], None]
Handler = Callable[[argparse.Namespace, CollectorConfig], int]


def add_broker_config(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bc = sub.add_parser("broker-config", help="generate Mosquitto config, ACL and certificates for the fleet")
    add_config(bc, "collector")
    bc.add_argument("--out", required=True, help="directory for mosquitto.conf, acl, certificates")
    bc.add_argument("--hostname", action="append", default=[],
                    help="name or address agents use to reach the broker (repeatable; --broker mosquitto)")
    bc.add_argument("--port", type=port, default=8883, help="the broker's TLS listener port (default 8883)")
    bc.add_argument("--bind", default="0.0.0.0", metavar="ADDRESS",
                    help="address the broker listens on (default 0.0.0.0: all)")
    bc.add_argument("--collectors", type=int, default=1, help="collector identities to issue")
    bc.add_argument("--run-as", default="mosquitto", help="user mosquitto drops to")
    bc.add_argument("--broker", choices=("mosquitto", "nats"), default="mosquitto",
                    help="mosquitto (default): one broker; nats: the node configs of a NATS JetStream cluster "
                         "(broker.nats in the collector config; docs/scaling.md)")
    bc.add_argument("--node", action="append", default=[], metavar="NAME=HOST",
                    help="--broker nats: a cluster node, NAME=HOST or NAME=HOST:CLIENT:CLUSTER:MQTT ports "
                         "(repeatable; three for a cluster that survives the loss of one)")


def add_enrol_token(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tok = sub.add_parser("enrol-token", help="issue a one-time enrolment token for a gateway on a registered line")
    add_config(tok, "collector")
    tok.add_argument("--agent", required=True, help="the agent id the gateway will have")
    tok.add_argument("--line", required=True, metavar="LINE_ID",
                     help="the registered line the gateway serves (`registry import` first)")
    tok.add_argument("--site", metavar="SITE_ID",
                     help="the line's site; default: the registry's, and if given it must match it")


def add_ca(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ca = sub.add_parser("ca", help="the fleet CA that signs agent and broker certificates")
    verbs = ca.add_subparsers(dest="ca_command", required=True)
    init = verbs.add_parser("init", help="create the fleet CA in enrolment.ca_dir (once; refuses to replace one)")
    add_config(init, "collector")
    init.add_argument("--name", default="linecheck fleet CA", help="the CA certificate's common name")
    show = verbs.add_parser("show", help="where the fleet CA is, its name and validity")
    add_config(show, "collector")


def add_revoke(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rv = sub.add_parser("revoke", help="revoke an agent's certificates and rewrite the CRL")
    add_config(rv, "collector")
    rv.add_argument("--agent", required=True, metavar="ID", help="the agent whose certificates to revoke")
    rv.add_argument("--reason", default="revoked by operator", help="recorded with the revocation")
    rv.add_argument("--broker-dir", help="a broker-config output directory whose ACL to rewrite")


def _with_ca_and_store(work: Work) -> Handler:
    """A handler that opens the existing fleet CA (never creates one: `ca init` does) and the database,
    and reports a missing CA or an EnrolmentError as exit code 2."""

    def run(args: argparse.Namespace, cfg: CollectorConfig) -> int:
        from collector.fleet import enrolment
        from collector.fleet.pki import FleetCA, PKIError
        from collector.store.database import Store

        try:
            ca = FleetCA.open(cfg.enrolment.ca_dir)
        except PKIError as exc:
            print(f"linecheck-collector: {_ca_problem(exc, args.config)}", file=sys.stderr)
            return 2
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


def _ca_problem(exc: Exception, config: str) -> str:
    from collector.fleet.pki import NoFleetCA

    if isinstance(exc, NoFleetCA):
        return (f"no fleet CA in {exc.directory} (enrolment.ca_dir in {config}); create it once with "
                f"`linecheck-collector ca init --config {config}`")
    return str(exc)


def run_ca(args: argparse.Namespace, cfg: CollectorConfig) -> int:
    from collector.fleet.pki import FleetCA, PKIError

    where = cfg.enrolment.ca_dir
    try:
        if args.ca_command == "init":
            ca = FleetCA.create(where, args.name)
            print(f"created the fleet CA in {where} (ca.key 0600, directory 0700); keep ca.key on this host only")
            print("next: `linecheck-collector broker-config` for the broker's certificates; `serve` now offers "
                  "enrolment at /api/v1/enrol", file=sys.stderr)
            return 0
        ca = FleetCA.open(where)
    except PKIError as exc:
        print(f"linecheck-collector: {_ca_problem(exc, args.config)}", file=sys.stderr)
        return 2
    print(f"fleet CA in {where}: {ca.cert.subject.rfc4514_string()}, valid until "
          f"{ca.cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    return 0


def _broker_config(ca: FleetCA, store: Store, args: argparse.Namespace, cfg: CollectorConfig) -> None:
    from collector.fleet import broker_config, enrolment

    engine = store.engine
    if args.broker == "nats":
        _nats_cluster_config(ca, store, args, cfg)
        return
    if not args.hostname:
        raise enrolment.EnrolmentError("--hostname is required: the name or address agents use to reach the broker")
    files = broker_config.generate(args.out, ca, args.hostname, port=args.port, bind=args.bind,
                                   revoked_serials=tuple(enrolment.revoked_serials(engine)),
                                   revoked_agents=tuple(enrolment.revoked_agents(engine)),
                                   collectors=args.collectors, run_as=args.run_as)
    print(f"wrote {files.config} and {files.acl}; collector identities: {', '.join(files.collectors)}; "
          f"command identity: {broker_config.COMMANDS_IDENTITY} (set commands.cert_file/key_file to "
          f"{files.commands[0].name if files.commands else '-'} and its .key)")


def _nats_cluster_config(ca: FleetCA, store: Store, args: argparse.Namespace, cfg: CollectorConfig) -> None:
    """Every agent the registry knows becomes a user (its certificate's CN); revoked ones are left out. Run it
    again after a revocation and send the nodes SIGHUP: no restart."""
    from sqlalchemy import select

    from collector.fleet import enrolment, nats_config
    from collector.store import schema as t

    try:
        nodes = [nats_config.parse_node(spec, args.port) for spec in args.node]
    except ValueError as exc:
        raise enrolment.EnrolmentError(f"--node {exc}") from None
    if not nodes:
        raise enrolment.EnrolmentError("--broker nats needs the cluster's nodes: --node n1=HOST (three of them)")
    with store.engine.connect() as conn:
        agents = list(conn.execute(select(t.agents.c.agent_id)).scalars())
    revoked = enrolment.revoked_agents(store.engine)
    written = nats_config.generate_cluster(args.out, ca, nodes, agents, revoked, cfg.broker.nats,
                                           cfg.ingest.max_payload_bytes)
    print(f"wrote {', '.join(str(p) for p in written)}: {len(set(agents) - revoked)} agents, "
          f"{len(revoked)} revoked left out; start each node with `nats-server -c <its .conf>`, or send it "
          "SIGHUP after a revocation")
    print(f"collector: broker.kind nats, broker.nats.password_file {args.out}/collector.password, mqtt.brokers "
          f"the nodes' MQTT ports, mqtt cert {nats_config.COLLECTOR_MQTT_IDENTITY}.crt/.key", file=sys.stderr)


def run_enrol_token(args: argparse.Namespace, cfg: CollectorConfig) -> int:
    """A token only for a registered line (docs/security.md), as the API and console issue them. Needs no
    CA: the token is a database row; the CA signs when the gateway redeems it."""
    from sqlalchemy import select

    from collector.fleet import enrolment
    from collector.store import schema as t
    from collector.store.database import Store

    store = Store(cfg.database)
    try:
        with store.engine.connect() as conn:
            site = conn.execute(select(t.lines.c.site_id).where(t.lines.c.line_id == args.line)).scalar()
        if site is None:
            print(f"linecheck-collector: line {args.line!r} is not registered; enrolment tokens are only for "
                  "registered lines: add it with `linecheck-collector registry import` first", file=sys.stderr)
            return 2
        if args.site is not None and args.site != site:
            print(f"linecheck-collector: line {args.line!r} is registered at site {site!r}, not {args.site!r}",
                  file=sys.stderr)
            return 2
        issued = enrolment.issue_token(store.engine, args.agent, args.line, site,
                                       ttl=timedelta(hours=cfg.enrolment.token_ttl_h))
    except enrolment.EnrolmentError as exc:
        print(f"linecheck-collector: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(issued.token)
    print(f"valid once, until {issued.expires_at:%Y-%m-%d %H:%M} UTC, for line {args.line} at site {site}",
          file=sys.stderr)
    return 0


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
run_revoke = _with_ca_and_store(_revoke)
