"""Test server capacity: N concurrent tests against linecheck-testserver and against nginx (sendfile),
same machine, same run, same clients (issue 22 item 2).

    sudo .venv/bin/python bench/testserver_load.py              # 8, 32, 128 tests, 3 s per direction
    .venv/bin/python bench/testserver_load.py --clients 8 --seconds 2

Each test is one keep-alive connection from its own loopback source address (127.0.0.2 ...): it
downloads for `--seconds` (ours: GET /download?bytes=16M&test=ID; nginx: GET of a 16 MiB file), then
uploads (POST with a 16 MiB body sent with sendfile; nginx discards the body and answers 200).
Clients run as threads in two processes. Printed per cell: aggregate Gbit/s (all tests' bytes over
the wall time), ours/nginx, server CPU seconds per GB (utime+stime of every server process, from
/proc), Jain's fairness index over the tests' rates ((Σx)² / (n·Σx²), 1 = equal). Upload bytes are
those handed to the kernel (a receiver that reads slowly shows as a lower rate through TCP's window).
The clients share the cores with the server, so the aggregate is a property of the machine as a whole.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from linecheck.throughput.payload import Payload  # noqa: E402
from linecheck.throughput.sessions import Limits  # noqa: E402
from testserver.workers import Workers  # noqa: E402

CHUNK = 16 * 1024 * 1024
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK
        except (OSError, IndexError, ValueError):
            pass
    return total


def one_test(kind: str, port: int, direction: str, index: int, seconds: float, start: float,
             out: list[int], payload: Payload) -> None:
    src = f"127.0.0.{2 + index % 250}"
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)  # blocking: os.sendfile needs it
    buf = memoryview(bytearray(1024 * 1024))
    name = f"b{os.getpid()}x{index}"
    moved = 0
    while time.monotonic() < start:
        time.sleep(0.001)  # everyone starts together
    end = start + seconds
    try:
        while time.monotonic() < end:
            if direction == "down":
                path = f"/download?bytes={CHUNK}&test={name}" if kind == "ours" else "/blob"
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                got_head, body = b"", 0
                while b"\r\n\r\n" not in got_head:
                    got_head += sock.recv(4096)
                head, _, rest = got_head.partition(b"\r\n\r\n")
                body = len(rest)
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while body < length:
                    n = sock.recv_into(buf)
                    if not n:
                        raise OSError("closed")
                    body += n
                    moved += n
                    if time.monotonic() >= end:
                        break
                moved += len(rest)
                if body < length:
                    break
            else:
                path = f"/upload?test={name}" if kind == "ours" else "/upload"
                sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {CHUNK}\r\n\r\n".encode())
                sent = 0
                while sent < CHUNK and time.monotonic() < end:
                    n = os.sendfile(sock.fileno(), payload.fd, sent % payload.size,
                                    min(1024 * 1024, CHUNK - sent, payload.size - sent % payload.size))
                    if not n:
                        break
                    sent += n
                    moved += n
                if sent < CHUNK:
                    break
                answer = sock.recv(4096)
                if not answer:
                    break
    except OSError:
        pass
    finally:
        sock.close()
    out[index] = moved


def client_process(kind: str, port: int, direction: str, indices: list[int], seconds: float, start: float,
                   queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    payload = Payload()
    out = [0] * (max(indices) + 1)
    threads = [threading.Thread(target=one_test, args=(kind, port, direction, i, seconds, start, out, payload))
               for i in indices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put({i: out[i] for i in indices})


def run_cell(kind: str, port: int, pids: list[int], clients: int, direction: str,
             seconds: float) -> dict[str, float]:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start = time.monotonic() + 0.5 + clients * 0.004  # time for every connection to be made
    halves = [list(range(0, clients, 2)), list(range(1, clients, 2))]
    cpu0 = cpu_seconds(pids)
    procs = [ctx.Process(target=client_process, args=(kind, port, direction, h, seconds, start, queue))
             for h in halves if h]
    for p in procs:
        p.start()
    rates: dict[int, int] = {}
    for _ in procs:
        rates.update(queue.get(timeout=seconds + 60))
    for p in procs:
        p.join()
    cpu = cpu_seconds(pids) - cpu0
    moved = list(rates.values())
    total = sum(moved)
    jain = total**2 / (len(moved) * sum(x * x for x in moved)) if total else 0.0
    return {"gbps": total * 8 / seconds / 1e9, "cpu_per_gb": cpu / (total / 1e9) if total else float("nan"),
            "jain": jain, "gb": total / 1e9}


def start_nginx(root: Path, port: int, workers: int) -> tuple[subprocess.Popen[bytes], list[int]]:
    conf = root / "nginx.conf"
    conf.write_text(f"""
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log;
daemon off;
user root;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path {root}/body;
  server {{
    listen 127.0.0.1:{port} reuseport;
    root {root}/www;
    location = /blob {{ }}
    location = /upload {{ client_max_body_size 0; return 200 "ok"; }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(root)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)  # waiting for nginx to listen: nothing to synchronise on
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    return proc, [proc.pid, *map(int, children)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    if not shutil.which("nginx"):
        print("nginx is not installed (scripts/setup.sh --test installs it)", file=sys.stderr)
        return 2
    load0 = os.getloadavg()
    print(f"# bench/testserver_load.py  {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC  cores={os.cpu_count()}  "
          f"workers={a.workers}  load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    root = Path(tempfile.mkdtemp(prefix="lc-nginx-"))
    (root / "www").mkdir()
    (root / "body").mkdir()
    (root / "www" / "blob").write_bytes(os.urandom(CHUNK))
    nginx_port, ours_port = free_port(), free_port()
    limits = Limits(max_tests=max(a.clients) * 2, max_connections=max(a.clients) * 4, idle_s=1.0,
                    max_test_s=3600, max_test_bytes=1 << 50)
    ours = Workers("127.0.0.1", ours_port, limits, a.workers).start()
    nginx, nginx_pids = start_nginx(root, nginx_port, a.workers)
    print(f"{'tests':>5} {'dir':<4} {'nginx Gbit/s':>12} {'ours Gbit/s':>11} {'ratio':>6} "
          f"{'cpu s/GB nginx':>14} {'ours':>6} {'Jain nginx':>10} {'ours':>6}")
    worst_ratio, worst_jain = float("inf"), float("inf")
    try:
        for n in a.clients:
            for direction in ("down", "up"):
                ref = run_cell("nginx", nginx_port, nginx_pids, n, direction, a.seconds)
                time.sleep(1.2)  # the server's idle_s: the last cell's tests end
                got = run_cell("ours", ours_port, ours.pids(), n, direction, a.seconds)
                ratio = got["gbps"] / ref["gbps"] if ref["gbps"] else float("nan")
                worst_ratio, worst_jain = min(worst_ratio, ratio), min(worst_jain, got["jain"])
                print(f"{n:>5} {direction:<4} {ref['gbps']:>12.2f} {got['gbps']:>11.2f} {ratio:>6.3f} "
                      f"{ref['cpu_per_gb']:>14.3f} {got['cpu_per_gb']:>6.3f} {ref['jain']:>10.3f} "
                      f"{got['jain']:>6.3f}", flush=True)
    finally:
        ours.stop()
        nginx.terminate()
        nginx.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    print("targets:")
    print(f"  ours/nginx aggregate >= 0.9: worst {worst_ratio:.3f} -> {'met' if worst_ratio >= 0.9 else 'NOT met'}")
    print(f"  Jain's index >= 0.95 (ours): worst {worst_jain:.3f} -> {'met' if worst_jain >= 0.95 else 'NOT met'}")
    load1 = os.getloadavg()
    print(f"load average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
