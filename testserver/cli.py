"""`linecheck-testserver`: run the carrier-side measurement server in the foreground.

Settings come from `--config FILE` (config/testserver.example.yaml documents every key) and
command-line options, which override the file.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from pathlib import Path

from pydantic import ValidationError

from linecheck import stamp
from linecheck.cliargs import add_version
from linecheck.configfile import ConfigError, format_validation_error
from linecheck.throughput.protocol import DEFAULT_PORT
from linecheck.throughput.sessions import Limits
from testserver import config as server_config
from testserver.reflector import Reflector
from testserver.workers import Workers

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def byte_size(text: str) -> int:
    """'500M', '2G', '1048576' -> bytes (binary multiples)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size like 500M or 2G, got {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def host_port(text: str) -> str:
    try:
        server_config.split_host_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linecheck-testserver",
                                description="Carrier-side measurement server: HTTP throughput endpoints for "
                                            "linecheck agents, LibreSpeed and Speedtest Mini clients, and the "
                                            "STAMP reflector. Options override --config.")
    add_version(p)
    p.add_argument("--config", type=Path, help="YAML settings (see config/testserver.example.yaml)")
    p.add_argument("--listen", type=host_port, metavar="HOST:PORT",
                   help=f"HTTP address (default 0.0.0.0:{DEFAULT_PORT}; port 0 picks a free port)")
    p.add_argument("--workers", type=int, help="server processes on the port (SO_REUSEPORT), sharing every "
                                               "limit (default: the number of cores)")
    p.add_argument("--max-tests", type=int, help="tests at once, all workers together (default 4)")
    p.add_argument("--capacity-mbps", type=float,
                   help="the server's link rate each way; tests running while it is 90 %% full are reported "
                        "server-limited (default: judge by the server's CPU only)")
    p.add_argument("--max-connections", type=int, help="open connections at once (default 128)")
    p.add_argument("--max-test-s", type=float, help="seconds one test may last (default 60)")
    p.add_argument("--max-test-bytes", type=byte_size, help="bytes one test may move, e.g. 2G (default 4G)")
    p.add_argument("--idle-s", type=float, help="a test idle this long is over (default 3)")
    p.add_argument("--stamp-listen", type=host_port, metavar="HOST:PORT",
                   help=f"UDP address of the STAMP reflector (default: the HTTP host, port {stamp.DEFAULT_PORT})")
    p.add_argument("--no-stamp", action="store_true", help="do not run the STAMP reflector")
    p.add_argument("--token-file", type=Path, help="require the token in this file on every request")
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p


def settings(args: argparse.Namespace) -> server_config.TestServerConfig:
    """The config file (or defaults) with the command line's options laid over it."""
    base = server_config.load(args.config) if args.config else server_config.TestServerConfig()
    overrides = {k: getattr(args, k) for k in ("listen", "workers", "max_tests", "max_connections",
                                                "max_test_s", "max_test_bytes", "idle_s", "stamp_listen",
                                                "token_file", "capacity_mbps")
                 if getattr(args, k) is not None}
    if args.no_stamp:
        overrides["stamp"] = False
    try:
        return server_config.TestServerConfig.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        raise format_validation_error("command line", exc) from None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = settings(args)
    except ConfigError as exc:
        print(f"linecheck-testserver: invalid config\n{exc}", file=sys.stderr)
        return 2
    token = None
    if cfg.token_file:
        try:
            token = cfg.token_file.read_text().strip()
        except OSError as exc:
            print(f"linecheck-testserver: token_file {cfg.token_file}: {exc.strerror}", file=sys.stderr)
            return 2
        if not token:
            print(f"linecheck-testserver: token_file {cfg.token_file}: empty", file=sys.stderr)
            return 2
    limits = Limits(max_tests=cfg.max_tests, max_connections=cfg.max_connections, max_test_s=cfg.max_test_s,
                    max_test_bytes=cfg.max_test_bytes, idle_s=cfg.idle_s, token=token,
                    capacity_mbps=cfg.capacity_mbps)
    http_host, http_port = server_config.split_host_port(cfg.listen)
    try:
        server = Workers(http_host, http_port, limits, cfg.workers, verbose=args.verbose)
    except OSError as exc:
        print(f"linecheck-testserver: cannot listen on {cfg.listen}: {exc.strerror}", file=sys.stderr)
        return 2
    server.start()  # forks the workers before any other thread or socket exists
    reflector = None
    if cfg.stamp:
        udp_host, udp_port = (server_config.split_host_port(cfg.stamp_listen) if cfg.stamp_listen
                              else (http_host, stamp.DEFAULT_PORT))
        try:
            reflector = Reflector(udp_host, udp_port).start()
        except OSError as exc:
            server.stop()
            print(f"linecheck-testserver: cannot bind the STAMP reflector to {udp_host}:{udp_port}: "
                  f"{exc.strerror} (set stamp_listen / --stamp-listen, or --no-stamp)", file=sys.stderr)
            return 2
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    host, port = server.address
    print(f"linecheck-testserver: http listening on {host}:{port} "
          f"({server.count} workers; max {limits.max_tests} tests, {limits.max_test_s:g} s and "
          f"{limits.max_test_bytes} bytes each)",
          flush=True)
    if reflector is not None:
        print(f"linecheck-testserver: stamp reflector on udp {reflector.host}:{reflector.port}", flush=True)
    stopped.wait()
    server.stop()
    if reflector is not None:
        reflector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
