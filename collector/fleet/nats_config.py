"""Generate a NATS cluster's node configs for a linecheck fleet (broker.kind: nats; docs/scaling.md).

Every node runs JetStream (the results stream, the partition leases, the MQTT sessions: all R3) and an MQTT
listener for the agents. Identities:

- agents connect over MQTT with their fleet certificate; `verify_and_map` makes the certificate's subject
  (`CN=<agent id>`) the user, and each agent user may publish only its own results (on the partition subject
  the mapping gives it) and status, and read only its own receipts and commands. Anything else is refused
  by the broker (tests/test_cluster.py: agent A publishing on B's topic);
- the collectors' MQTT identity (`CN=linecheck.collector`) reads every agent's status and writes receipts
  and commands;
- the collectors' NATS identity (a password user on the client port) uses the JetStream API only.

An agent's results topic `linecheck/v1/agents/<id>/results` is the NATS subject
`linecheck.v1.agents.<id>.results`; the account maps it to `<prefix>.<partition>.<id>` with partition =
FNV-1a 32 of the id mod P (`partition_of` computes the same number, so each agent's permission names its one
partition). Permissions apply to the mapped subject.

A revoked agent is left out of the users: a config reload (SIGHUP, no restart) closes its connection and
refuses the next (static users: at 500k agents the operator/JWT mode is the way, docs/scaling.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from linecheck.wire import TOPIC_ROOT

if TYPE_CHECKING:
    from collector.config import NatsConfig
    from collector.fleet.pki import FleetCA

COLLECTOR_MQTT_IDENTITY = "linecheck.collector"
SIMULATOR_IDENTITY = "linecheck.fleetsim"  # bench/fleet_sim.py: many virtual agents on few connections
ACCOUNT = "LINECHECK"
_ROOT = TOPIC_ROOT.replace("/", ".")  # linecheck.v1


def partition_of(agent_id: str, partitions: int) -> int:
    """The partition the cluster's mapping `{{partition(P,1)}}` puts this agent in: FNV-1a 32 of the id, mod P."""
    h = 0x811C9DC5
    for byte in agent_id.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h % partitions


@dataclass(frozen=True)
class Node:
    name: str
    client_port: int
    cluster_port: int
    mqtt_port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Tls:
    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass
class Fleet:
    """Who may connect: agents (by certificate), the collectors' NATS password, optional simulator."""

    agents: list[str]
    collector_password: str
    collector_user: str = "linecheck-collector"
    simulator: bool = False
    revoked: set[str] = field(default_factory=set)


def _q(value: object) -> str:
    return json.dumps(value)  # NATS config accepts JSON strings and arrays


def _agent_user(agent_id: str, prefix: str, partitions: int) -> str:
    agents = f"{_ROOT}.agents.{agent_id}"
    perms = {"publish": [f"{prefix}.{partition_of(agent_id, partitions)}.{agent_id}", f"{agents}.status"],
             # $MQTT.sub.>: where the server delivers a QoS 1 subscription (its own consumer's subject);
             # MQTT clients cannot subscribe to $MQTT topics themselves, the broker refuses them.
             "subscribe": [f"{agents}.receipts", f"{agents}.commands", "$MQTT.sub.>"]}
    return f"      {{user: {_q('CN=' + agent_id)}, permissions: {json.dumps(perms)}}}"


def users(fleet: Fleet, prefix: str, partitions: int, stream: str) -> list[str]:
    agents = f"{_ROOT}.agents"
    out = [
        f"      {{user: {_q(fleet.collector_user)}, password: {_q(fleet.collector_password)}, permissions: "
        + json.dumps({"publish": ["$JS.API.>", "$JS.ACK.>", f"$KV.{stream}_LEASES.>", "_INBOX.>"],
                      "subscribe": ["_INBOX.>"]}) + "}",
        f"      {{user: {_q('CN=' + COLLECTOR_MQTT_IDENTITY)}, permissions: "
        + json.dumps({"publish": [f"{agents}.*.receipts", f"{agents}.*.commands"],
                      "subscribe": [f"{agents}.*.status", "$MQTT.sub.>"]}) + "}",
    ]
    if fleet.simulator:
        out.append(f"      {{user: {_q('CN=' + SIMULATOR_IDENTITY)}, permissions: "
                   + json.dumps({"publish": [f"{prefix}.*.*", f"{agents}.*.status"],
                                 "subscribe": [f"{agents}.*.receipts", f"{agents}.*.commands", "$MQTT.sub.>"]})
                   + "}")
    out += [_agent_user(a, prefix, partitions) for a in sorted(set(fleet.agents) - fleet.revoked)]
    return out


