"""The iperf3 backend: `iperf3 -J` against an iperf3 server, when the binary and a server exist."""

from __future__ import annotations

import json
import shutil
import subprocess

from agent.throughput.errors import BackendError, MeasurementFailed, ServerBusy


def parse(stdout: str) -> tuple[float, int, int]:
    """iperf3 -J output -> (received bit/s, bytes received, streams). Raises on iperf3's own errors."""
    try:
        doc = json.loads(stdout)
    except ValueError as exc:
        raise BackendError(f"iperf3 printed no JSON: {stdout[:200]!r}") from exc
    error = doc.get("error")
    if error:
        if "busy" in error:  # iperf3's server runs one test at a time and says so
            raise ServerBusy(f"server busy: iperf3 says {error!r}")
        raise MeasurementFailed(f"iperf3: {error}")
    end = doc.get("end", {})
    recv = end.get("sum_received") or {}
    bps = recv.get("bits_per_second")
    if not bps:
        raise MeasurementFailed("iperf3 reported no received data")
    streams = len(end.get("streams") or doc.get("start", {}).get("connected") or [])
    return float(bps), int(recv.get("bytes", 0)), streams


def run_iperf3(host: str, port: int, direction: str, seconds: float, streams: int = 4) -> tuple[float, int, int]:
    binary = shutil.which("iperf3")
    if binary is None:
        raise BackendError("iperf3 is not installed")
    argv = [binary, "-c", host, "-p", str(port), "-J", "-P", str(streams), "-t", f"{seconds:g}"]
    if direction == "down":
        argv.append("-R")  # the server sends: download as seen from the gateway
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired as exc:
        raise MeasurementFailed(f"iperf3 did not finish within {seconds + 30:g} s") from exc
    return parse(out.stdout)
