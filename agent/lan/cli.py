"""The `lan-serve` and `lan-test` subcommands of linecheck-agent."""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK, EXIT_PROBLEMS, EXIT_UNUSABLE = 0, 1, 2


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser("lan-serve", help="serve the LAN/WiFi speed test page and endpoints (foreground)")
    serve.add_argument("--config", required=True, metavar="FILE",
                       help="the agent's config file (YAML; its lan_test section)")
    test = sub.add_parser("lan-test", help="measure this device's LAN/WiFi path to the gateway for a room")
    test.add_argument("--server", required=True, help="the gateway's LAN test server, e.g. http://192.168.1.1:8090")
    test.add_argument("--room", required=True, help="the room or label this device is in, e.g. 'Meeting room 2'")
    test.add_argument("--seconds", type=float, default=8.0, help="length of each direction (default 8)")
    test.add_argument("--streams", type=int, default=4, help="parallel TCP streams (default 4)")
    test.add_argument("--token", help="the gateway's lan_test.token, when it requires one")
    test.add_argument("--json", action="store_true", help="print the gateway's answer as JSON")


def serve(args: argparse.Namespace) -> int:
    from agent import config as agent_config
    from agent.lan.service import LanServiceError, build
    from agent.spool import Spool

    cfg = agent_config.load(args.config)
    try:
        spool = Spool(cfg.data_dir / "spool.sqlite", cfg.mqtt.max_payload_bytes)
    except (OSError, sqlite3.Error) as exc:
        print(f"linecheck-agent: cannot open the spool in {cfg.data_dir} ({exc})", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        server = build(cfg, spool.enqueue)
    except LanServiceError as exc:
        print(f"linecheck-agent: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    with server:
        print(f"linecheck-agent: LAN speed test on {server.url}/ (results are spooled for the collector)", flush=True)
        stopped.wait()
    spool.close()
    return EXIT_OK


def lan_test(args: argparse.Namespace) -> int:
    from agent.lan.client import LanTestClient, LanTestError
    from agent.lan.settings import valid_room

    try:
        room = valid_room(args.room)
    except ValueError as exc:
        print(f"linecheck-agent: --room: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    from rich.console import Console  # not at module level: the daemon imports this module's parsers

    console = Console(stderr=True, quiet=args.json)
    try:
        client = LanTestClient(args.server, token=args.token, seconds=args.seconds, streams=args.streams)
        with console.status(f"measuring {room} → gateway…"):
            answer = client.run(room)
    except LanTestError as exc:
        print(f"linecheck-agent: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.json:
        sys.stdout.write(json.dumps(answer, indent=2, ensure_ascii=False) + "\n")
    else:
        _render(answer, room, Console())
    return EXIT_OK if answer["status"] == "ok" else EXIT_PROBLEMS


def _render(answer: dict, room: str, console: Console) -> None:
    m, st = answer["metrics"], answer["station"]

    def fmt(v: object, unit: str) -> str:
        return "—" if v is None else f"{v:g} {unit}"

    colour = {"ok": "green", "degraded": "yellow"}.get(answer["status"], "red")
    console.print(f"[bold]{room}[/] → gateway: [{colour}]{answer['status']}[/]  "
                  f"down {fmt(m.get('down_mbps'), 'Mbit/s')}, up {fmt(m.get('up_mbps'), 'Mbit/s')}, "
                  f"latency {fmt(m.get('latency_ms'), 'ms')}")
    if st.get("station_found_flag") == 1:
        console.print(f"  WiFi at the gateway: signal {fmt(st.get('signal_dbm'), 'dBm')}, PHY rate "
                      f"{fmt(st.get('tx_bitrate_mbps'), 'Mbit/s')} on {fmt(st.get('band_ghz'), 'GHz')} "
                      f"({st.get('ssid') or st.get('wifi_interface')})")
    elif st.get("note"):
        console.print(f"  {st['note']}")
    if answer.get("reason"):
        console.print(f"  {answer['reason']}")
    for f in answer.get("findings", []):
        console.print(f"  [yellow]●[/] {f['message']}")
    console.print(f"  recorded as {answer['result_id']} (seq {answer['seq']})")
