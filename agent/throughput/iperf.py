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
    _consistent(recv, end.get("sum_sent") or {})
    streams = len(end.get("streams") or doc.get("start", {}).get("connected") or [])
    return float(bps), int(recv.get("bytes", 0)), streams


def _consistent(recv: dict, sent: dict) -> None:
    """In an upload the received side is the server's own report: a server cannot be taken at its
    word when it claims more bytes than were sent, or a rate its own byte count does not support."""
    got, put, seconds = recv.get("bytes"), sent.get("bytes"), recv.get("seconds")
    if isinstance(got, int | float) and isinstance(put, int | float) and got > put:
        raise MeasurementFailed(f"iperf3: the receiver reports {got:.0f} bytes, more than the {put:.0f} bytes "
                                "sent; the server's report cannot be trusted")
    bps = recv.get("bits_per_second")
    if isinstance(got, int | float) and isinstance(seconds, int | float) and seconds > 0 and \
            isinstance(bps, int | float) and bps > 1.5 * got * 8 / seconds:
        raise MeasurementFailed(f"iperf3: a rate of {bps:.0f} bit/s is not what {got:.0f} bytes in "
                                f"{seconds:g} s make; the server's report cannot be trusted")


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
