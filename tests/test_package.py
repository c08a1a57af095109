"""The gateway package (scripts/package.sh), built for amd64 and arm64 and installed into clean Debian 12 root
filesystems (debootstrap, cached: tests/rootfs.py; arm64 runs under qemu-user-static), then the technician's
three commands (docs/install.md), timed:

    dpkg -i linecheck-agent_<v>_<arch>.deb      (apt install ./… on a gateway; python3 is in the root fs)
    linecheck-agent enroll --collector https://… --token …
    linecheck-agent check

against a collector on this machine (the chroot shares the host's network, so 127.0.0.1 is the host): an
HTTPS enrolment endpoint from the fleet CA, a real Mosquitto with TLS client certificates and ACLs, and
`linecheck-collector serve` storing what arrives. The agent's service runs as its unit says (User=,
AmbientCapabilities=, ExecStart= read from the installed unit) and delivers the check's result end to end.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.fleet import enrolment
from tests import rootfs
from tests.helpers import start, stop, wait_for
from tests.test_security_fleet import Fleet, enrol_server, fleet  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
ARCHES = ("amd64", "arm64")
ELF_MACHINE = {"amd64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64
SERVER_SIDE = ("collector/", "testserver/", "sqlalchemy", "fastapi", "uvicorn", "alembic", "psycopg", "starlette")

pytestmark = [pytest.mark.broker, pytest.mark.skipif(os.geteuid() != 0, reason="chroot and mounts need root")]


@pytest.fixture(scope="module")
def debs(linecheck_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb is not installed")
    out = tmp_path_factory.mktemp("debs")
    built = {}
    for arch in ARCHES:
        # gzip: seconds instead of xz's minute; the contents are the same
        done = subprocess.run([str(ROOT / "scripts" / "package.sh"), "--arch", arch, "--out", str(out),
                               "--wheel", str(linecheck_wheel), "--compress", "gzip"],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        built[arch] = Path(done.stdout.strip().splitlines()[-1])
    return built


def _control(deb: Path) -> dict[str, str]:
    text = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line and not line.startswith(" "))


@pytest.mark.parametrize("arch", ARCHES)
def test_the_package_holds_the_agent_alone_built_for_its_arch(debs: dict[str, Path], arch: str,
                                                              tmp_path: Path) -> None:
    deb = debs[arch]
    control = _control(deb)
    assert control["Package"] == "linecheck-agent" and control["Architecture"] == arch
    assert "python3 (>= 3.11)" in control["Depends"] and "python3 (<< 3.12)" in control["Depends"]
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    names = [line.split()[5] for line in listing.splitlines()]
    for needed in ("./usr/bin/linecheck-agent", "./lib/systemd/system/linecheck-agent.service",
                   "./lib/systemd/system/linecheck-agent.path", "./usr/share/doc/linecheck-agent/agent.example.yaml",
                   "./opt/linecheck-agent/lib/agent/cli.py", "./opt/linecheck-agent/lib/linecheck/wire.py"):
        assert needed in names, needed
    assert [n for n in names if any(s in n for s in SERVER_SIDE)] == []
    # Byte-compiled for the read-only /opt, and the compiled dependencies are the target's machine code.
    assert any(n.endswith(".cpython-311.pyc") and "/agent/" in n for n in names)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    sos = list((tmp_path / "opt/linecheck-agent/lib").rglob("*.so"))
    assert {p.name.split(".")[0] for p in sos} >= {"_pydantic_core", "_psutil_linux", "_rust"}
    for so in sos:
        machine = struct.unpack_from("<H", so.read_bytes()[:20], 18)[0]
        assert machine == ELF_MACHINE[arch], f"{so.name}: ELF machine {machine}"
    unit = (tmp_path / "lib/systemd/system/linecheck-agent.service").read_text()
    assert unit == (ROOT / "config/systemd/linecheck-agent.service").read_text()


def _unit(root: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(root / "lib/systemd/system/linecheck-agent.service")
    return parser["Service"]


def _as_unit(root: Path) -> list[str]:
    """The unit's ExecStart as its User= with exactly its AmbientCapabilities= (what systemd does)."""
    svc = _unit(root)
    caps = ",".join(["-all"] + [f"+{c.removeprefix('CAP_').lower()}" for c in svc["AmbientCapabilities"].split()])
    return ["setpriv", f"--reuid={svc['User']}", f"--regid={svc['Group']}", "--init-groups",
            f"--bounding-set={caps}", f"--inh-caps={caps}", f"--ambient-caps={caps}", *svc["ExecStart"].split()]


