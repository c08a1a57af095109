"""A real 3-node NATS cluster (JetStream + MQTT over TLS) on free loopback ports, for tests and benches.

The node configs come from collector/fleet/nats_config.py (what `broker-config --broker nats` writes), the
certificates from the fleet CA (collector/fleet/pki.py): agents, the collectors' MQTT identity and the fleet
simulator's. The machine's own NATS on :4222 is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from collector.fleet.nats_config import COLLECTOR_MQTT_IDENTITY, SIMULATOR_IDENTITY, Fleet, Node, Tls, node_config
from collector.fleet.pki import FleetCA
from tests.mosquitto import free_port, wait_port

COLLECTOR_PASSWORD = "collector-test-password"


@dataclass(frozen=True)
class Identity:
    ca: Path
    cert: Path
    key: Path

    def tls(self) -> tuple[Path, Path, Path]:
        return self.ca, self.cert, self.key


class NatsCluster:
    def __init__(self, workdir: Path, agents: list[str], *, partitions: int = 4, prefix: str = "lcr",
                 stream: str = "LINECHECK_RESULTS", simulator: bool = True):
        self.workdir = workdir
        self.partitions, self.prefix, self.stream = partitions, prefix, stream
        self.nodes = [Node(f"n{i}", free_port(), free_port(), free_port()) for i in range(1, 4)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None, None, None]
        certs = workdir / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        self.ca = FleetCA.open_or_create(workdir / "ca")
        cert, key = self.ca.issue_server(["127.0.0.1", "localhost"], certs)
        self.server_tls = Tls(self.ca.cert_path, cert, key)
        self.fleet = Fleet(agents=list(agents), collector_password=COLLECTOR_PASSWORD, simulator=simulator)
        self.password_file = workdir / "collector.password"
        self.password_file.write_text(COLLECTOR_PASSWORD + "\n")
        self._certs = certs
        self.identities: dict[str, Identity] = {}
        for name in [COLLECTOR_MQTT_IDENTITY, *([SIMULATOR_IDENTITY] if simulator else []), *agents]:
            self.identity(name)

    def identity(self, name: str) -> Identity:
        if name not in self.identities:
            c, k = self.ca.issue_client(name, self._certs)
            self.identities[name] = Identity(self.ca.cert_path, c, k)
        return self.identities[name]

    @property
    def nats_urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{n.client_port}" for n in self.nodes]

    @property
    def mqtt_addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", n.mqtt_port) for n in self.nodes]

    def write_configs(self) -> None:
        for node in self.nodes:
            store = self.workdir / node.name
            store.mkdir(exist_ok=True)
            (self.workdir / f"{node.name}.conf").write_text(node_config(
                node, self.nodes, store, self.server_tls, self.fleet, prefix=self.prefix,
                partitions=self.partitions, stream=self.stream))

    def start(self, timeout_s: float = 60.0) -> None:
        self.write_configs()
        for i in range(3):
            self.start_node(i)
        self.wait_ready(timeout_s)

    def start_node(self, i: int) -> None:
        node = self.nodes[i]
        self.procs[i] = subprocess.Popen(
            [shutil.which("nats-server") or "nats-server", "-c", str(self.workdir / f"{node.name}.conf"),
             "-l", str(self.workdir / f"{node.name}.log")], preexec_fn=_die_with_parent)
        wait_port(node.client_port)

    def kill(self, i: int) -> None:
        """kill -9 one node."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def reload(self) -> None:
        """SIGHUP every node: users and permissions are read again, no restart (revocation)."""
        self.write_configs()
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def alive(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    # --- readiness and inspection ------------------------------------------------------------------
    def wait_ready(self, timeout_s: float) -> None:
        """JetStream has a meta leader and every live node takes an MQTT connection (the MQTT session
        stream exists: right after start a CONNECT times out while the cluster elects)."""
        end = time.monotonic() + timeout_s
        asyncio.run(self._until(lambda nc: nc.jetstream().account_info(), end))
        for i in self.alive():
            while not self._mqtt_connects(self.nodes[i].mqtt_port):
                if time.monotonic() > end:
                    raise TimeoutError(f"node {self.nodes[i].name} takes no MQTT connection after {timeout_s} s")
                time.sleep(0.3)

    def _mqtt_connects(self, port: int) -> bool:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        ident = self.identity(COLLECTOR_MQTT_IDENTITY)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{port}", clean_session=True)
        client.tls_set(ca_certs=str(ident.ca), certfile=str(ident.cert), keyfile=str(ident.key),
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
        try:
            rc = client.connect("127.0.0.1", port, keepalive=10)
            client.loop_start()
            ok = rc == 0 and _wait(lambda: client.is_connected(), 6)
            client.disconnect()
            client.loop_stop()
            return ok
        except OSError:
            return False

    async def _until(self, what, end: float):  # type: ignore[no-untyped-def]
        import nats

        while True:
            try:
                nc = await nats.connect(self.nats_urls, user="linecheck-collector", password=COLLECTOR_PASSWORD,
                                        connect_timeout=2, max_reconnect_attempts=1)
                try:
                    return await what(nc)
                finally:
                    await nc.close()
            except Exception:
                if time.monotonic() > end:
                    raise
                await asyncio.sleep(0.3)

    def stream_state(self) -> tuple[int, str | None]:
        """(messages in the results stream, name of the node leading it) - work-queue: un-acked only."""
        async def info(nc):  # type: ignore[no-untyped-def]
            si = await nc.jetstream().stream_info(self.stream)
            return si.state.messages, si.cluster.leader if si.cluster else None
        return asyncio.run(self._until(info, time.monotonic() + 30))

    def stream_subjects(self) -> list[str]:
        """Subjects of the messages in the results stream (nothing acked them: no collector runs)."""
        async def subjects(nc):  # type: ignore[no-untyped-def]
            js = nc.jetstream()
            si = await js.stream_info(self.stream)
            out = []
            for seq in range(si.state.first_seq, si.state.last_seq + 1):
                try:
                    out.append((await js.get_msg(self.stream, seq)).subject)
                except Exception:  # noqa: BLE001 - deleted
                    continue
            return out
        return asyncio.run(self._until(subjects, time.monotonic() + 30))

    def partition_owners(self) -> dict[int, str]:
        """partition -> the collector holding its lease (collector/ingest/partitions.py)."""
        async def owners(nc):  # type: ignore[no-untyped-def]
            from nats.js.errors import BucketNotFoundError

            try:
                kv = await nc.jetstream().key_value(f"{self.stream}_LEASES")
            except BucketNotFoundError:  # no collector has set the leases up yet (slow on a loaded machine)
                return {}
            out = {}
            for p in range(self.partitions):
                try:
                    out[p] = (await kv.get(f"p.{p}")).value.decode()
                except Exception:  # noqa: BLE001 - free
                    continue
            return out
        return asyncio.run(self._until(owners, time.monotonic() + 30))

    def ack_pending(self) -> dict[int, int]:
        """partition -> messages delivered to a collector and not acked."""
        async def pending(nc):  # type: ignore[no-untyped-def]
            js = nc.jetstream()
            return {p: (await js.consumer_info(self.stream, f"{self.stream}-p{p}")).num_ack_pending
                    for p in range(self.partitions)}
        return asyncio.run(self._until(pending, time.monotonic() + 30))


def _die_with_parent() -> None:
    """A test run killed from outside (a timeout) must not leave three nodes running on a shared machine."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def _wait(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True
