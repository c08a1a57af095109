"""`linecheck-stack`: the whole system on one machine, on embedded defaults.

Starts a private broker (mosquitto when installed, else the embedded amqtt broker), the
collector on SQLite and an agent that checks this machine's own line, all writing into one
work directory. Beside it, unless --no-demo-fleet, four simulated offices (linecheck/demo: healthy,
slow against its speed promise, a DNS fault, reopened after 62 idle days) report through the same
broker, so the console's tickets and promises pages have something to show. Prints where to look,
then runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from linecheck.cliargs import add_version

DEFAULT_PORT = 18830  # not 1883: a system broker may already own it


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port(preferred: int) -> int:
    if preferred and _port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes], what: str = "the broker") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:g} s")


def start_broker(workdir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    mosquitto = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if mosquitto:
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            "# written by linecheck-stack: a private broker for the local demo\n"
            f"listener {port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {workdir}/\nautosave_interval 60\n"
            # max_packet_size: the payload limit of agent and collector plus topic and header room
            # (config/mosquitto.conf says why); message_size_limit is deprecated in Mosquitto 2.
            "max_packet_size 263168\nmax_queued_messages 100000\n"
            f"log_dest file {workdir}/mosquitto.log\n" + ("user root\n" if _is_root() else ""))
        cmd = [mosquitto, "-c", str(conf)]
    elif shutil.which("amqtt"):
        conf = workdir / "amqtt.yaml"
        conf.write_text(f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{port}\n"
                        "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n")
        cmd = [shutil.which("amqtt") or "amqtt", "-c", str(conf)]
    else:
        raise RuntimeError("no MQTT broker: install mosquitto (apt-get install mosquitto) "
                           "or the embedded fallback (pip install 'linecheck[embedded-broker]')")
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _is_root() -> bool:
    import os
    return os.geteuid() == 0


def write_configs(workdir: Path, port: int, interval_s: int, http_port: int = 0,
                  database: str | None = None) -> tuple[Path, Path]:
    collector = workdir / "collector.yaml"
    collector.write_text(f"# written by linecheck-stack\ndatabase: {database or f'sqlite:///{workdir}/linecheck.db'}\n"
                         f"mqtt: {{host: 127.0.0.1, port: {port}, client_id: demo-collector}}\n"
                         f"http: {{host: 127.0.0.1, port: {http_port}}}\n")
    agent = workdir / "agent.yaml"
    agent.write_text(
        "# written by linecheck-stack: an agent checking this machine's own line\n"
        "agent_id: local-gw\nline_id: local-line\nsite_id: local-site\n"
        f"data_dir: {workdir}/agent\n"
        f"mqtt: {{host: 127.0.0.1, port: {port}}}\n"
        f"schedule: {{interval_s: {interval_s}, jitter_s: 5, first_delay_s: 3}}\n"
        "checks:\n  link: {}\n  ping: {targets: [gateway], count: 5}\n")
    return collector, agent


DEMO_USER = "demo"
LOCAL_AGENT = "local-gw"
DEMO_REGISTRY = """# written by linecheck-stack: the local line in the fleet registry, so the console can show it
tenants:
  - {{tenant_id: demo-carrier, name: Demo carrier, kind: carrier}}
  - {{tenant_id: demo-office, name: This office, kind: enterprise, parent_id: demo-carrier}}
sites:
  - {{site_id: local-site, tenant_id: demo-office, name: This machine, district: Local}}