def _passwd(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no user {user} in the root filesystem")


def _stored(db: Path, agent_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT trigger, verdict FROM results WHERE agent_id=?", (agent_id,)))


@pytest.fixture
def collector(fleet: Fleet, tmp_path: Path) -> Iterator[Path]:  # noqa: F811 - the fixture imported above
    """`linecheck-collector serve` on the fleet's TLS broker; yields its database."""
    identity, (cert, key) = next(iter(fleet.files.collectors.items()))
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(f"database: sqlite:///{fleet.root}/collector.db\n"
                   f"mqtt: {{host: 127.0.0.1, port: {fleet.port}, client_id: {identity}, "
                   f"ca_file: {fleet.ca.cert_path}, cert_file: {cert}, key_file: {key}}}\nhttp: {{port: 0}}\n")
    log = tmp_path / "collector.log"
    proc = start("collector.cli", "serve", "--config", str(cfg), log=log)
    try:
        wait_for(lambda: "collector connected" in log.read_text(), 30, "the collector")
        yield fleet.root / "collector.db"
    finally:
        stop(proc)


@pytest.mark.parametrize("arch", ARCHES)
def test_install_enrol_check_delivers_in_a_clean_root_fs(arch: str, debs: dict[str, Path], fleet: Fleet,  # noqa: F811
                                                         enrol_server: str, collector: Path,  # noqa: F811
                                                         tmp_path: Path) -> None:
    try:
        lower = rootfs.build(arch)
    except rootfs.Unavailable as exc:
        pytest.skip(str(exc))
    agent_id = f"pkg-{arch}-gw"
    issued = enrolment.issue_token(fleet.store.engine, agent_id, f"pkg-{arch}-line", "pkg-site")
    log = tmp_path / "agent.log"
    with rootfs.Chroot(lower, tmp_path / "fs") as fs:
        shutil.copy(debs[arch], fs.root / "tmp" / debs[arch].name)
        shutil.copy(fleet.ca.cert_path, fs.root / "tmp" / "fleet-ca.crt")
        started = time.monotonic()

        # 1. install
        done = fs.run(["dpkg", "-i", f"/tmp/{debs[arch].name}"])
        assert done.returncode == 0, done.stdout + done.stderr
        uid, gid = _passwd(fs.root, "linecheck")
        state = (fs.root / "var/lib/linecheck").stat()
        assert (state.st_uid, state.st_gid, state.st_mode & 0o777) == (uid, gid, 0o700)
        version = fs.run(["linecheck-agent", "--version"])
        assert version.returncode == 0 and version.stdout.startswith("linecheck-agent "), version.stderr

        # 2. enrol (as root, like `sudo`): the key is written for the service's user
        done = fs.run(["linecheck-agent", "enroll", "--collector", enrol_server, "--token", issued.token,
                       "--ca-file", "/tmp/fleet-ca.crt"])
        assert done.returncode == 0, done.stderr
        key = fs.root / "var/lib/linecheck/identity/agent.key"
        assert (key.stat().st_uid, key.stat().st_mode & 0o777) == (uid, 0o600)
        # Test-only: checks on loopback (this machine's tests never send traffic past it).
        with (fs.root / "etc/linecheck/agent.yaml").open("a") as f:
            f.write("checks:\n  link: {window_s: 0.1}\n  ping: {targets: [127.0.0.1], count: 3, interval_s: 0.05}\n")

        # The service starts on enrolment (linecheck-agent.path); here as its unit would run it.
        service = fs.popen(_as_unit(fs.root), log)
        try:
            # 3. check (as root, like `sudo`): report shown, result spooled for the service to send
            done = fs.run(["linecheck-agent", "check", "--lang", "en"], timeout=600)
            # Any verdict: under qemu, loopback ping measures the emulator (tens of ms of jitter: exit 1).
            assert done.returncode in (0, 1, 3), done.stdout + done.stderr
            assert "Line self-check" in done.stdout and "Traceback" not in done.stderr
            stored = wait_for(lambda: _stored(collector, agent_id), 180, f"the {arch} agent's result at the collector")
            elapsed = time.monotonic() - started
        finally:
            service.terminate()
            service.wait(60)
        assert stored == [("manual", stored[0][1])]
        assert "Traceback" not in log.read_text()
        print(json.dumps({"arch": arch, "install_enrol_check_to_stored_s": round(elapsed, 1)}))
        assert elapsed < 600

        # An ordinary user on the gateway: the report, not queued beside the service's spool, no traceback.
        mine = fs.run(["linecheck-agent", "check", "--json"], user="nobody", env={"HOME": "/tmp"}, timeout=600)
        assert mine.returncode in (0, 1, 3) and "Traceback" not in mine.stderr, mine.stderr
        assert json.loads(mine.stdout)["seq"] == 0 and "not queued" in mine.stderr
    # What the test installed stayed in its overlay: the cached root filesystem is as debootstrap left it.
    assert not (lower / "usr/bin/linecheck-agent").exists() and rootfs.cached(arch) == lower