def node_config(node: Node, nodes: Iterable[Node], store_dir: Path, tls: Tls, fleet: Fleet, *,
                prefix: str = "lcr", partitions: int = 8, stream: str = "LINECHECK_RESULTS",
                max_payload_bytes: int = 262144, cluster_name: str = "linecheck") -> str:
    routes = ", ".join(_q(f"nats-route://{n.host}:{n.cluster_port}") for n in nodes if n != node)
    mapping = {f"{_ROOT}.agents.*.results": f"{prefix}.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}"}
    user_lines = "\n".join(users(fleet, prefix, partitions, stream))
    return f"""# Generated by linecheck-collector broker-config --broker nats: node {node.name} of a linecheck cluster.
server_name: {_q(node.name)}
listen: {_q(f"{node.host}:{node.client_port}")}
max_payload: {max_payload_bytes + 1024}
jetstream {{ store_dir: {_q(str(store_dir))} }}
cluster {{
  name: {_q(cluster_name)}
  listen: {_q(f"{node.host}:{node.cluster_port}")}
  routes: [{routes}]
}}
mqtt {{
  listen: {_q(f"{node.host}:{node.mqtt_port}")}
  # Sessions, retained messages and QoS 1 messages live in JetStream: three copies, like the results.
  stream_replicas: 3
  tls {{
    ca_file: {_q(str(tls.ca_file))}
    cert_file: {_q(str(tls.cert_file))}
    key_file: {_q(str(tls.key_file))}
    # The client certificate is the identity: its subject (CN=<agent id>) is the user below.
    verify_and_map: true
  }}
}}
accounts {{
  {ACCOUNT} {{
    jetstream: enabled
    # One agent's results always land in one partition: collectors ingest partitions, not agents.
    mappings: {json.dumps(mapping)}
    users: [
{user_lines}
    ]
  }}
  SYS {{ users: [] }}
}}
system_account: SYS
"""


def parse_node(spec: str, mqtt_port: int = 8883) -> Node:
    """`NAME=HOST` (client 4222, cluster 6222, MQTT `mqtt_port`) or `NAME=HOST:CLIENT:CLUSTER:MQTT`."""
    name, _, where = spec.partition("=")
    parts = where.split(":")
    if not name or not parts[0] or len(parts) not in (1, 4) or not all(p.isdigit() for p in parts[1:]):
        raise ValueError(f"{spec!r}: expected NAME=HOST or NAME=HOST:CLIENT_PORT:CLUSTER_PORT:MQTT_PORT")
    if len(parts) == 1:
        return Node(name, 4222, 6222, mqtt_port, parts[0])
    return Node(name, int(parts[1]), int(parts[2]), int(parts[3]), parts[0])


def generate_cluster(out_dir: Path | str, ca: FleetCA, nodes: list[Node], agents: Iterable[str],
                     revoked: Iterable[str], nats: NatsConfig, max_payload_bytes: int = 262144) -> list[Path]:
    """Write one config per node, the nodes' TLS certificate, the collectors' MQTT certificate and NATS password
    (kept when the directory already has one: re-running after a revocation changes only the users)."""
    import secrets

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cert, key = ca.issue_server(sorted({n.host for n in nodes}), out)
    ca.issue_client(COLLECTOR_MQTT_IDENTITY, out)
    password_file = out / "collector.password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(24) + "\n")
        password_file.chmod(0o600)
    fleet = Fleet(agents=list(agents), collector_password=password_file.read_text().strip(),
                  collector_user=nats.username or "linecheck-collector", revoked=set(revoked))
    written = []
    for node in nodes:
        path = out / f"{node.name}.conf"
        path.write_text(node_config(node, nodes, out / f"{node.name}-data", Tls(ca.cert_path, cert, key), fleet,
                                    prefix=nats.subject_prefix, partitions=nats.partitions, stream=nats.stream,
                                    max_payload_bytes=max_payload_bytes))
        written.append(path)
    return written