lines:
  - {{line_id: local-line, tenant_id: demo-office, site_id: local-site, name: This machine's line, segment: sme}}
agents:
  - {{agent_id: local-gw, line_id: local-line, report_interval_s: {interval}}}
"""


def prepare_console(workdir: Path, collector_cfg: Path, interval_s: int) -> tuple[str, str]:
    """On first start: register the local line and create the console login. Returns (user, password)."""
    login = workdir / "console-login.txt"
    if login.exists():
        user, password = login.read_text().split()[:2]
        return user, password
    import secrets

    registry_file = workdir / "registry.yaml"
    registry_file.write_text(DEMO_REGISTRY.format(interval=interval_s))
    password = secrets.token_urlsafe(12)
    secret = workdir / "console-password"
    secret.touch(mode=0o600)
    secret.write_text(password)
    for argv in (["registry", "import", "--config", str(collector_cfg), str(registry_file)],
                 ["user", "add", "--config", str(collector_cfg), DEMO_USER, "--role", "carrier_admin",
                  "--name", "Demo operator", "--password-file", str(secret)]):
        out = subprocess.run([sys.executable, "-m", "collector.cli", *argv], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"console setup failed: {out.stderr.strip() or out.stdout.strip()}")
    secret.unlink()
    login.touch(mode=0o600)
    login.write_text(f"{DEMO_USER} {password}\n")
    return DEMO_USER, password


def start_demo_fleet(workdir: Path, collector_cfg: Path, port: int, interval_s: int):  # type: ignore[no-untyped-def]
    """The simulated offices: seeded once per work directory, then reporting every interval_s."""
    from linecheck.demo import seed

    try:
        sim = seed.start(workdir / "demo-fleet", collector_cfg, "127.0.0.1", port, interval_s)
    except seed.SeedError as exc:
        raise RuntimeError(f"demo fleet: {exc} (start with --no-demo-fleet to do without it)") from exc
    sim.live()
    return sim


def _demo_fleet_lines(sim: object, http_port: int) -> str:
    if sim is None:
        return ""
    from linecheck.demo.fleet import LINES

    seeded = getattr(sim, "seeded_now", 0)
    how = f"seeded now with {seeded} results" if seeded else "seeded before; reporting again"
    return (f"  simulated  {len(LINES)} offices marked \"demo (simulated)\" ({how}): "
            + ", ".join(f"{x.line_id} ({x.key})" for x in LINES) + "\n"
            f"             http://127.0.0.1:{http_port}/console/tickets   http://127.0.0.1:{http_port}/console/promises\n")


def _shown(url: str | None) -> str | None:
    """A database URL fit to print: without its password."""
    if not url:
        return None
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def stored_results(db: Path | str) -> int:
    """Results of this machine's line (the simulated offices' are not counted): db is the SQLite file
    or, for a demo on PostgreSQL, its SQLAlchemy URL."""
    if isinstance(db, str):
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import SQLAlchemyError

        engine = create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM results WHERE agent_id = :a"),
                                        {"a": LOCAL_AGENT}).scalar_one())
        except SQLAlchemyError:  # not migrated yet
            return 0
        finally:
            engine.dispose()
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM results WHERE agent_id = ?", (LOCAL_AGENT,)).fetchone()[0])
    except sqlite3.Error:
        return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="linecheck-stack", description=__doc__.splitlines()[0] if __doc__ else None)
    add_version(p)
    p.add_argument("--workdir", default=".linecheck-demo", help="where configs, database, spool and logs go")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="broker port (a free one if taken)")
    p.add_argument("--http-port", type=int, default=8080, help="console and API port (a free one if taken)")
    p.add_argument("--interval", type=int, default=300, help="seconds between the agent's scheduled checks")
    p.add_argument("--until-stored", type=int, default=0, metavar="N",
                   help="exit 0 once N results are stored (for smoke tests); default: run until Ctrl-C")
    p.add_argument("--timeout", type=float, default=120, help="with --until-stored: give up after this long")
    p.add_argument("--database", metavar="URL",
                   help="the collector's database instead of SQLite in the work directory, e.g. "
                        "postgresql+psycopg://postgres@127.0.0.1/linecheck_demo (for the Grafana SQL dashboards)")
    p.add_argument("--no-demo-fleet", action="store_true",
                   help="only this machine's line: no simulated offices (they are seeded once per work directory)")
    args = p.parse_args(argv)

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port(args.port)
    http_port = _free_port(args.http_port)
    collector_cfg, agent_cfg = write_configs(workdir, port, args.interval, http_port, args.database)
    database: Path | str = args.database or workdir / "linecheck.db"
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    sim = None
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        broker = start_broker(workdir, port, workdir / "broker.log")
        procs.append(("broker", broker))
        _wait_port(port, 15, broker)
        user, password = prepare_console(workdir, collector_cfg, args.interval)
        # The sibling programs run under this interpreter, whether installed or run from the tree.
        for name, module, cfg in (("collector", "collector.cli", collector_cfg), ("agent", "agent.cli", agent_cfg)):
            argv_ = [sys.executable, "-m", module, "serve" if name == "collector" else "run", "--config", str(cfg)]
            log = (workdir / f"{name}.log").open("ab")
            procs.append((name, subprocess.Popen(argv_, stdout=log, stderr=subprocess.STDOUT)))
        _wait_port(http_port, 30, procs[1][1], "the collector's HTTP server")
        if not args.no_demo_fleet:
            sim = start_demo_fleet(workdir, collector_cfg, port, args.interval)
        print(f"""linecheck local stack is running (work directory {workdir})
  console    http://127.0.0.1:{http_port}/console/   user {user}  password {password}
             (kept in {workdir}/console-login.txt; API docs http://127.0.0.1:{http_port}/api/docs)
  broker     127.0.0.1:{port}            log: {workdir}/broker.log
  collector  {_shown(args.database) or f"SQLite {workdir}/linecheck.db"}   log: {workdir}/collector.log
  agent      local-gw, checks every ~{args.interval} s   log: {workdir}/agent.log
{_demo_fleet_lines(sim, http_port)}Where to look:
  stored results   .venv/bin/linecheck-collector results --config {collector_cfg}
  check now        .venv/bin/linecheck-agent check --config {agent_cfg}
  remote check     .venv/bin/linecheck-collector command --config {collector_cfg} --agent local-gw check_now
Ctrl-C stops everything.""", flush=True)
        started = time.monotonic()
        seen = 0
        while not stopping:
            for name, proc in procs:
                if proc.poll() is not None:
                    print(f"linecheck-stack: {name} exited with code {proc.returncode}; see {workdir}/{name}.log",
                          file=sys.stderr)
                    return 1
            count = stored_results(database)
            if count != seen:
                print(f"  {count} result(s) stored from this machine's agent", flush=True)
                seen = count
            if args.until_stored and count >= args.until_stored:
                return 0
            if args.until_stored and time.monotonic() - started > args.timeout:
                print(f"linecheck-stack: fewer than {args.until_stored} results after {args.timeout:g} s",
                      file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    except RuntimeError as exc:
        print(f"linecheck-stack: {exc}", file=sys.stderr)
        return 1
    finally:
        if sim is not None:
            sim.stop()
        for _, proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in reversed(procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
