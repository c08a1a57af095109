"""`linecheck-testserver`: run the carrier-side measurement server in the foreground."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from pathlib import Path

from linecheck import stamp
from testserver.http import ThroughputServer
from testserver.reflector import Reflector
from testserver.sessions import Limits

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def byte_size(text: str) -> int:
    """'500M', '2G', '1048576' -> bytes (binary multiples)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size like 500M or 2G, got {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (e.g. 0.0.0.0:8080), got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def parser() -> argparse.ArgumentParser:
    d = Limits()
    p = argparse.ArgumentParser(prog="linecheck-testserver",
                                description="Carrier-side measurement server: HTTP throughput endpoints for "
                                            "linecheck agents, LibreSpeed and Speedtest Mini clients.")
    p.add_argument("--listen", type=host_port, default=("0.0.0.0", 8080), metavar="HOST:PORT",
                   help="HTTP address (default 0.0.0.0:8080; port 0 picks a free port)")
    p.add_argument("--max-tests", type=int, default=d.max_tests, help=f"tests at once (default {d.max_tests})")
    p.add_argument("--max-connections", type=int, default=d.max_connections,
                   help=f"open connections at once (default {d.max_connections})")
    p.add_argument("--max-test-s", type=float, default=d.max_test_s,
                   help=f"seconds one test may last (default {d.max_test_s:g})")
    p.add_argument("--max-test-bytes", type=byte_size, default=d.max_test_bytes,
                   help="bytes one test may move, e.g. 2G (default 4G)")
    p.add_argument("--idle-s", type=float, default=d.idle_s,
                   help=f"a test idle this long is over (default {d.idle_s:g})")
    p.add_argument("--stamp-listen", type=host_port, metavar="HOST:PORT",
                   help=f"UDP address of the STAMP reflector (default: the HTTP host, port {stamp.DEFAULT_PORT})")
    p.add_argument("--no-stamp", action="store_true", help="do not run the STAMP reflector")
    p.add_argument("--token-file", type=Path, help="require the token in this file on every request")
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for name in ("max_tests", "max_connections", "max_test_s", "idle_s"):
        if getattr(args, name) <= 0:
            print(f"linecheck-testserver: --{name.replace('_', '-')} must be > 0", file=sys.stderr)
            return 2
    token = None
    if args.token_file:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            print(f"linecheck-testserver: --token-file {args.token_file}: {exc.strerror}", file=sys.stderr)
            return 2
        if not token:
            print(f"linecheck-testserver: --token-file {args.token_file}: empty", file=sys.stderr)
            return 2
    limits = Limits(max_tests=args.max_tests, max_connections=args.max_connections, max_test_s=args.max_test_s,
                    max_test_bytes=args.max_test_bytes, idle_s=args.idle_s, token=token)
    try:
        server = ThroughputServer(*args.listen, limits=limits, verbose=args.verbose)
    except OSError as exc:
        print(f"linecheck-testserver: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc.strerror}",
              file=sys.stderr)
        return 2
    reflector = None
    if not args.no_stamp:
        udp_host, udp_port = args.stamp_listen or (args.listen[0], stamp.DEFAULT_PORT)
        try:
            reflector = Reflector(udp_host, udp_port).start()
        except OSError as exc:
            server.stop()
            print(f"linecheck-testserver: cannot bind the STAMP reflector to {udp_host}:{udp_port}: "
                  f"{exc.strerror} (choose --stamp-listen or --no-stamp)", file=sys.stderr)
            return 2
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    server.start()
    host, port = server.address
    print(f"linecheck-testserver: http listening on {host}:{port} "
          f"(max {limits.max_tests} tests, {limits.max_test_s:g} s and {limits.max_test_bytes} bytes each)",
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
